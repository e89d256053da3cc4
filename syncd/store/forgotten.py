"""Text written after a forget that may quote the forgotten address: a webhook receiver
echoing the payload it refused (the ``contact.forgotten`` event carries the address to the
consumers) had it stored as the delivery's and the endpoint's last error, shown by
`webhooks list` and `status`.  Such texts lose every address whose keyed fingerprint is
suppressed before they are stored."""

from __future__ import annotations

import re

from sqlalchemy import Connection

from syncd.domain.addresses import match_key, normalize_address
from syncd.domain.privacy import REDACTED
from syncd.store.directory import load_suppressions

# Anything that may be an address; normalize_address decides.
_ADDRESS = re.compile(r"[^\s\"'<>(),;:\[\]{}\\]+@[^\s\"'<>(),;:\[\]{}\\]+")


def without_forgotten(conn: Connection, texts: list[str]) -> list[str]:
    """``texts`` with each forgotten address replaced (whichever plus-addressing setting
    the forget used: both keys are tried).  One query, and only when a text has an @."""
    if not any("@" in t for t in texts):
        return texts
    gone = load_suppressions(conn)
    if not gone.digests:
        return texts

    def fix(match: re.Match[str]) -> str:
        address = normalize_address(match.group(0).strip("."))
        if address is not None and any(
            gone.covers(match_key(address, plus)) for plus in (True, False)
        ):
            return REDACTED
        return match.group(0)

    return [_ADDRESS.sub(fix, t) if "@" in t else t for t in texts]
