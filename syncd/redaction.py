"""Secrets cut out of text a server sends back, in every spelling a secret travels in.

A token endpoint that echoes the request it refused (some do, in ``error_description``)
quotes the client secret as the form carried it, URL-encoded; one behind a proxy may quote
an ``Authorization: Basic`` header, base64 of ``client_id:secret``; a JSON or HTML answer
escapes it.  Matching only the literal secret let every one of those through to the log,
``source_states`` and `syncd status`.  Pure: no I/O.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
# Shorter secrets (or spellings of them) are not looked for: "abc" would be cut out of
# every word that holds it, and a secret that short protects nothing anyway.
MIN_SECRET = 4
MIN_BASE64 = 6  # characters of a base64 run that spell only the secret's own bytes


def spellings(secret: str) -> set[str]:
    """The strings ``secret`` may appear as in an answer: itself, URL- and form-encoded
    (either case of hex, and encoded twice), JSON- and HTML-escaped, and the base64 runs
    that only its bytes make, whatever precedes it (``user:secret`` in a Basic header, a
    whole request body encoded)."""
    if len(secret) < MIN_SECRET:
        return set()
    texts = {
        secret,
        quote_plus(secret),
        quote(secret, safe=""),
        quote(quote_plus(secret), safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
    }
    texts |= {_lower_hex(t) for t in texts if "%" in t}
    found = {t for t in texts if len(t) >= MIN_SECRET}
    for raw in {secret.encode(), quote_plus(secret).encode()}:
        found |= {run for run in _base64_runs(raw) if len(run) >= MIN_BASE64}
    return found


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every spelling of every secret replaced by ``[redacted]``."""
    needles: set[str] = set()
    for secret in secrets:
        if secret:
            needles |= spellings(secret)
    for needle in sorted(needles, key=len, reverse=True):  # a longer spelling holds a shorter
        text = text.replace(needle, REDACTED)
    return text


def _lower_hex(text: str) -> str:
    """Percent escapes in lower case ("%2b"), as some servers re-encode them."""
    parts = text.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def _base64_runs(raw: bytes) -> set[str]:
    """For each of the three offsets ``raw`` may start at within a base64-encoded text, the
    characters that depend on ``raw``'s bytes alone, in the standard and URL-safe alphabets.
    A character carries 6 bits: those covering bits of what comes before or after differ
    from one text to another and are left out."""
    runs: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        first = -(-8 * offset // 6)  # the first character made of raw's bits only
        last = 8 * (offset + len(raw)) // 6  # and the one after the last
        run = encoded[first:last]
        runs |= {run, run.replace("+", "-").replace("/", "_")}
    return runs
