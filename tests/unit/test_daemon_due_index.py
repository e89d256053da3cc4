"""The daemon's main loop finds the sources due through an index by due time: a wake costs
the sources due, not every source (issue #20: 1,000 mailboxes polled every minute wake the
loop about 17 times a second)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from syncd.engine.daemon import HEARTBEAT_EVERY, Daemon, Scheduled
from syncd.engine.schedule import Outcome


class Done:
    def add_done_callback(self, _callback: Any) -> None:
        pass


class Pool:
    def __init__(self) -> None:
        self.synced: list[str] = []

    def submit(self, fn: Any, *args: Any) -> Any:
        if args and isinstance(args[0], Scheduled):
            self.synced.append(args[0].name)
        return Done()


def _daemon(tmp_path: Path, dues: dict[str, float], held: set[str]) -> tuple[Daemon, Pool]:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    daemon = Daemon(config)
    pool = Pool()
    daemon._pool = cast(Any, pool)
    daemon._engine = cast(Any, SimpleNamespace())
    daemon._jobs.rules_due = lambda *_a: None  # type: ignore[method-assign]
    daemon._jobs.verifies_due = lambda *_a: []  # type: ignore[method-assign]
    daemon._jobs.rules_wait = lambda: float("inf")  # type: ignore[method-assign]
    now = time.monotonic()
    with daemon._lock:
        for name, due in dues.items():
            source = cast(Any, SimpleNamespace(kind="mailbox", name=name))
            scheduled = daemon._sources[("mailbox", name)] = Scheduled(source, due=now + due)
            daemon._schedule(scheduled)
    daemon._leases.held = frozenset(("mailbox", n) for n in held)
    return daemon, pool


def test_the_sources_due_and_held_are_synced_soonest_first_once(tmp_path: Path) -> None:
    daemon, pool = _daemon(
        tmp_path, {"a": -1.0, "b": 100.0, "c": -2.0, "d": -3.0}, held={"a", "b", "c"}
    )
    daemon._dispatch()
    assert pool.synced == ["c", "a"]  # d is another daemon's; b is not due
    daemon._dispatch()
    assert pool.synced == ["c", "a"]  # running: not twice
    # The next wake is b's due, capped by the heartbeat.
    assert daemon._sleep_for(time.monotonic() + 1000) == HEARTBEAT_EVERY
    # A sync ends: due again an interval later, not now.
    a = daemon._sources[("mailbox", "a")]
    daemon._finish(a, Outcome(), None, record=False)
    daemon._dispatch()
    assert pool.synced == ["c", "a"] and a.due > time.monotonic() + 30
    # New mail: b is due now (its old entry, 100 s away, is stale from here on).
    daemon.wake(("mailbox", "b"))
    daemon._dispatch()
    assert pool.synced == ["c", "a", "b"]
    # d's lease comes to this daemon with its due unchanged: the beat's reindex finds it.
    daemon._leases.held = daemon._leases.held | {("mailbox", "d")}
    daemon._dispatch()
    assert pool.synced == ["c", "a", "b"]
    daemon._reindex()
    daemon._dispatch()
    assert pool.synced == ["c", "a", "b", "d"]


def test_the_loop_sleeps_until_the_soonest_due_source_it_holds(tmp_path: Path) -> None:
    daemon, _pool = _daemon(tmp_path, {"a": 1.0, "b": 0.2, "c": 2.0}, held={"a", "c"})
    daemon._verify_at = float("inf")
    assert 0.5 < daemon._sleep_for(time.monotonic() + 1000) <= 1.0  # b is not held


def test_a_wake_with_nothing_due_does_not_read_every_source(tmp_path: Path) -> None:
    many = {f"m{i}": 60.0 + i / 1000 for i in range(20_000)}
    daemon, pool = _daemon(tmp_path, many, held=set(many))
    daemon._dispatch()  # the first looks for verifies (every source), then not until due
    started = time.thread_time()
    daemon._reindex()  # one look at every source
    every_source = time.thread_time() - started
    daemon._verify_at = float("inf")
    started = time.thread_time()
    for _ in range(100):
        daemon._dispatch()
        daemon._sleep_for(time.monotonic() + 1000)
    wakes = time.thread_time() - started
    assert pool.synced == []
    assert wakes < every_source  # 100 wakes cost less than reading every source once
