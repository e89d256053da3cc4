"""The JSON body of a delivery: the outbox's one envelope (as `syncd events list --json`
prints it), a ``ping`` for `syncd webhooks test`, and the bytes that are signed."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from syncd.domain.payloads import iso
from syncd.store.events import envelope

__all__ = ["body", "envelope", "ping"]


def ping(message_id: str, now: datetime) -> dict[str, Any]:
    """The body of `syncd webhooks test`: a ``ping`` event with no data."""
    return {"id": message_id, "type": "ping", "created_at": iso(now), "data": {}}


def body(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
