"""The daemon's verifies take at most their slots of the worker pool, oldest due first
(issue #20: every verify due submitted at once, 2,500 at a fleet's first start, made the
syncs of a takeover wait behind them all in the FIFO pool: handovers of 32 s and 83 s)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine

from syncd.engine.timed_jobs import FIRST_VERIFY_WITHIN, TimedJobs, verify_slots
from syncd.errors import VerifyStopped
from syncd.metrics import Metrics
from syncd.store.database import open_database

Key = tuple[str, str]
EVERY = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Report:
    failed = False
    missing = 0


class FakeSource:
    """Counts its verifies; ``stop_after``: asks ``should_stop`` and stops as the Verifier."""

    kind = "mailbox"

    def __init__(self, name: str, verified: list[str]) -> None:
        self.name = name
        self._verified = verified
        self.asked: list[bool] = []

    def verify(self, _fence: object, *, should_stop: Callable[[], bool]) -> Report:
        self.asked.append(should_stop())
        if self.asked[-1]:
            raise VerifyStopped
        self._verified.append(self.name)
        return Report()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    # A real store: a verify reads its source's lease epoch before it begins.
    path = tmp_path_factory.mktemp("jobs") / "syncd.db"
    engine = open_database(f"sqlite:///{path}")
    yield engine
    engine.dispose()


class World:
    def __init__(self, engine: Engine, names: list[str], slots: int) -> None:
        self.engine = engine
        self.clock = Clock()
        self.alarm = threading.Event()
        self.stopping = threading.Event()
        self.jobs = TimedJobs(
            "me", Metrics(), self.alarm, slots=slots, stopping=self.stopping, clock=self.clock
        )
        self.verified: list[str] = []
        self.sources = {("mailbox", n): FakeSource(n, self.verified) for n in names}
        self.held: set[Key] = set(self.sources)
        self.failing: set[Key] = set()

    def key(self, name: str) -> Key:
        return ("mailbox", name)

    def verifiable(self, key: Key) -> Any:
        return None if key in self.failing else self.sources.get(key)

    def plan(self) -> None:
        self.jobs.plan_verifies(EVERY, list(self.sources))

    def due(self) -> list[Any]:
        return self.jobs.verifies_due(self.engine, EVERY, self.held, self.verifiable)

    def names(self, jobs: list[Any]) -> list[str]:
        return [cast(FakeSource, job.args[2]).name for job in jobs]


def test_verifies_take_at_most_their_slots_oldest_due_first(engine: Engine) -> None:
    world = World(engine, [f"m{i}" for i in range(5)], slots=2)
    world.plan()
    world.clock.now += 10
    # Sources added later (a reload, a takeover) are first due later.
    world.sources |= {world.key(n): FakeSource(n, world.verified) for n in ("late0", "late1")}
    world.held |= set(world.sources)
    world.plan()
    assert world.due() == []  # not due yet: the first verify comes after the first syncs
    assert world.jobs.next_verify() == 1000.0 + FIRST_VERIFY_WITHIN
    world.clock.now += FIRST_VERIFY_WITHIN + 10  # every one is due now
    first = world.due()
    assert world.names(first) == ["m0", "m1"]  # two slots, the oldest due
    assert world.due() == [] and world.jobs.verifying() == 2
    # Every slot taken: the loop waits for an end, not for a due time already past.
    assert world.jobs.next_verify() == float("inf")
    first[0]()
    # Its end frees a slot and wakes the loop, which submits the next one due.
    assert world.alarm.is_set() and world.jobs.verify_ended()
    assert world.jobs.next_verify() <= world.clock.now
    second = world.due()
    assert world.names(second) == ["m2"] and world.jobs.verifying() == 2
    running = [first[1], second[0]]
    while running:
        job = running.pop(0)
        job()
        running += world.due()
        assert world.jobs.verifying() <= 2
    # Every source verified once, the ones added later last; none again before ``every``.
    assert world.verified == ["m0", "m1", "m2", "m3", "m4", "late0", "late1"]
    assert world.due() == []
    assert world.jobs.next_verify() > world.clock.now + EVERY - 60
    world.clock.now += EVERY + 1
    assert len(world.due()) == 2


def test_a_source_removed_by_a_reload_is_dropped_running_or_due(engine: Engine) -> None:
    world = World(engine, ["a", "b", "c"], slots=1)
    world.plan()
    world.clock.now += FIRST_VERIFY_WITHIN + 1
    (running,) = world.due()
    assert world.names([running]) == ["a"]
    # A reload removes a (running) and b (due, waiting for a slot).
    del world.sources[world.key("a")], world.sources[world.key("b")]
    world.plan()
    running()
    (job,) = world.due()
    assert world.names([job]) == ["c"]
    job()
    assert world.due() == [] and world.verified == ["a", "c"]
    world.clock.now += 3 * EVERY
    assert world.names(world.due()) == ["c"]  # a is not placed again by its end


def test_sources_not_held_or_failing_take_no_slot_and_wait_a_whole_interval(
    engine: Engine,
) -> None:
    world = World(engine, ["a", "b", "c"], slots=1)
    world.held.discard(world.key("a"))  # another daemon's
    world.failing.add(world.key("b"))  # its sync fails: its error says it already
    world.plan()
    world.clock.now += FIRST_VERIFY_WITHIN + 1
    (job,) = world.due()
    assert world.names([job]) == ["c"]
    world.held.add(world.key("a"))
    world.failing.clear()
    assert world.due() == []  # one slot: c's
    assert world.jobs.next_verify() == float("inf")
    job()
    # a and b were passed over when due: their next verify is an interval later.
    assert world.due() == [] and world.verified == ["c"]
    assert world.jobs.next_verify() == world.clock.now + EVERY


def test_a_stop_ends_a_verify_and_frees_its_slot(engine: Engine) -> None:
    world = World(engine, ["a", "b"], slots=1)
    world.plan()
    world.clock.now += FIRST_VERIFY_WITHIN + 1
    (job,) = world.due()
    world.stopping.set()  # SIGTERM
    job()
    source = world.sources[world.key("a")]
    assert source.asked == [True] and world.verified == []
    assert world.jobs.verifying() == 0 and world.jobs.verify_ended()


def test_verify_interval_zero_verifies_nothing(engine: Engine) -> None:
    world = World(engine, ["a"], slots=1)
    world.jobs.plan_verifies(0, list(world.sources))
    world.clock.now += 10 * EVERY
    assert world.jobs.verifies_due(engine, 0, world.held, world.verifiable) == []
    assert world.jobs.next_verify() == float("inf")


def test_half_the_pool_at_least_one() -> None:
    assert [verify_slots(n) for n in (1, 2, 3, 8, 16)] == [1, 1, 1, 4, 8]


def test_a_daemon_sizes_its_verify_slots_from_its_pool(tmp_path: Path) -> None:
    from syncd.engine.daemon import Daemon

    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n[sync]\nconcurrency = 6\n'
    )
    assert Daemon(config)._jobs._slots == 3
