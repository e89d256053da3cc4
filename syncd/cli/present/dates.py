"""Times as the CLI prints them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from syncd.domain.payloads import iso as iso  # one format for the CLI and the events


def iso_any(value: Any) -> Any:
    """``iso`` for a datetime; anything else (an already formatted string, None) as is."""
    return iso(value) if isinstance(value, datetime) else value


def minute(value: datetime | str) -> str:
    """``2026-03-01 09:30``: a time in a table, to the minute, in UTC."""
    text = iso_any(value) or ""
    return str(text)[:16].replace("T", " ")
