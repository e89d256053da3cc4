"""When a source runs next: polls with jitter, backoff, and the hourly retry of a refused login."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from syncd.engine.schedule import CONFIG_RETRY, CREDENTIALS_RETRY, Outcome, next_run

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def _next(
    outcome: Outcome, failures: int = 0, *, seed: int = 1, **kw: float
) -> tuple[float, str, int]:
    settings = {"interval": 60.0, "jitter": 0.1, "max_backoff": 1800.0, **kw}
    found = next_run(outcome, NOW, failures=failures, rng=random.Random(seed), **settings)
    return (found.at - NOW).total_seconds(), found.state, found.failures


@given(st.floats(1, 86400), st.floats(0, 1), st.integers(0, 2**32))
def test_a_good_sync_polls_again_within_the_jittered_interval(
    interval: float, jitter: float, seed: int
) -> None:
    delay, state, failures = _next(Outcome(), 5, seed=seed, interval=interval, jitter=jitter)
    assert state == "ok" and failures == 0
    assert interval * (1 - jitter) - 1e-6 <= delay <= interval * (1 + jitter) + 1e-6


def test_transient_failures_back_off_exponentially_up_to_the_cap() -> None:
    ceilings = [_next(Outcome("transient"), n, seed=n)[0] for n in range(12)]
    assert 5 <= ceilings[0] <= 10  # a server restart is over quickly: retry within seconds
    assert ceilings[4] > ceilings[1] > ceilings[0]
    assert all(d <= 1800 for d in ceilings) and ceilings[-1] >= 900
    assert _next(Outcome("refused"), 3)[1:] == ("backoff", 4)


@given(st.integers(0, 60), st.floats(0, 10_000), st.integers(0, 2**32))
def test_backoff_honours_retry_after_and_the_cap(failures: int, after: float, seed: int) -> None:
    delay, state, _ = _next(Outcome("transient", retry_after=after), failures, seed=seed)
    assert state == "backoff"
    assert delay >= min(after, 1800.0) - 1e-6
    assert delay <= 1800.0 + 1e-6


def test_a_refused_login_waits_an_hour_and_needs_attention() -> None:
    delay, state, failures = _next(Outcome("credentials"), 2)
    assert (delay, state, failures) == (CREDENTIALS_RETRY.total_seconds(), "attention", 3)


def test_a_config_problem_needs_attention_and_is_looked_at_again_later() -> None:
    delay, state, _ = _next(Outcome("config"))
    assert state == "attention" and timedelta(seconds=delay) == CONFIG_RETRY


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    from email.utils import format_datetime

    from syncd.connectors.retry import parse_retry_after

    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert 290 <= (parse_retry_after(format_datetime(later, usegmt=True)) or 0) <= 300
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT") == 0.0  # already past
