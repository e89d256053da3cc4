"""What an answer means for a webhook delivery, and when it is tried again."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from syncd.config import retry_seconds as parse_duration
from syncd.webhooks.policy import (
    BACKOFF_CAP,
    Answer,
    classify,
    failure_kind,
    next_delay,
    parse_retry_after,
    snippet,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "delivered"), (204, "delivered"), (410, "gone"), (429, "retry"), (500, "retry"),
        (503, "retry"), (408, "retry"), (400, "failed"), (401, "failed"), (404, "failed"),
        (422, "failed"), (301, "failed"), (None, "retry"), (0, "failed"),
    ],
)  # fmt: skip
def test_classify(status: int | None, kind: str) -> None:
    assert classify(Answer(status, None if status is not None else "timeout")) == kind


def test_failure_kinds_are_coarse_labels() -> None:
    assert failure_kind(Answer(503)) == "http_5xx"
    assert failure_kind(Answer(429)) == "http_429"
    assert failure_kind(Answer(404)) == "http_4xx"
    assert failure_kind(Answer(None, "refused: connection refused")) == "refused"
    assert failure_kind(Answer(None, "timeout")) == "timeout"


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    rng = random.Random(7)
    for attempts, ceiling in ((1, 5), (2, 10), (3, 20), (8, 640), (30, BACKOFF_CAP)):
        delays = [next_delay(attempts, None, rng) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2  # spread: full jitter


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(1)
    assert all(next_delay(1, 120, rng) >= 120 for _ in range(50))
    assert next_delay(1, 10**9, rng) <= 3600  # a hostile Retry-After is capped


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30") == 30
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:00 GMT", now) == 60
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("9" * 5000) == 10**9


@pytest.mark.parametrize("value", ["\xb2", "1\xb9", "\xb3\xb3"])
def test_retry_after_with_latin1_superscript_digits_is_unreadable_not_a_crash(value: str) -> None:
    # http.client decodes header bytes as latin-1: a receiver's byte 0xB2 is "\xb2", which
    # str.isdigit() accepts and int() refuses; the ValueError escaped the sender and failed
    # the whole round, so the event was claimed and sent again for ever.
    assert parse_retry_after(value) is None


def test_snippet_is_short_and_safe_for_terminals_and_logs() -> None:
    text = snippet(b"\x1b[2Jerror:\r\nfake log line\x00" + "é".encode() * 300)
    assert "\x1b" not in text and "\n" not in text and "\x00" not in text
    assert text.startswith("[2Jerror:") and len(text.encode()) <= 200


def test_durations() -> None:
    assert parse_duration("24h") == 86400
    assert parse_duration("90m") == 5400
    assert parse_duration("3600s") == 3600
    assert parse_duration("2d") == 172800
    with pytest.raises(ValueError):
        parse_duration("31d")
    with pytest.raises(ValueError):
        parse_duration("forever")
    with pytest.raises(ValueError):
        parse_duration("3600")  # a unit, always: "3600" could be seconds or minutes
