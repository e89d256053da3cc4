"""The daemon's main loop finds the sources due through an index by due time: a wake costs
the sources due, not every source (issue #20: 1,000 mailboxes polled every minute wake the
loop about 17 times a second)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from syncd.engine.daemon import HEARTBEAT_EVERY, Daemon, Scheduled
from syncd.engine.fleet import FleetView
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
    with daemon._timetable.lock:
        for name, due in dues.items():
            source = cast(Any, SimpleNamespace(kind="mailbox", name=name))
            scheduled = daemon._timetable.sources[("mailbox", name)] = Scheduled(
                source, due=now + due
            )
            daemon._timetable.schedule(scheduled)
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
    a = daemon._timetable.sources[("mailbox", "a")]
    daemon._worker.finish(a, Outcome(), None)
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
    daemon._timetable.reindex()
    daemon._dispatch()
    assert pool.synced == ["c", "a", "b", "d"]


def test_the_loop_sleeps_until_the_soonest_due_source_it_holds(tmp_path: Path) -> None:
    daemon, _pool = _daemon(tmp_path, {"a": 1.0, "b": 0.2, "c": 2.0}, held={"a", "c"})
    daemon._timetable.verify_at = float("inf")
    assert 0.5 < daemon._sleep_for(time.monotonic() + 1000) <= 1.0  # b is not held


def test_a_wake_with_nothing_due_does_not_read_every_source(tmp_path: Path) -> None:
    many = {f"m{i}": 60.0 + i / 1000 for i in range(20_000)}
    daemon, pool = _daemon(tmp_path, many, held=set(many))
    daemon._dispatch()  # the first looks for verifies (every source), then not until due
    started = time.thread_time()
    daemon._timetable.reindex()  # one look at every source
    every_source = time.thread_time() - started
    daemon._timetable.verify_at = float("inf")
    started = time.thread_time()
    for _ in range(100):
        daemon._dispatch()
        daemon._sleep_for(time.monotonic() + 1000)
    wakes = time.thread_time() - started
    assert pool.synced == []
    assert wakes < every_source  # 100 wakes cost less than reading every source once


class _Covered:
    """A mailbox whose INBOX its watch covers: the cheap poll needs no server."""

    kind = "mailbox"
    record_kind = "email"

    def __init__(self, name: str, at_hand: bool) -> None:
        self.name = name
        self.at_hand = at_hand
        self.asked: list[bool] = []

    def unchanged(self, *, ask: bool = True) -> list[str] | None:
        self.asked.append(ask)
        return ["INBOX"] if ask or self.at_hand else None


def test_a_quiet_poll_the_watch_answers_runs_on_the_loop_without_a_worker(tmp_path: Path) -> None:
    daemon, pool = _daemon(tmp_path, {"a": -1.0, "b": -1.0, "c": -1.0}, held={"a", "b", "c"})
    covered, asking = _Covered("a", at_hand=True), _Covered("b", at_hand=False)
    daemon._timetable.sources[("mailbox", "a")].source = cast(Any, covered)
    daemon._timetable.sources[("mailbox", "b")].source = cast(Any, asking)
    daemon._timetable.sources[("mailbox", "c")].news = True  # the pass, which takes the news
    daemon._dispatch()
    # a: answered at once, noted for the heartbeat, next due an interval away.
    a = daemon._timetable.sources[("mailbox", "a")]
    assert covered.asked == [False] and not a.running and a.due > time.monotonic() + 30
    assert len(daemon._polls) == 1 and daemon._timetable.counters.syncs == 1
    # b needs a STATUS (a round trip) and c has news: both go to a worker.
    assert sorted(pool.synced) == ["b", "c"] and asking.asked == [False]


def test_sources_due_within_the_gather_go_in_the_same_wake(tmp_path: Path) -> None:
    daemon, pool = _daemon(tmp_path, {"a": -0.1, "b": 0.3, "c": 5.0}, held={"a", "b", "c"})
    assert (
        daemon._timetable.gather == 0.5
    )  # interval 60 s, jitter 10 %: a poll may start 0.5 s early
    daemon._dispatch()
    assert pool.synced == ["a", "b"]  # c is 5 s away: the next wake's


def test_without_jitter_nothing_is_polled_early(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n[sync]\ninterval = 1\njitter = 0\n'
    )
    assert Daemon(config)._timetable.gather == 0.0


def test_a_beat_keeps_the_index_and_rebuilds_it_once_stale_entries_outnumber_sources(
    tmp_path: Path,
) -> None:
    daemon, _pool = _daemon(tmp_path, {f"m{i}": 60.0 for i in range(10)}, held=set())
    index = daemon._timetable.due
    daemon._timetable.reindex_if_due()
    assert (
        daemon._timetable.due is index
    )  # nothing to rebuild: a beat costs no look at every source
    a = daemon._timetable.sources[("mailbox", "m0")]
    for _ in range(2 * 10 + 64):  # quiet polls, each leaving a stale entry behind
        a.due += 1.0
        daemon._timetable.schedule(a)
    daemon._timetable.reindex_if_due()
    assert daemon._timetable.due is not index and len(daemon._timetable.due) == 10


def test_verifies_are_looked_for_after_one_ended_not_at_every_wake(tmp_path: Path) -> None:
    daemon, _pool = _daemon(tmp_path, {}, held=set())
    looked: list[int] = []
    daemon._jobs.verifies_due = lambda *_a: looked.append(1) or []  # type: ignore[method-assign]
    daemon._dispatch()
    assert looked == [1]  # the first wake looks
    daemon._timetable.verify_at = float("inf")
    daemon._dispatch()
    assert looked == [1]
    daemon._jobs._verify_ended = True  # a verify ended: its next one is now to be placed
    daemon._dispatch()
    assert looked == [1, 1]
    daemon._timetable.verify_at = float("inf")
    daemon._leases._posted = FleetView(("me",), frozenset())  # a beat's view: nothing gained
    daemon._apply_fleet()
    daemon._dispatch()
    assert looked == [1, 1]
