"""When a source is synced next: polls with jitter, backoff after failures.

Pure: times in, times out, and a random source to draw jitter from, so the rules are
tested without clocks or servers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

# A refused login is tried again at most this often: often enough to notice a fixed
# password within the hour, rarely enough never to lock the account.
CREDENTIALS_RETRY = timedelta(hours=1)
# Settings that do not fit the server (TLS, a missing calendar) change only when a person
# edits the config (SIGHUP); until then a look every quarter hour is plenty.
CONFIG_RETRY = timedelta(minutes=15)
# A bug of ours or a library that changed (an internal error) comes back on every try:
# the source waits for a person like a refused login, and is looked at hourly in case
# the cause was passing (a value that has since changed on the server).
INTERNAL_RETRY = timedelta(hours=1)
BACKOFF_BASE = 10.0  # seconds


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a sync of one source ended with."""

    error_kind: str | None = (
        None  # None, or RemoteError.kind: transient, refused, credentials, config, internal
    )
    retry_after: float | None = None  # seconds the server asked us to wait (HTTP Retry-After)


@dataclass(frozen=True, slots=True)
class Next:
    at: datetime
    state: str  # ok | backoff | attention
    failures: int


def next_run(
    outcome: Outcome,
    now: datetime,
    *,
    interval: float,
    jitter: float,
    max_backoff: float,
    failures: int,
    rng: random.Random,
) -> Next:
    """The next sync of a source after ``outcome``; ``failures`` counts the ones before it."""
    kind = outcome.error_kind
    if kind is None:
        spread = interval * jitter
        return Next(now + timedelta(seconds=interval + rng.uniform(-spread, spread)), "ok", 0)
    if kind == "credentials":
        return Next(now + CREDENTIALS_RETRY, "attention", failures + 1)
    if kind == "config":
        return Next(now + CONFIG_RETRY, "attention", failures + 1)
    if kind == "internal":
        return Next(now + INTERNAL_RETRY, "attention", failures + 1)
    # Transient or refused: exponential backoff from a few seconds (a server restart is
    # over quickly), jittered so that mailboxes on one server do not return in step, and
    # never sooner than the server asked.
    ceiling = min(max_backoff, min(interval, BACKOFF_BASE) * 2 ** min(failures, 30))
    delay = rng.uniform(ceiling / 2, ceiling)
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, max_backoff))
    return Next(now + timedelta(seconds=delay), "backoff", failures + 1)
