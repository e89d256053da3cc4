"""The one retry policy of the connector edge, and how error kinds map to a schedule."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from syncd.connectors.retry import LOGIN, PASS, REQUEST, RetryPolicy
from syncd.engine.daemon import crash_kind
from syncd.engine.schedule import INTERNAL_RETRY, Outcome, next_run
from syncd.engine.task_sync import TaskLists
from syncd.errors import (
    CredentialsError,
    InternalError,
    RefusedError,
    RemoteConfigError,
    TransientError,
)
from syncd.metrics import Metrics
from syncd.store.database import make_engine

FAST = RetryPolicy(attempts=4, base=0.01, cap=0.02)


class _Calls:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_transient_errors_are_retried_until_success() -> None:
    calls = _Calls(TransientError("reset"), TransientError("timed out"))
    seen: list[str] = []
    assert FAST.call(calls, on_retry=lambda err, _wait: seen.append(str(err))) == "done"
    assert calls.count == 3 and seen == ["reset", "timed out"]


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    calls = _Calls(*(TransientError(f"try {n}") for n in range(1, 10)))
    with pytest.raises(TransientError, match="try 4"):
        FAST.call(calls)
    assert calls.count == FAST.attempts == 4


@pytest.mark.parametrize(
    "error",
    [
        InternalError("calendar x: internal error (AttributeError at dav.py:1 in f)"),
        RefusedError("connection refused"),
        CredentialsError("login refused"),
        RemoteConfigError("no such folder"),
        AttributeError("a bug"),
    ],
)
def test_only_transient_errors_are_retried(error: Exception) -> None:
    calls = _Calls(error)
    with pytest.raises(type(error)):
        FAST.call(calls)
    assert calls.count == 1


def test_waits_grow_exponentially_with_full_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=10, base=1.0, cap=8.0)
    rng = random.Random(7)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (40, 8.0)]:
        waits = [policy.wait(failures, None, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # the jitter spans the whole range


def test_retry_after_is_honoured_and_a_long_one_is_left_to_the_scheduler() -> None:
    policy = RetryPolicy(attempts=3, base=0.01, cap=0.01, max_retry_after=0.3)
    assert policy.wait(1, TransientError("busy", retry_after=0.2)) >= 0.2
    calls = _Calls(TransientError("busy", retry_after=0.2))
    started = time.monotonic()
    assert policy.call(calls) == "done"
    assert time.monotonic() - started >= 0.2 and calls.count == 2
    # Longer than the edge waits inline: raised at once, for the scheduler's backoff.
    calls = _Calls(TransientError("busy", retry_after=60))
    with pytest.raises(TransientError):
        policy.call(calls)
    assert calls.count == 1


def test_a_stop_request_cuts_a_wait_short_and_raises_the_last_error() -> None:
    policy = RetryPolicy(attempts=5, base=30.0, cap=30.0, step=0.02)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    calls = _Calls(*(TransientError(f"try {n}") for n in range(1, 6)))
    started = time.monotonic()
    with pytest.raises(TransientError, match="try 1"):
        # The first wait is drawn from [0, 30): seed it away from "almost nothing".
        random.seed(3)
        policy.call(calls, should_stop=stop.is_set)
    assert time.monotonic() - started < 2.0 and calls.count == 1


def test_nothing_is_retried_once_stop_was_requested() -> None:
    calls = _Calls(TransientError("reset"))
    with pytest.raises(TransientError):
        FAST.call(calls, should_stop=lambda: True)
    assert calls.count == 1


def test_the_named_edges_are_bounded() -> None:
    for policy in (LOGIN, REQUEST, PASS):
        assert 1 < policy.attempts <= 3 and policy.cap <= 5.0


def test_an_internal_error_waits_for_a_person_hourly() -> None:
    now = datetime(2026, 3, 2, 8, tzinfo=UTC)
    rng = random.Random(1)
    for failures in (0, 1, 50):
        nxt = next_run(
            Outcome("internal"), now, interval=60, jitter=0.1, max_backoff=900,
            failures=failures, rng=rng,
        )  # fmt: skip
        assert (nxt.state, nxt.at - now, nxt.failures) == (
            "attention",
            INTERNAL_RETRY,
            failures + 1,
        )
    assert timedelta(hours=1) == INTERNAL_RETRY
    transient = next_run(
        Outcome("transient"), now, interval=60, jitter=0.1, max_backoff=900, failures=0, rng=rng
    )
    assert transient.state == "backoff" and transient.at - now <= timedelta(seconds=10)


def test_what_escapes_a_sync_is_internal_unless_the_database_is_unreachable() -> None:
    assert crash_kind(AttributeError("x")) == "internal"
    assert crash_kind(KeyError("x")) == "internal"
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    assert crash_kind(lost) == "transient"
    # Every pooled connection busy: it passes, so it is not a bug to wait an hour for.
    assert crash_kind(PoolTimeout("QueuePool limit of size 5 overflow 10 reached")) == "transient"


def test_a_daemon_pool_holds_a_connection_per_worker(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/pool.db", pool_size=12)
    held = [engine.connect() for _ in range(20)]  # 12 kept, as many again on demand
    assert len(held) == 20
    for conn in held:
        conn.close()
    engine.dispose()


def test_internal_errors_are_counted_under_their_own_label() -> None:
    metrics = Metrics()
    metrics.synced("rep", "email", 0, 0.1, "internal")
    metrics.synced("rep", "email", 0, 0.1, "transient")
    metrics.synced("rep", "email", 0, 0.1, "internal")
    value = metrics.registry.get_sample_value
    assert value("syncd_sync_errors_total", {"source": "rep", "kind": "internal"}) == 2
    assert value("syncd_sync_errors_total", {"source": "rep", "kind": "transient"}) == 1


def test_an_internal_error_names_the_type_and_place_never_the_message() -> None:
    def drifted() -> None:
        raise AttributeError("'Principal' has no attribute 'calendars' for pw-s3cr3t")

    try:
        drifted()
    except AttributeError as err:
        internal = InternalError.from_exception("calendar rep", err)
    assert internal.kind == "internal"
    assert internal.message.startswith("calendar rep: internal error (AttributeError at ")
    assert "test_retry_policy.py:" in internal.message and "in drifted" in internal.message
    assert "s3cr3t" not in str(internal) and "Principal" not in str(internal)


def test_task_lists_are_safe_to_share_between_worker_threads() -> None:
    from syncd.config import CalendarConfig

    sources = [
        CalendarConfig.from_dict(
            {
                "name": f"cal{n}",
                "owner": f"rep{n}@example.com",
                "url": "http://127.0.0.1:1/",
                "username": f"u{n}",
                "password": "pw",
                "tasks_calendar": "Tasks",
            }
        )
        for n in range(8)
    ]
    lists = TaskLists()
    errors: list[BaseException] = []
    start = threading.Barrier(len(sources))

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(2000):
                source = sources[(n + i) % len(sources)]
                lists.remember(source, f"http://127.0.0.1:1/{source.name}/tasks/")
                found = lists.get(source)
                assert found in (None, f"http://127.0.0.1:1/{source.name}/tasks/")
                if i % 7 == 0:
                    lists.forget(source)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(len(sources))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for source in sources:
        lists.remember(source, f"http://127.0.0.1:1/{source.name}/tasks/")
    assert len(lists) == len(sources)
    assert lists.get(sources[3]) == "http://127.0.0.1:1/cal3/tasks/"
    # Another list name on the same source is another key: looked up again.
    renamed = replace(sources[3], tasks_calendar="Other")
    assert lists.get(renamed) is None
