"""The daemon's timed jobs, run on its worker pool beside the syncs: `syncd verify` of each
held source every ``[sync] verify_interval``, and the follow-up rules with the outbox's
upkeep (meetings that ended announced held, retention) every ``[tasks] interval`` and after
any sync that captured something.

The loop asks ``rules_due`` and ``verifies_due`` for what to submit, ``next_verify`` and
``rules_wait`` for when to wake next; a job notes its end here and rings the loop's alarm.
Nothing here calls the loop.

Verifies take at most ``slots`` of the pool's workers at a time (``verify_slots``: half of
them, at least one), oldest due first; the rest stay due and go as running ones end (each
end rings the alarm).  The pool is FIFO: a daemon that submitted every verify due at once
(2,500 at a 10,000-mailbox fleet's first start) made every sync gained meanwhile, a
takeover's included, wait behind them all (issue #20: SIGTERM handovers of 32 s and 83 s).
Verifies due are found through an index by due time, as the timetable's syncs are: a
verify's end costs O(log sources), not a look at every source; the sources are read only
when they change (``plan_verifies``).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Collection, Iterable
from datetime import timedelta
from functools import partial

from sqlalchemy import Connection, Engine

from syncd.config import Config
from syncd.engine.event_upkeep import events_upkeep
from syncd.engine.fleet import LEASE
from syncd.engine.followups import evaluate_followups
from syncd.engine.sources import Source
from syncd.errors import VerifyStopped
from syncd.logs import get_logger
from syncd.metrics import Metrics
from syncd.store import leases, turns

log = get_logger("syncd.daemon")

Key = tuple[str, str]  # (kind, name)
Job = Callable[[], None]
FIRST_VERIFY_WITHIN = 600.0  # seconds after start (a daemon restarted daily must still verify)


def verify_slots(workers: int) -> int:
    """The workers verifies may take at once: half the pool, at least one.  A sync then
    queues behind at most that many verifies, and verifies still progress."""
    return max(1, workers // 2)


class TimedJobs:
    def __init__(
        self,
        daemon_id: str,
        metrics: Metrics,
        alarm: threading.Event,
        *,
        slots: int = 1,
        stopping: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._id = daemon_id
        self._metrics = metrics
        self._alarm = alarm
        self._slots = max(1, slots)  # verifies running or queued at once
        self._stopping = stopping or threading.Event()  # a verify stops at its next batch
        self._clock = clock
        self._lock = threading.Lock()
        self._verify_due: dict[Key, float] = {}
        # (due, seq, key), soonest first; an entry whose key's due moved since is stale.
        self._verify_index: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        self._verifying: set[Key] = set()
        # A verify ended since the loop last looked: a slot is free, and its next one is due,
        # at the earliest, ``every`` after it began, which the loop's next wake
        # (``next_verify``) left out.
        self._verify_ended = False
        self._rules_due = 0.0
        # A sync captured something since the last evaluation (or the daemon just started,
        # perhaps with new rules: it evaluates once at start, whoever's turn it is).
        self._rules_news = True
        self._rules_running = False

    def captured(self) -> None:
        """A sync captured something: new facts for the rules, evaluated by this daemon
        at once, its turn or not."""
        with self._lock:
            self._rules_due = min(self._rules_due, time.monotonic())
            self._rules_news = True

    def rules_due(self, engine: Engine, config: Config) -> Job | None:
        """The follow-up rules' run, if due now (marked running until it ends)."""
        with self._lock:
            if self._rules_running or self._rules_due > time.monotonic():
                return None
            self._rules_running = True
        return partial(self._evaluate_rules, engine, config)

    def plan_verifies(self, every: float, keys: Iterable[Key]) -> None:
        """The sources to verify (at start, after a reload or a fleet change, and every
        minute as a net): a new one is first due soon after start, after the first syncs'
        turn; one removed by a reload is forgotten.  O(sources): only when they change."""
        now = self._clock()
        with self._lock:
            if not every:
                self._verify_due.clear()
                self._verify_index.clear()
                return
            wanted = dict.fromkeys(keys)  # in the config's order: ties go first to last
            for gone in self._verify_due.keys() - wanted.keys():
                del self._verify_due[gone]
            for key in wanted:
                self._verify_due.setdefault(key, now + min(every, FIRST_VERIFY_WITHIN))
            # Rebuilt without stale entries; one running is placed again when it ends.
            self._verify_index = [
                (due, next(self._seq), key)
                for key, due in self._verify_due.items()
                if key not in self._verifying
            ]
            heapq.heapify(self._verify_index)

    def verifies_due(
        self,
        engine: Engine,
        every: float,
        held: Collection[Key],
        verifiable: Callable[[Key], Source | None],
    ) -> list[Job]:
        """The verifies to run now, oldest due first, while a slot is free (each marked
        running until it ends); never waits on one.  ``verifiable``: the source of a key
        whose last sync did not fail, else None (a verify of one that fails would only say
        again what its sync already says; a source removed is None too).  One not held or
        not verifiable now is due again ``every`` later, as one verified.

        Lock order: this lock, then whatever ``verifiable`` takes (the timetable's); nothing
        takes them the other way round."""
        now = self._clock()
        jobs: list[Job] = []
        with self._lock:
            if not every:
                self._verify_due.clear()
                self._verify_index.clear()
                return jobs
            index = self._verify_index
            while index and len(self._verifying) < self._slots:
                due, _seq, key = index[0]
                if self._verify_due.get(key) != due or key in self._verifying:
                    heapq.heappop(index)  # stale, or running (placed again at its end)
                    continue
                if due > now:
                    break
                heapq.heappop(index)
                self._place(key, now + every)
                source = verifiable(key) if key in held else None
                if source is None:
                    continue
                self._verifying.add(key)
                jobs.append(partial(self._verify, engine, key, source))
        return jobs

    def _place(self, key: Key, due: float) -> None:
        """With the lock held."""
        self._verify_due[key] = due
        heapq.heappush(self._verify_index, (due, next(self._seq), key))

    def verify_ended(self) -> bool:
        """A verify ended since the last call."""
        with self._lock:
            ended, self._verify_ended = self._verify_ended, False
        return ended

    def next_verify(self) -> float:
        """When the loop is to look for verifies next (time.monotonic()): the soonest due
        of one not running; infinity when none is, or while every slot is taken (a
        verify's end rings the alarm)."""
        with self._lock:
            if len(self._verifying) >= self._slots:
                return float("inf")
            index = self._verify_index
            while index:
                due, _seq, key = index[0]
                if self._verify_due.get(key) == due and key not in self._verifying:
                    return due
                heapq.heappop(index)
        return float("inf")

    def verifying(self) -> int:
        """Verifies running or queued now."""
        with self._lock:
            return len(self._verifying)

    def rules_wait(self) -> float:
        """When the follow-up rules are next due (infinity while they run)."""
        with self._lock:
            return float("inf") if self._rules_running else self._rules_due

    def _verify(self, engine: Engine, key: Key, source: Source) -> None:
        """Account for every message or event of one source; export and log what is missing."""
        kind, name = key
        try:
            with engine.connect() as conn:
                epoch = leases.lease_epoch(conn, kind, name)

            def fence(conn: Connection) -> None:
                leases.fence(conn, kind, name, self._id, LEASE, epoch)

            report = source.verify(fence, should_stop=self._stopping.is_set)
            if not report.failed:
                self._metrics.unaccounted.labels(name).set(report.missing)
            log.info("verify.done", source=name, missing=report.missing)
        except VerifyStopped:
            log.info("verify.stopped", source=name)  # the daemon is stopping
        except leases.LeaseLost:
            log.info("verify.lease_lost", source=name)  # its new holder verifies it
        except Exception as err:  # the next round tries again; the sync itself is unaffected
            log.warning(
                "verify.crashed", source=name, error=f"{type(err).__name__}: {str(err)[:200]}"
            )
        finally:
            with self._lock:
                self._verifying.discard(key)
                self._verify_ended = True
                due = self._verify_due.get(key)
                if due is not None:  # (None: removed by a reload meanwhile)
                    self._place(key, due)
            self._alarm.set()  # a slot is free: the loop submits the next one due

    def _evaluate_rules(self, engine: Engine, config: Config) -> None:
        every = timedelta(seconds=config.tasks.interval)
        with self._lock:
            news, self._rules_news = self._rules_news, False
        try:
            # The timer's runs: one per interval across the daemons (store/turns.py).  After
            # a capture the capturing daemon evaluates at once, whoever's turn it is.
            with engine.begin() as conn:
                mine = turns.take_turn(conn, "tasks", every) or news
            if mine:
                evaluate_followups(engine, config)
                events_upkeep(engine, config)  # held meetings, retention
            else:
                log.debug("tasks.not_our_turn")
        except Exception as err:  # the database may be down; the next round tries again
            log.warning("tasks.evaluation_failed", error=f"{type(err).__name__}: {str(err)[:200]}")
            with self._lock:
                self._rules_news |= news
        with self._lock:
            self._rules_running = False
            # A capture that ended during this evaluation brought facts it did not see.
            later = 0.0 if self._rules_news else config.tasks.interval
            self._rules_due = time.monotonic() + later
        self._alarm.set()
