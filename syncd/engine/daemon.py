"""`syncd run`: every mailbox and calendar on its own schedule, for months, unattended.

A runner in the manner of GNU Mailman's: the loop knows only `Source` (engine/sources.py).
The main thread goes round: it answers signals, applies what its collaborators noted since
the last round, hands the sources due to a bounded pool of workers, beats, and sleeps until
the soonest due time or until a collaborator rings its alarm.  The state is theirs:

- ``Timetable`` (engine/timetable.py): the sources, where the daemon stands with each and
  when each is due; the one lock;
- ``SyncWorker`` (engine/sync_worker.py): one source's turn on a worker thread;
- ``Watchers`` (engine/watchers.py): push on the sources held, revived with backoff;
- ``Heartbeat`` (engine/heartbeat.py) and ``Leases`` (engine/fleet.py): the heartbeat row,
  fleet membership, systemd, the gauges;
- ``TimedJobs`` (engine/timed_jobs.py): verify, the follow-up rules and the outbox's upkeep;
- ``DirectoryCache`` (engine/directory_cache.py): the customers a sync matches against;
- ``with_news`` (engine/imap/takeover.py): which mailboxes taken over have news;
- ``Services`` (engine/services.py): the listeners, the deliverers, the directory watcher;
- ``ImapKit`` (engine/imap/kit.py): the IMAP pieces handed to the sources and watchers.

None of them calls back into the loop: what one needs is passed in, and one that has
something to say notes it and rings the alarm.  Watches are started and stopped on the
loop's thread only, so that no watch outlives its lease or its source.
"""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from sqlalchemy import Engine

from syncd.config import Config
from syncd.config_file import load_config
from syncd.engine.backlog import Backlog
from syncd.engine.directory_cache import DirectoryCache
from syncd.engine.fleet import Leases, bounded, end_abandoned_transactions, join, leave
from syncd.engine.heartbeat import HEARTBEAT_EVERY, Heartbeat
from syncd.engine.imap.kit import ImapKit
from syncd.engine.imap.takeover import with_news
from syncd.engine.instance_lock import InstanceLock
from syncd.engine.poll_ledger import PollLedger, ledger_wait
from syncd.engine.services import Services
from syncd.engine.sources import Source, configured_sources
from syncd.engine.sync_worker import SyncWorker, crash_kind
from syncd.engine.task_sync import TaskLists
from syncd.engine.timed_jobs import TimedJobs, verify_slots
from syncd.engine.timetable import Key, Scheduled, Timetable
from syncd.engine.watchers import Watchers
from syncd.engine.work_pool import WorkPool
from syncd.errors import ConfigError
from syncd.logs import get_logger
from syncd.metrics import Metrics
from syncd.notify import Notifier
from syncd.secrets import exposed_secrets
from syncd.store.database import open_database

# Where callers have always found them.
__all__ = ["HEARTBEAT_EVERY", "Daemon", "Scheduled", "crash_kind"]

log = get_logger("syncd.daemon")

HEALTHY_WITHIN = 15.0  # /healthz: the main loop went round this recently
# Seconds a stop waits for workers (from SIGTERM, the release of the leases included);
# with the rest (watchers 1, LOGOUTs 1.5, the last write 1, threads 0.5), under 10 s.
STOP_WITHIN = 5.0
EXIT_GRACE = 0.5  # seconds the threads left at exit get before the process leaves them
STOP_WRITE_WITHIN = 1.0  # seconds each of a stop's database writes may wait (locks included)
# Seconds from the signal after which the process leaves whatever of the stop remains (with
# ``on_overrun``): each step is bounded, but on a machine starved of CPU (load 33 on two
# cores, 5,000 held) the bounded steps took 9.3 s in all; the leases are free by then and
# a last write left undone only makes the others wait for the heartbeat's expiry.
STOP_HARD_AFTER = 9.5


def _warn_exposed_secrets(config: Config, config_path: Path) -> None:
    for problem in exposed_secrets(config, config_path):
        log.warning("secrets.exposed", problem=problem)


class Daemon:
    def __init__(self, config_path: Path, *, notifier: Notifier | None = None) -> None:
        self._config_path = config_path
        self._config = config = load_config(config_path)
        _warn_exposed_secrets(config, config_path)
        self._notifier = notifier or Notifier()
        self.id = uuid.uuid4().hex
        rng = random.Random()  # noqa: S311 - jitter, not secrets
        self._alarm = threading.Event()  # the loop's, which any collaborator may ring
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._timetable = Timetable(rng, config.sync)
        self._metrics = Metrics()
        # The capture's backlog, owned here and handed to the sources and the webhook
        # deliverer (which trickles while it is busy).
        self._backlog = Backlog()
        self._imap = ImapKit(config.sync, self._metrics)
        self._task_lists = TaskLists()  # task list URLs, shared by the worker threads
        self._watchers = Watchers(self._imap.hub, self._imap.sessions, self._alarm)
        # Leases (syncd/engine/fleet.py): only held sources are synced, verified and watched.
        self._leases = Leases(self.id)
        # Polls that found nothing new, written by the heartbeat for all sources at once.
        self._polls = PollLedger(wait=ledger_wait(config.sync.interval))
        self._heartbeat = Heartbeat(
            self.id, self._leases, self._polls, self._metrics, self._notifier,
            alarm=self._alarm, stopping=self._stop,
        )  # fmt: skip
        self._jobs = TimedJobs(
            self.id, self._metrics, self._alarm,
            slots=verify_slots(config.sync.concurrency), stopping=self._stop,
        )  # fmt: skip
        self._directory = DirectoryCache()
        self._worker = SyncWorker(
            self.id, config, self._timetable, self._leases, self._polls, self._directory,
            self._jobs, self._metrics, rng=rng, alarm=self._alarm, stopping=self._stop,
        )  # fmt: skip
        self._instance = InstanceLock.for_database(config.database.url)
        self._services = Services(
            self.id, self._metrics, self._backlog,
            alone=self._instance is not None, on_directory_change=self._directory.drop,
        )  # fmt: skip
        self._last_loop = time.monotonic()
        self._engine: Engine | None = None
        self._pool: WorkPool | None = None
        self._stopped_at: float | None = None  # time.monotonic() of the signal to stop
        # Called on a thread of its own once a stop has run STOP_HARD_AFTER seconds from the
        # signal (`syncd run`: the process leaves); None (tests): the stop runs to its end.
        self.on_overrun: Callable[[], None] | None = None
        # Set when ``_shutdown`` ends, however it ends: the hard limit's watcher stands down
        # (a stop that completed must not leave from under the exit's grace for lingering
        # threads, nor exit 0 from under the teardown after a crash of the loop).
        self._stop_done = threading.Event()
        # Set once the stop has released the leases (or ended before): the hard limit counts
        # from the signal, but a loop round that ran long must not make it leave before the
        # others may take the sources over (the wait is bounded by the steps before it: the
        # heartbeat's join, 2 s, and the release's own write limit).
        self._released = threading.Event()
        self._stop_took: dict[str, float] = {}  # a stop's steps done, with their seconds

    # --- life cycle -------------------------------------------------------------------------

    def run(self) -> int:
        if self._instance is not None:
            self._instance.acquire()
        try:
            return self._run()
        finally:
            if self._instance is not None:
                self._instance.release()

    def _run(self) -> int:
        # A connection per worker, plus the heartbeat, verify and follow-up threads.
        engine = self._engine = open_database(
            self._config.database.url, pool_size=self._config.sync.concurrency + 4
        )
        end_abandoned_transactions(engine, self.id)
        self._imap.tokens.keep_rotated_in(engine)  # a rotated refresh token outlives the process
        join(engine, self.id, alone=self._instance is not None)
        self._pool = WorkPool(self._config.sync.concurrency)
        self._install_signals()
        self._services.listen(self._config, self._healthy)
        self._apply(self._config, first=True)
        self._services.follow(engine, self._config)
        if self._instance is None:
            # Daemons started together see each other before the first claim, rather than
            # the first one taking everything and handing most of it over a beat later.
            self._stop.wait(HEARTBEAT_EVERY)
        self._leases.beat(engine, frozenset(self._timetable.sources), frozenset(), claim=True)
        self._apply_fleet(first=True)  # our share before the first dispatch
        log.info(
            "daemon.started",
            daemon=self.id,
            mailboxes=len(self._config.mailbox),
            calendars=len(self._config.calendar),
        )
        self._notifier.ready(self._timetable.summary())
        next_beat = 0.0
        try:
            while not self._stop.is_set():
                self._last_loop = time.monotonic()
                if self._reload.is_set():
                    self._reload.clear()
                    self._reload_config()
                self._apply_lost()
                self._apply_fleet()
                self._apply_news()
                self._apply_opened()
                self._apply_recovered()
                self._dispatch()
                if time.monotonic() >= next_beat:
                    self._beat()
                    next_beat = time.monotonic() + HEARTBEAT_EVERY
                self._alarm.wait(self._sleep_for(next_beat))
                self._alarm.clear()
        finally:
            self._shutdown()
        return 0

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("daemon.stopping", signal=signal.Signals(signum).name)
            self._stopped_at = time.monotonic()
            self._stop.set()
            self._alarm.set()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()
            self._alarm.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _shutdown(self) -> None:
        # One deadline from here: each step below is bounded by what is left of it, so
        # that a stop right after a takeover (a claim of hundreds of leases in flight, a
        # database slow under it) still ends within SIGTERM's 10 s.
        deadline = time.monotonic() + STOP_WITHIN
        if self._stopped_at is not None:  # a signalled stop only: a crash exits as a crash
            self._arm_overrun(self._stopped_at)
        try:
            self._stop_steps(deadline)
        finally:
            self._released.set()
            self._stop_done.set()

    def _stop_steps(self, deadline: float) -> None:
        assert self._pool is not None and self._engine is not None
        # How long each step took, in the last line: what held a stop past 10 s is there
        # (and in ``daemon.stop_overran``: the steps done, the next one is the one that hung).
        took: dict[str, float] = self._stop_took
        mark = [time.monotonic()]
        if self._stopped_at is not None:  # the loop's round in progress at the signal
            took["loop"] = round(mark[0] - self._stopped_at, 2)

        def step(name: str) -> None:
            now = time.monotonic()
            took[name] = round(now - mark[0], 2)
            mark[0] = now

        # First, before anything that waits: the work queued (a takeover's syncs, verifies)
        # is dropped, not started on a worker freed during the steps below, and a sync
        # dropped is not running: its lease is released with the others at once.
        dropped = self._pool.shutdown()
        self._timetable.dropped([a[0] for a in dropped if a and isinstance(a[0], Scheduled)])
        self._notifier.stopping()
        self._services.stop_metrics()
        self._services.stop_directory()
        step("services")
        # A claim in flight must not land after the release.
        self._heartbeat.join(min(2.0, deadline - time.monotonic()))
        step("heartbeat")
        self._leases.stopping(self._engine, self._timetable.running(), within=STOP_WRITE_WITHIN)
        step("release")
        self._released.set()
        self._imap.hub.close(timeout=0.0)  # watchers only listen: nothing to commit
        # Deliverers within what is left of the deadline too (a request in flight goes
        # again later): two of 2.5 s each after the steps above ran past 10 s in all.
        self._services.stop_delivery(max(0.0, min(3.0, (deadline - time.monotonic()) / 2)))
        step("hub, delivery")
        self._pool.wait(deadline)
        step("workers")
        # Watchers only listen (nothing to commit): give them a second in all, then leave.
        self._watchers.join(max(0.0, min(1.0, deadline - time.monotonic())))
        step("watchers")
        self._imap.sessions.close_all()
        step("logouts")
        self._services.stop_listening()
        step("listeners")
        self._polls.flush(
            self._engine, self._leases.held, before=lambda c: bounded(c, STOP_WRITE_WITHIN)
        )
        leave(self._engine, self.id, within=STOP_WRITE_WITHIN)
        step("last writes")
        log.info(
            "daemon.stopped", daemon=self.id, records=self._timetable.counters.records,
            dropped=len(dropped), took=took,
        )  # fmt: skip

    def _arm_overrun(self, signalled_at: float) -> None:
        """From here on, a stop past STOP_HARD_AFTER (from the signal) calls ``on_overrun``,
        unless the stop ended first.  Armed here, on the loop's thread, not in the signal
        handler: a thread started there could wait forever on a lock the interrupted code
        holds (the loop starts threads).  Never for a stop after a crash of the loop: that
        process must exit as a crash (non-zero: systemd's Restart=on-failure)."""
        overrun = self.on_overrun
        if overrun is None:
            return
        hard = signalled_at + STOP_HARD_AFTER

        def watch() -> None:
            self._released.wait()
            if self._stop_done.wait(max(0.0, hard - time.monotonic())):
                return  # the stop completed in time
            log.warning("daemon.stop_overran", after=STOP_HARD_AFTER, took=dict(self._stop_took))
            overrun()

        threading.Thread(target=watch, name="stop-overrun", daemon=True).start()

    @property
    def lingering(self) -> bool:
        """A worker is still inside a sync after the stop deadline (stuck on the network),
        or another thread the interpreter would wait for at exit still runs after a last
        moment: a watch's login in flight (a daemon that just took over hundreds of
        mailboxes has a dozen), a LOGOUT queued behind a slow server.  Each is bounded by
        its own timeout, but not within SIGTERM's 10 s."""
        if self._pool is not None and self._pool.busy():
            return True
        deadline = time.monotonic() + EXIT_GRACE
        for thread in threading.enumerate():
            if thread is threading.current_thread() or thread.daemon:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("daemon.exit_forced", thread=thread.name)
                return True
        return False

    def _healthy(self) -> bool:
        return time.monotonic() - self._last_loop < HEALTHY_WITHIN

    # --- configuration ----------------------------------------------------------------------

    def _reload_config(self) -> None:
        try:
            config = load_config(self._config_path)
        except ConfigError as err:
            log.error("config.reload_refused", problems=err.problems, kept="the running config")
            return
        if config.database.url != self._config.database.url:
            log.error("config.reload_refused", problems=["database.url changed: restart syncd"])
            return
        if (
            config.metrics != self._config.metrics
            or config.sync.concurrency != self._config.sync.concurrency
        ):
            log.warning("config.restart_needed", keys="metrics, sync.concurrency")
        _warn_exposed_secrets(config, self._config_path)
        self._config = self._worker.config = config
        self._timetable.tune(config.sync)
        self._polls.wait = ledger_wait(config.sync.interval)
        self._directory.drop()
        self._apply(config, first=False)
        assert self._engine is not None
        self._services.follow(self._engine, config)
        log.info("config.reloaded", mailboxes=len(config.mailbox), calendars=len(config.calendar))

    def _apply(self, config: Config, *, first: bool) -> None:
        """Start new sources, stop removed ones, restart changed ones."""
        assert self._engine is not None
        imap = self._imap
        sources = configured_sources(
            self._engine, config, task_lists=self._task_lists,
            sessions=imap.sessions, tokens=imap.tokens, backlog=self._backlog,
        )  # fmt: skip
        wanted: dict[Key, Source] = {(s.kind, s.name): s for s in sources}
        imap.sessions.tune(config.sync)
        # Spread the first syncs a little so that a restart does not log in everywhere at once.
        spread = min(5.0, config.sync.interval * config.sync.jitter)
        removed, fresh = self._timetable.reconcile(wanted, first=first, spread=spread)
        for scheduled in removed:
            imap.sessions.discard_source(scheduled.key)
            self._watchers.stop(scheduled.key)
            log.info("source.removed", source=scheduled.name, kind=scheduled.kind)
        for scheduled, new in fresh:
            imap.sessions.discard_source(scheduled.key)  # changed: its next poll logs in anew
            self._watchers.stop(scheduled.key)
            if scheduled.key in self._leases.held:  # only the lease holder watches (fleet.py)
                self._start_watcher(scheduled)
            if not first:
                log.info("source.added" if new else "source.changed", source=scheduled.name)

    # --- what the collaborators noted -------------------------------------------------------

    def _apply_fleet(self, *, first: bool = False) -> None:
        """Watch and sync what the last heartbeat gained; stop watching what it lost."""
        taken = self._leases.take()
        if taken is None:
            return
        view, gained, lost = taken
        # What workers found lost first, decided against this view: a key it lists again is
        # gained (the note took it out of `held`) and its watch replaced; one it does not
        # list has its watch stopped before anything below could start another.
        self._apply_lost()
        for key in lost:
            self._watchers.stop(key)
            self._imap.sessions.discard_source(key)  # its next holder logs in itself
        self._timetable.take_over(gained, first=first, watch=self._start_watcher)
        if gained or lost:
            log.info("fleet.changed", daemons=len(view.live), held=len(view.held),
                     gained=len(gained), lost=len(lost))  # fmt: skip

    def _apply_lost(self) -> None:
        """Sources a worker found held by another daemon: their watch and kept session go
        (unless a heartbeat gave the lease back meanwhile)."""
        held = self._leases.held
        for key in self._timetable.take_lost():
            if key not in held:
                self._watchers.stop(key)
                self._imap.sessions.discard_source(key)

    def _apply_news(self) -> None:
        """The sources whose watch saw new items since the loop last came round."""
        for key in self._watchers.take_news():
            self.wake(key)

    def _apply_opened(self) -> None:
        """Watches of sources taken over that logged in: those with news are polled now, the
        others within the interval, spread, as any source; the watch covers them meanwhile."""
        assert self._engine is not None
        opened = self._watchers.take_opened()
        if not opened:
            return
        news = with_news(self._engine, opened)
        self._timetable.opened(opened, news, float(self._config.sync.interval))
        log.debug("fleet.taken_over_checked", mailboxes=len(opened), news=len(news))

    def _apply_recovered(self) -> None:
        """Sources back from "attention" (a refused login accepted again): the watch that
        ended with the refusal starts again."""
        held = self._leases.held
        for key in self._timetable.take_recovered():
            scheduled = self._timetable.sources.get(key)
            if scheduled is None or scheduled.retired or key not in held:
                continue
            if not self._watchers.alive(key):
                self._start_watcher(scheduled)

    def _start_watcher(self, scheduled: Scheduled, taken_over: bool = False) -> bool:
        """Watch the source if its server can push; True when a watch was started.  For a
        source ``taken_over`` from another daemon, the watch's first login tells whether it
        has news (``_apply_opened``)."""
        return self._watchers.start(scheduled.key, scheduled.source, taken_over=taken_over)

    def wake(self, key: Key) -> None:
        """New items (IMAP IDLE): sync this source now, or right after the sync in progress."""
        self._timetable.wake(key)
        self._alarm.set()

    # --- one round --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        assert self._pool is not None and self._engine is not None
        rules = self._jobs.rules_due(self._engine, self._config)
        if rules is not None:
            self._pool.submit(rules)
        now = time.monotonic()
        held = self._leases.held
        for scheduled in self._timetable.take_due(now, held):
            if not self._worker.poll_at_hand(scheduled):
                self._pool.submit(self._sync, scheduled)
        if now < self._timetable.verify_at and not self._jobs.verify_ended():
            return
        every = self._config.sync.verify_interval
        if self._timetable.take_verify_plan():  # the sources changed: read them all once
            self._jobs.plan_verifies(every, self._timetable.sources)
        for job in self._jobs.verifies_due(self._engine, every, held, self._timetable.verifiable):
            self._pool.submit(job)
        self._timetable.verify_at = self._jobs.next_verify()

    def _sync(self, scheduled: Scheduled) -> None:
        assert self._engine is not None
        self._worker.sync(self._engine, scheduled)

    def _sleep_for(self, next_beat: float) -> float:
        waiting = self._timetable.soonest(self._leases.held)
        soonest = min(
            next_beat if waiting is None else waiting,
            next_beat,
            self._timetable.verify_at,
            self._jobs.rules_wait(),
        )
        return max(0.05, min(soonest - time.monotonic(), HEARTBEAT_EVERY))

    def _beat(self) -> None:
        assert self._engine is not None
        self._timetable.reindex_if_due()
        self._revive_watchers()
        self._imap.sessions.expire()
        summary = self._timetable.summary()
        keys, busy, states = self._timetable.snapshot()
        watching = self._watchers.open_count()
        self._heartbeat.beat(self._engine, summary, keys, busy, states, watching)

    def _revive_watchers(self) -> None:
        """Restart, with backoff, watchers that died instead of ending on purpose (until one
        is back, its source is still polled every interval: only push is delayed)."""
        if self._stop.is_set():
            return
        self._watchers.revive(self._timetable.source_of)
