"""What an answer means for a delivery, and when to try again.  Pure: no I/O."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

from syncd.connectors.retry import parse_retry_after as parse_retry_after  # one parser

BACKOFF_START = 5.0  # seconds before the first retry (before jitter)
BACKOFF_CAP = 3600.0  # a retry is never planned further out than this
RETRY_AFTER_CAP = 3600.0  # a receiver's Retry-After is honoured up to this
SNIPPET_BYTES = 200  # of an answer, in logs and in `webhooks test`

Kind = Literal["delivered", "retry", "failed", "gone"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: an HTTP status, a network error (status None), or 0 when the
    event could not be sent at all (its stored data is unreadable)."""

    status: int | None
    error: str | None = None  # "timeout", "refused: ...", without secrets or headers
    retry_after: float | None = None  # seconds, from the answer's Retry-After
    snippet: str = ""  # the first bytes of the answer's body, control characters removed
    seconds: float = 0.0  # how long the request took


def classify(answer: Answer) -> Kind:
    """2xx delivered; 410 disables the endpoint; 429, 5xx and network errors are retried;
    anything else (other 4xx, redirects) fails this event at once."""
    status = answer.status
    if status is None:
        return "retry"
    if status == 0:
        return "failed"  # never sent: nothing a retry could change
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    if status == 429 or status >= 500 or status == 408:
        return "retry"
    return "failed"


def failure_kind(answer: Answer) -> str:
    """The metric label of a failed attempt: http_4xx, http_5xx, http_429, timeout, refused..."""
    if answer.status is None:
        return (answer.error or "network").split(":", 1)[0]
    if answer.status == 0:
        return "unreadable"
    if answer.status == 429:
        return "http_429"
    return f"http_{answer.status // 100}xx"


def next_delay(attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds until the next try after ``attempts`` failed ones: exponential backoff with
    full jitter (uniform in [0, min(cap, start * 2^(n-1))]) so that many deliveries failing
    together do not come back together; never sooner than the receiver's Retry-After."""
    ceiling = min(BACKOFF_CAP, BACKOFF_START * 2.0 ** max(0, min(attempts - 1, 30)))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


# A word cut by the snippet's end: an address or a token would be kept as a fragment that
# no redaction recognises (`forget` looks for whole addresses).
_CUT_WORD = re.compile(r"[^\s\"'<>(),;:\[\]{}]+$")


def snippet(raw: bytes) -> str:
    """The first bytes of an answer as safe text for a log line or a terminal, ending at a
    word's end (with "...") when the answer goes on."""
    text = raw[:SNIPPET_BYTES].decode("utf-8", "replace")
    if len(raw) > SNIPPET_BYTES:
        text = _CUT_WORD.sub("", text) + "..."
    return _CONTROL.sub(" ", text).strip()
