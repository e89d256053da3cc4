"""The daemon's timetable: every source it runs, where it stands with each, and when each is
next due.

It owns the daemon's one lock, which guards the schedule (each ``Scheduled`` and the due
index) and nothing else: the loop's thread reads and moves due times, the workers write a
sync's outcome.  Only the loop's thread adds or removes sources.  Nothing here does I/O or
calls another collaborator: a worker notes what the loop must act on (a lease found lost, a
source back from "attention" whose watch may be started again) and the loop takes it
(``take_lost``, ``take_recovered``).

The due index is a heap of (due, seq, key), one entry pushed each time a ``due`` is set
(``schedule``); an entry whose source's due moved since is stale and skipped.  A wake of
the loop costs O(sources due), not O(sources), and so does a beat: the index is rebuilt
(``reindex``) only once stale entries outnumber the sources, and every REINDEX_EVERY as a
net (issue #20: 1,000 mailboxes polled every minute wake the loop about 17 times a second).
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from syncd.config import SyncConfig
from syncd.engine.sources import Source

Key = tuple[str, str]  # (kind, name)
# The due index is rebuilt at least this often (seconds), and verifies looked for: a net
# under the incremental upkeep, cheap at once a minute.
REINDEX_EVERY = 60.0
GATHER = 0.5  # seconds: see ``gather``
# A mailbox taken over is polled by then even when its watch has not logged in to say
# whether INBOX has news (a slow server, a long login queue).
OPEN_GRACE = 30.0  # seconds


def gather(interval: float, jitter: float) -> float:
    """Seconds early a poll may start, with others due about then: a small part of the
    spread its jitter gives it anyway, and never more than GATHER."""
    return min(GATHER, interval * jitter / 4)


@dataclass(slots=True)
class Scheduled:
    """A source and where the daemon stands with it."""

    source: Source
    due: float  # time.monotonic() of the next sync
    failures: int = 0
    state: str = "ok"  # ok | syncing | backoff | attention
    reason: str | None = None
    running: bool = False
    retired: bool = False  # removed from the config while a sync was running
    woken: bool = False  # new mail (IDLE) during the running sync: sync again right after
    # New items reported (IMAP IDLE) since the last sync began: the next one is a full
    # pass, never the cheap poll (which trusts the watch for INBOX: sources.py).
    news: bool = False

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def key(self) -> Key:
        return (self.source.kind, self.source.name)


@dataclass(slots=True)
class Counters:
    records: int = 0
    syncs: int = 0


class Timetable:
    def __init__(self, rng: random.Random, sync: SyncConfig) -> None:
        self.lock = threading.Lock()
        self.sources: dict[Key, Scheduled] = {}
        self.due: list[tuple[float, int, Key]] = []  # (due, seq, key), soonest first
        self._seq = itertools.count()
        self._reindexed = time.monotonic()
        self._rng = rng
        self.gather = gather(sync.interval, sync.jitter)
        # Verifies are looked for when the soonest is due or one ended (TimedJobs), not at
        # every wake; the sources are read for them (``take_verify_plan``) only after a
        # reload, a fleet change or a reindex, not at every look.
        self.verify_at = 0.0
        self._verify_plan = True
        self.counters = Counters()
        self._lost: set[Key] = set()  # leases a worker found gone, for the loop
        self._recovered: set[Key] = set()  # out of "attention": their watch may start again

    # --- the index ------------------------------------------------------------------------

    def schedule(self, scheduled: Scheduled) -> None:
        """Index ``scheduled`` at its (new) due time.  Called with the lock held."""
        heapq.heappush(self.due, (scheduled.due, next(self._seq), scheduled.key))

    def tune(self, sync: SyncConfig) -> None:
        """A reloaded [sync]: how early a poll may start."""
        self.gather = gather(sync.interval, sync.jitter)

    def take_due(self, now: float, held: Collection[Key]) -> list[Scheduled]:
        """The sources held and due, soonest first, marked running.  Those due within the
        gather too: a source polled every minute does not mind a fraction of a second
        early, and the loop wakes a few times a second, not once for every source."""
        due: list[Scheduled] = []
        until = now + self.gather
        with self.lock:
            while self.due and self.due[0][0] <= until:
                at, _seq, key = heapq.heappop(self.due)
                source = self.sources.get(key)
                if source is None or source.running or source.due != at or key not in held:
                    continue  # stale (due moved, or in a sync whose end sets it), or not ours
                source.running = True
                due.append(source)
        return due

    def soonest(self, held: Collection[Key]) -> float | None:
        """When the soonest source held is due (None: none is)."""
        with self.lock:
            while self.due:  # drop the stale entries on top: the first one left is next
                at, _seq, key = self.due[0]
                source = self.sources.get(key)
                if source is not None and not source.running and source.due == at and key in held:
                    return at
                heapq.heappop(self.due)
        return None

    def reindex_if_due(self) -> None:
        """Rebuild the index once its stale entries outnumber the sources (each quiet poll
        leaves one), or REINDEX_EVERY since the last rebuild."""
        with self.lock:
            bloated = len(self.due) > 2 * len(self.sources) + 64
        if bloated or time.monotonic() - self._reindexed >= REINDEX_EVERY:
            self.reindex()

    def reindex(self) -> None:
        """Every source again, at its due time, without stale entries; verifies looked for
        at the next wake."""
        with self.lock:
            self._reindexed = time.monotonic()
            self.due = [
                (s.due, next(self._seq), key) for key, s in self.sources.items() if not s.running
            ]
            heapq.heapify(self.due)
            self._replan_verifies()

    def _replan_verifies(self) -> None:
        """The sources changed (or a minute passed): verifies read them at the next wake.
        Called with the lock held."""
        self.verify_at = 0.0
        self._verify_plan = True

    def take_verify_plan(self) -> bool:
        """Whether the sources are to be read for verifies (taken: the loop reads them)."""
        with self.lock:
            plan, self._verify_plan = self._verify_plan, False
        return plan

    # --- what moves a source --------------------------------------------------------------

    def wake(self, key: Key) -> None:
        """New items (IMAP IDLE): sync this source now, or right after the sync in progress."""
        with self.lock:
            scheduled = self.sources.get(key)
            if scheduled is not None:
                scheduled.news = True
            if scheduled is not None and scheduled.state in ("ok", "syncing"):
                scheduled.due = time.monotonic()
                self.schedule(scheduled)
                # The running sync may have read the folder already; its end sets `due`.
                scheduled.woken = scheduled.running

    def take_news(self, scheduled: Scheduled) -> bool:
        """Whether the watch reported news since the last sync began (taken: a sync begins)."""
        with self.lock:
            news, scheduled.news = scheduled.news, False
        return news

    def may_poll_cheaply(self, scheduled: Scheduled) -> bool:
        """No news to take and nothing wrong: the cheap poll may answer for this source."""
        with self.lock:
            return not scheduled.news and scheduled.state == "ok" and scheduled.reason is None

    def finished(
        self,
        scheduled: Scheduled,
        state: str,
        failures: int,
        reason: str | None,
        delay: float,
        *,
        was: str | None = None,
    ) -> None:
        """A sync ended: its outcome, and the next one ``delay`` seconds away (at once when
        mail came while it ran).  ``was``: its state before the pass (a pass sets "syncing"
        meanwhile); None: the one it has now."""
        before = scheduled.state if was is None else was
        recovered = state == "ok" and before == "attention"
        with self.lock:
            scheduled.state, scheduled.failures, scheduled.reason = state, failures, reason
            scheduled.due = time.monotonic() + max(0.0, delay)
            if scheduled.woken and state == "ok":  # mail came while it ran: not in 60 s
                scheduled.due = time.monotonic()
            scheduled.running = scheduled.woken = False
            self.schedule(scheduled)
            if recovered and not scheduled.retired:
                self._recovered.add(scheduled.key)

    def dropped(self, dropped: Iterable[Scheduled]) -> None:
        """Syncs submitted but dropped from the pool's queue at a stop: not running (their
        leases are released at once, not kept for a sync that will not come)."""
        with self.lock:
            for scheduled in dropped:
                scheduled.running = scheduled.woken = False

    def counted(self, records: int) -> None:
        with self.lock:
            self.counters.records += records
            self.counters.syncs += 1

    def lost(self, key: Key) -> None:
        """A worker found the source's lease gone: the loop stops its watch."""
        with self.lock:
            self._lost.add(key)

    def take_lost(self) -> set[Key]:
        with self.lock:
            lost, self._lost = self._lost, set()
        return lost

    def take_recovered(self) -> set[Key]:
        with self.lock:
            recovered, self._recovered = self._recovered, set()
        return recovered

    # --- the loop's changes: config, fleet ------------------------------------------------

    def reconcile(
        self, wanted: Mapping[Key, Source], *, first: bool, spread: float
    ) -> tuple[list[Scheduled], list[tuple[Scheduled, bool]]]:
        """The sources of a (re)loaded config: those removed (retired), and those new or
        changed, each with whether it is new; an unchanged one keeps its schedule, with the
        new [capture]/[sync] settings.  A first sync is spread over ``spread`` seconds at
        start, so that a restart does not log in everywhere at once."""
        now = time.monotonic()
        removed: list[Scheduled] = []
        fresh: list[tuple[Scheduled, bool]] = []
        with self.lock:
            for key, scheduled in list(self.sources.items()):
                if key not in wanted:
                    scheduled.retired = True
                    del self.sources[key]
                    removed.append(scheduled)
            for key, source in wanted.items():
                current = self.sources.get(key)
                if current is not None and current.source.config == source.config:
                    current.source = source
                    continue
                due = now + (self._rng.uniform(0, spread) if first else 0.0)
                scheduled = self.sources[key] = Scheduled(source, due=due)
                self.schedule(scheduled)
                fresh.append((scheduled, current is None))
            self._replan_verifies()  # sources added: their first verify is to be set
        return removed, fresh

    def take_over(
        self, gained: Collection[Key], *, first: bool, watch: Callable[[Scheduled, bool], bool]
    ) -> None:
        """Sources whose lease this daemon gained: each watched (``watch(scheduled,
        taken_over)``, True when a watch started) and placed in the index.

        Taken over from another daemon, mail may have come since its last poll.  Where a
        watch on INBOX can say so at its login, only the mailboxes it finds news in are
        polled at once (``opened``): a daemon that takes over a thousand mailboxes polls the
        hundred with mail first, not all thousand in any order."""
        with self.lock:
            for key in gained:
                scheduled = self.sources.get(key)
                if scheduled is None or scheduled.retired:
                    continue
                checked = not first and scheduled.state == "ok" and scheduled.source.news_at_login
                watched = scheduled.state != "attention" and watch(scheduled, checked)
                if not first and scheduled.state == "ok":
                    # (Its `due` is stale: it was never polled here, or not since it left.)
                    if checked and watched:
                        scheduled.due = time.monotonic() + OPEN_GRACE
                    else:
                        scheduled.due = min(scheduled.due, time.monotonic())
                self.schedule(scheduled)  # ours now, whether its due moved or not
            if gained:  # (every beat posts a view: most gain nothing)
                self._replan_verifies()  # a source gained may have a verify due

    def opened(self, keys: Iterable[Key], news: Collection[Key], interval: float) -> None:
        """Watches of sources taken over that logged in: those with ``news`` are due now,
        the others within the interval, spread, as any source."""
        now = time.monotonic()
        with self.lock:
            for key in keys:
                scheduled = self.sources.get(key)
                if scheduled is None or scheduled.retired or scheduled.state != "ok":
                    continue
                if key in news:
                    scheduled.due = min(scheduled.due, now)
                elif not scheduled.running and scheduled.due > now:
                    # (A due already past: a wake came since, IDLE saw mail: left alone.)
                    spread = self._rng.uniform(min(OPEN_GRACE, interval), interval)
                    scheduled.due = now + spread
                self.schedule(scheduled)

    # --- what the loop reads --------------------------------------------------------------

    def source_of(self, key: Key) -> Source | None:
        """The source of ``key`` now (None: removed from the config).  Only the loop's
        thread adds or removes sources, and it is the one that asks."""
        scheduled = self.sources.get(key)
        return None if scheduled is None else scheduled.source

    def verifiable(self, key: Key) -> Source | None:
        """The source of ``key`` if its sync is not failing (a verify of one that fails
        would only say again what its error says); None too when it was removed."""
        with self.lock:
            scheduled = self.sources.get(key)
            if scheduled is None or scheduled.state in ("backoff", "attention"):
                return None
            return scheduled.source

    def running(self) -> list[Key]:
        with self.lock:
            return [k for k, s in self.sources.items() if s.running]

    def snapshot(self) -> tuple[frozenset[Key], frozenset[Key], list[str]]:
        """For the heartbeat: every source, those in a sync, and the states."""
        with self.lock:
            keys = frozenset(self.sources)
            busy = frozenset(k for k, s in self.sources.items() if s.running)
            states = [s.state for s in self.sources.values()]
        return keys, busy, states

    def summary(self) -> str:
        with self.lock:
            states = [s.state for s in self.sources.values()]
        parts = [f"{len(states)} sources"]
        for state, label in (
            ("syncing", "syncing"),
            ("backoff", "backing off"),
            ("attention", "need attention"),
        ):
            if n := states.count(state):
                parts.append(f"{n} {label}")
        parts.append(f"{self.counters.records} records captured")
        return ", ".join(parts)
