"""`syncd run`: every mailbox and calendar on its own schedule, for months, unattended.

A runner in the manner of GNU Mailman's: the loop knows only `Source` (engine/sources.py).
The main thread schedules: it hands due sources to a bounded pool of workers, wakes at once
when a collaborator rings its alarm, answers signals, and calls, each in turn, the
collaborators that own the rest of the daemon's state:

- ``Watchers`` (engine/watchers.py): push on the sources held, revived with backoff;
- ``Heartbeat`` (engine/heartbeat.py) and ``Leases`` (engine/fleet.py): the heartbeat row,
  fleet membership, systemd, the gauges;
- ``TimedJobs`` (engine/timed_jobs.py): verify, the follow-up rules and the outbox's upkeep;
- ``DirectoryCache`` (engine/directory_cache.py) and ``DirectoryWatcher``: the customers;
- ``with_news`` (engine/imap/takeover.py): which mailboxes taken over have news;
- the webhook deliverer and the CRM workers.

None of them calls back into the loop: what one needs is passed in, and one that has
something to say notes it and rings the alarm.  A worker syncs one source at a time with
the same pass as `syncd sync` (engine/passes.py), so a stop between two batches loses
nothing: each batch commits with its cursor.  One failing source only ever occupies its own
worker, for at most its timeout.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import random
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from syncd.api.service import ApiService
from syncd.config import Config
from syncd.config_file import load_config
from syncd.crm.runner import CrmWorkers
from syncd.domain.matching import Directory
from syncd.engine.backlog import Backlog
from syncd.engine.directory_cache import DirectoryCache
from syncd.engine.directory_sync import DirectoryWatcher
from syncd.engine.fleet import (
    LEASE,
    Leases,
    bounded,
    clear_predecessors,
    end_abandoned_transactions,
)
from syncd.engine.heartbeat import Heartbeat
from syncd.engine.imap.idle_hub import IdleHub
from syncd.engine.imap.mail_sync import imap_opener
from syncd.engine.imap.sessions import DaemonSessions
from syncd.engine.imap.takeover import with_news
from syncd.engine.instance_lock import InstanceLock
from syncd.engine.passes import sync_pass
from syncd.engine.poll_ledger import PollLedger
from syncd.engine.schedule import Outcome, next_run
from syncd.engine.sources import Source, configured_sources
from syncd.engine.task_sync import TaskLists
from syncd.engine.timed_jobs import TimedJobs
from syncd.engine.watchers import Watchers
from syncd.errors import ConfigError, TransientError, describe, raised_at
from syncd.group_tokens import TokenCaches
from syncd.logs import get_logger
from syncd.metrics import Metrics, MetricsServer
from syncd.notify import Notifier
from syncd.secrets import exposed_secrets
from syncd.store import leases
from syncd.store.database import open_database
from syncd.webhooks.deliverer import Deliverer

log = get_logger("syncd.daemon")

Key = tuple[str, str]  # (kind, name)
# seconds; each beat also reads which daemons are live, so that a stopped or dead one's
# sources are taken over within a beat of it being seen gone (syncd/engine/fleet.py).
HEARTBEAT_EVERY = 2.5
HEALTHY_WITHIN = 15.0  # /healthz: the main loop went round this recently
# The due index is rebuilt at least this often (seconds), and verifies looked for: a net
# under the incremental upkeep, cheap at once a minute.
REINDEX_EVERY = 60.0
GATHER = 0.5  # seconds: see ``gather``
LEDGER_WAIT = 10.0  # seconds: see ``ledger_wait``
# Seconds a stop waits for workers (from SIGTERM, the release of the leases included);
# with the rest (watchers 1, LOGOUTs 1.5, the last write 1, threads 0.5), under 10 s.
STOP_WITHIN = 5.0
# A mailbox taken over is polled by then even when its watch has not logged in to say
# whether INBOX has news (a slow server, a long login queue).
OPEN_GRACE = 30.0  # seconds
EXIT_GRACE = 0.5  # seconds the threads left at exit get before the process leaves them
STOP_WRITE_WITHIN = 1.0  # seconds each of a stop's database writes may wait (locks included)


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


def _warn_exposed_secrets(config: Config, config_path: Path) -> None:
    for problem in exposed_secrets(config, config_path):
        log.warning("secrets.exposed", problem=problem)


@dataclass(slots=True)
class _Counters:
    records: int = 0
    syncs: int = 0
    started: float = field(default_factory=time.monotonic)


def gather(interval: float, jitter: float) -> float:
    """Seconds early a poll may start, with others due about then: a small part of the
    spread its jitter gives it anyway, and never more than GATHER."""
    return min(GATHER, interval * jitter / 4)


def ledger_wait(interval: float) -> float:
    """Seconds a quiet poll waits for its write: a few beats, never a whole interval (so
    that "last success" in `syncd status` is never a poll behind)."""
    return min(LEDGER_WAIT, interval)


def crash_kind(err: Exception) -> str:
    """What an exception that escaped a sync means for its schedule: a database that cannot
    be reached is transient (back off, it comes back); anything else is a bug of ours or a
    library that changed (internal: wait for a person, do not retry it every few seconds)."""
    if isinstance(err, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return "transient"  # PoolTimeout: every connection busy, which passes
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return "transient"
    return "internal"


class Daemon:
    def __init__(self, config_path: Path, *, notifier: Notifier | None = None) -> None:
        self._config_path = config_path
        self._config = load_config(config_path)
        _warn_exposed_secrets(self._config, config_path)
        self._notifier = notifier or Notifier()
        self.id = uuid.uuid4().hex
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets
        self._lock = threading.Lock()  # the schedule: _sources and each Scheduled in it
        self._wake = threading.Event()  # the loop's alarm, which any collaborator may ring
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._sources: dict[Key, Scheduled] = {}
        # When each source is next due, soonest first: (due, seq, key), one entry pushed
        # each time a `due` is set (``_schedule``), and for a lease gained (``_apply_fleet``:
        # a source not held drops out of it); an entry whose source's due moved since is
        # stale and skipped.  A wake of the loop costs O(sources due), not O(sources), and
        # so does a beat: the index is rebuilt (``_reindex``) only once stale entries
        # outnumber the sources, and every REINDEX_EVERY as a net.
        self._due: list[tuple[float, int, Key]] = []
        self._due_seq = itertools.count()
        self._reindexed = time.monotonic()
        self._gather = gather(self._config.sync.interval, self._config.sync.jitter)
        # Verifies are looked for when the soonest is due, after a beat or a reload, not at
        # every wake (each look reads every source).
        self._verify_at = 0.0
        self._futures: set[Future[None]] = set()
        self._counters = _Counters()
        self._metrics = Metrics()
        # What the process shares, owned here and handed to who needs it: the mailbox groups'
        # tokens (whatever logs in) and the capture's backlog (the webhook deliverer yields).
        self._tokens = TokenCaches()
        self._backlog = Backlog()
        # IMAP sessions kept from one poll of a mailbox to the next.
        self._imap_sessions = DaemonSessions(
            self._config.sync, self._metrics, imap_opener(self._tokens)
        )
        # Push (IMAP IDLE): one selector thread for every watch, whatever their number; its
        # logins count in syncd_imap_logins_total beside the polls'.
        self._hub = IdleHub(
            on_login=self._imap_sessions.observe_login,
            tokens=self._tokens,
            notify=self._config.sync.notify,
        )
        self._watchers = Watchers(self._hub, self._imap_sessions, self._wake)
        # Leases (syncd/engine/fleet.py): only held sources are synced, verified and watched.
        self._leases = Leases(self.id)
        # Polls that found nothing new, written by the heartbeat for all sources at once.
        self._polls = PollLedger(wait=ledger_wait(self._config.sync.interval))
        self._heartbeat = Heartbeat(
            self.id, self._leases, self._polls, self._metrics, self._notifier,
            alarm=self._wake, stopping=self._stop,
        )  # fmt: skip
        self._jobs = TimedJobs(self.id, self._metrics, self._wake)
        self._directory = DirectoryCache()
        self._directory_watcher: DirectoryWatcher | None = None  # the [directory] source
        self._task_lists = TaskLists()  # task list URLs, shared by the worker threads
        self._last_loop = time.monotonic()
        self._instance = InstanceLock.for_database(self._config.database.url)
        self._engine: Engine | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._server: MetricsServer | None = None
        self._api = ApiService()  # the HTTP API, when the config has [api]
        self._webhooks: Deliverer | None = None  # started with the first [[webhook]]
        self._crms: CrmWorkers | None = None  # started with the first [[crm]]

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
        self._engine = open_database(
            self._config.database.url, pool_size=self._config.sync.concurrency + 4
        )
        end_abandoned_transactions(self._engine, self.id)
        self._tokens.keep_rotated_in(self._engine)  # a rotated refresh token outlives the process
        with self._engine.begin() as conn:
            if self._instance is not None:
                # The lock file says no other daemon uses this database: whatever a killed
                # predecessor still holds is free.
                leases.release_all(conn)
            leases.register_daemon(conn, self.id, socket.gethostname(), os.getpid())
            gone = clear_predecessors(
                conn, self.id, socket.gethostname(), alone=self._instance is not None
            )
            if gone:
                log.info("daemon.predecessors_cleared", daemons=gone)
        self._pool = ThreadPoolExecutor(self._config.sync.concurrency, thread_name_prefix="sync")
        self._install_signals()
        if self._config.metrics.listen:
            self._server = MetricsServer(
                self._config.metrics.address, self._metrics, self._healthy
            ).start()
            log.info("metrics.listening", port=self._server.port)
        self._api.start(self._config, self._metrics)
        self._apply(self._config, first=True)
        self._follow_directory()
        self._apply_webhooks(self._config)
        if self._instance is None:
            # Daemons started together see each other before the first claim, rather than
            # the first one taking everything and handing most of it over a beat later.
            self._stop.wait(HEARTBEAT_EVERY)
        self._leases.beat(self._engine, frozenset(self._sources), frozenset(), claim=True)
        self._apply_fleet(first=True)  # our share before the first dispatch
        log.info(
            "daemon.started",
            daemon=self.id,
            mailboxes=len(self._config.mailbox),
            calendars=len(self._config.calendar),
        )
        self._notifier.ready(self._summary())
        next_beat = 0.0
        try:
            while not self._stop.is_set():
                self._last_loop = time.monotonic()
                if self._reload.is_set():
                    self._reload.clear()
                    self._reload_config()
                self._apply_fleet()
                self._apply_news()
                self._apply_opened()
                self._dispatch()
                if time.monotonic() >= next_beat:
                    self._beat()
                    next_beat = time.monotonic() + HEARTBEAT_EVERY
                self._wake.wait(self._sleep_for(next_beat))
                self._wake.clear()
        finally:
            self._shutdown()
        return 0

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("daemon.stopping", signal=signal.Signals(signum).name)
            self._stop.set()
            self._wake.set()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()
            self._wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _shutdown(self) -> None:
        # One deadline from here: each step below is bounded by what is left of it, so
        # that a stop right after a takeover (a claim of hundreds of leases in flight, a
        # database slow under it) still ends within SIGTERM's 10 s.
        deadline = time.monotonic() + STOP_WITHIN
        self._notifier.stopping()
        if self._directory_watcher is not None:
            self._directory_watcher.stop()
        assert self._pool is not None and self._engine is not None
        # A claim in flight must not land after the release.
        self._heartbeat.join(min(2.0, deadline - time.monotonic()))
        with self._lock:
            busy = [k for k, s in self._sources.items() if s.running]
        self._leases.stopping(self._engine, busy, within=STOP_WRITE_WITHIN)
        self._hub.close(timeout=0.0)  # watchers only listen: nothing to commit
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._webhooks is not None:  # requests in flight go again later (at least once)
            self._webhooks.stop(min(3.0, STOP_WITHIN / 2))
        if self._crms is not None:  # a push in flight is found again by its marker
            self._crms.stop(min(3.0, STOP_WITHIN / 2))
        for future in list(self._futures):
            # A worker reports its own failures; here we only wait for it, within the deadline.
            with contextlib.suppress(Exception):
                future.result(timeout=max(0.0, deadline - time.monotonic()))
        # Watchers only listen (nothing to commit): give them a second in all, then leave.
        self._watchers.join(max(0.0, min(1.0, deadline - time.monotonic())))
        self._imap_sessions.close_all()
        if self._server is not None:
            self._server.stop()
        self._api.stop()
        self._polls.flush(
            self._engine, self._leases.held, before=lambda c: bounded(c, STOP_WRITE_WITHIN)
        )
        try:
            with self._engine.begin() as conn:
                bounded(conn, STOP_WRITE_WITHIN)
                leases.daemon_stopped(conn, self.id)
        except Exception as err:  # the database may be down: our leases then simply expire
            log.warning("daemon.stop_not_recorded", error=type(err).__name__)
        log.info("daemon.stopped", daemon=self.id, records=self._counters.records)

    @property
    def lingering(self) -> bool:
        """A worker is still inside a sync after the stop deadline (stuck on the network),
        or another thread the interpreter would wait for at exit still runs after a last
        moment: a watch's login in flight (a daemon that just took over hundreds of
        mailboxes has a dozen), a LOGOUT queued behind a slow server.  Each is bounded by
        its own timeout, but not within SIGTERM's 10 s."""
        if any(not f.done() for f in self._futures):
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
        self._config = config
        self._gather = gather(config.sync.interval, config.sync.jitter)
        self._polls.wait = ledger_wait(config.sync.interval)
        self._directory.drop()
        self._apply(config, first=False)
        self._follow_directory()
        self._apply_webhooks(config)
        log.info("config.reloaded", mailboxes=len(config.mailbox), calendars=len(config.calendar))

    def _apply(self, config: Config, *, first: bool) -> None:
        """Start new sources, stop removed ones, restart changed ones."""
        assert self._engine is not None
        wanted = {
            (s.kind, s.name): s
            for s in configured_sources(
                self._engine,
                config,
                task_lists=self._task_lists,
                sessions=self._imap_sessions,
                tokens=self._tokens,
                backlog=self._backlog,
            )
        }
        self._imap_sessions.tune(config.sync)
        now = time.monotonic()
        # Spread the first syncs a little so that a restart does not log in everywhere at once.
        spread = min(5.0, config.sync.interval * config.sync.jitter)
        with self._lock:
            for key, scheduled in list(self._sources.items()):
                if key not in wanted:
                    scheduled.retired = True
                    del self._sources[key]
                    self._imap_sessions.discard_source(key)
                    self._stop_watcher(key)
                    log.info("source.removed", source=scheduled.name, kind=scheduled.kind)
            for key, source in wanted.items():
                current = self._sources.get(key)
                if current is not None and current.source.config == source.config:
                    # Unchanged: its schedule goes on, with the new [capture]/[sync] settings.
                    current.source = source
                    continue
                due = now + (self._rng.uniform(0, spread) if first else 0.0)
                self._imap_sessions.discard_source(key)  # changed: its next poll logs in anew
                scheduled = self._sources[key] = Scheduled(source, due=due)
                self._schedule(scheduled)
                self._stop_watcher(key)
                if key in self._leases.held:  # only the lease holder watches (fleet.py)
                    self._start_watcher(scheduled)
                if not first:
                    log.info(
                        "source.added" if current is None else "source.changed",
                        source=source.name,
                    )
            self._verify_at = 0.0  # sources added: their first verify is to be set

    def _apply_webhooks(self, config: Config) -> None:
        only = self._instance is not None  # SQLite's lock file: no other daemon on it
        self._webhooks = Deliverer.follow(
            self._webhooks, config, self.id, self._metrics, only, self._backlog
        )
        assert self._engine is not None
        self._crms = CrmWorkers.follow(self._crms, self._engine, config, self.id)

    def _start_watcher(self, scheduled: Scheduled, *, taken_over: bool = False) -> bool:
        """Watch the source if its server can push; True when a watch was started.  For a
        source ``taken_over`` from another daemon, the watch's first login tells whether it
        has news (``_apply_opened``)."""
        return self._watchers.start(scheduled.key, scheduled.source, taken_over=taken_over)

    def _stop_watcher(self, key: Key) -> None:
        self._watchers.stop(key)

    def _revive_watchers(self) -> None:
        """Restart, with backoff, watchers that died instead of ending on purpose (until one
        is back, its source is still polled every interval: only push is delayed)."""
        if self._stop.is_set():
            return
        with self._lock:  # no lease lost or source removed meanwhile (their watch stops)
            self._watchers.revive(self._source_of)

    def _source_of(self, key: Key) -> Source | None:
        """The source of ``key`` now (None: removed from the config).  Lock held."""
        scheduled = self._sources.get(key)
        return None if scheduled is None else scheduled.source

    # --- scheduling -------------------------------------------------------------------------

    def wake(self, key: Key) -> None:
        """New items (IMAP IDLE): sync this source now, or right after the sync in progress."""
        with self._lock:
            scheduled = self._sources.get(key)
            if scheduled is not None:
                scheduled.news = True
            if scheduled is not None and scheduled.state in ("ok", "syncing"):
                scheduled.due = time.monotonic()
                self._schedule(scheduled)
                # The running sync may have read the folder already; its end sets `due`.
                scheduled.woken = scheduled.running
        self._wake.set()

    def _apply_news(self) -> None:
        """The sources whose watch saw new items since the loop last came round."""
        for key in self._watchers.take_news():
            self.wake(key)

    def _dispatch(self) -> None:
        assert self._pool is not None and self._engine is not None
        rules = self._jobs.rules_due(self._engine, self._config)
        if rules is not None:
            self._track(self._pool.submit(rules))
        now = time.monotonic()
        held = self._leases.held
        due: list[Scheduled] = []
        # Those due within the gather too: a source polled every minute does not mind a
        # fraction of a second early, and the loop wakes a few times a second, not once
        # for every source.
        until = now + self._gather
        with self._lock:
            while self._due and self._due[0][0] <= until:  # soonest first
                at, _seq, key = heapq.heappop(self._due)
                source = self._sources.get(key)
                if source is None or source.running or source.due != at or key not in held:
                    continue  # stale (due moved, or in a sync whose end sets it), or not ours
                source.running = True
                due.append(source)
        for source in due:
            if not self._poll_at_hand(source):
                self._track(self._pool.submit(self._sync, source))
        with self._lock:
            if now < self._verify_at and not self._jobs.verify_ended():
                return
            sources = {key: s.source for key, s in self._sources.items()}
            # A verify of a source whose sync fails would only say again what its error says.
            healthy = {
                key for key, s in self._sources.items() if s.state not in ("backoff", "attention")
            }
        every = self._config.sync.verify_interval
        for job in self._jobs.verifies_due(self._engine, every, sources, healthy, held):
            self._track(self._pool.submit(job))
        self._verify_at = self._jobs.next_verify(held)

    def _schedule(self, scheduled: Scheduled) -> None:
        """Index ``scheduled`` at its (new) due time.  Called with the lock held."""
        heapq.heappush(self._due, (scheduled.due, next(self._due_seq), scheduled.key))

    def _reindex_if_due(self) -> None:
        """Rebuild the index once its stale entries outnumber the sources (each quiet poll
        leaves one), or REINDEX_EVERY since the last rebuild."""
        with self._lock:
            bloated = len(self._due) > 2 * len(self._sources) + 64
        if bloated or time.monotonic() - self._reindexed >= REINDEX_EVERY:
            self._reindex()

    def _reindex(self) -> None:
        """Every source again, at its due time, without stale entries; verifies looked for
        at the next wake."""
        with self._lock:
            self._reindexed = time.monotonic()
            self._due = [
                (s.due, next(self._due_seq), key)
                for key, s in self._sources.items()
                if not s.running
            ]
            heapq.heapify(self._due)
            self._verify_at = 0.0

    def _track(self, future: Future[None]) -> None:
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _sleep_for(self, next_beat: float) -> float:
        held = self._leases.held
        with self._lock:
            while self._due:  # drop the stale entries on top: the first one left is next
                at, _seq, key = self._due[0]
                source = self._sources.get(key)
                if source is not None and not source.running and source.due == at and key in held:
                    break
                heapq.heappop(self._due)
            waiting = self._due[0][0] if self._due else next_beat
        soonest = min(next_beat, waiting, self._verify_at, self._jobs.rules_wait())
        return max(0.05, min(soonest - time.monotonic(), HEARTBEAT_EVERY))

    # --- one sync ---------------------------------------------------------------------------

    def _sync(self, scheduled: Scheduled) -> None:
        source = scheduled.source
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**{source.kind: source.name})
        assert self._engine is not None
        started = time.monotonic()
        lease = LEASE
        key = scheduled.key
        outcome = Outcome()
        created = 0
        reason: str | None = None
        try:
            # After a clean pass, first the cheap poll: nothing new costs a STATUS a folder
            # and no database write of its own (poll_ledger.py); anything else: the pass.
            with self._lock:
                news, scheduled.news = scheduled.news, False
            if (
                not news
                and scheduled.state == "ok"
                and scheduled.reason is None
                and self._polls.quiet(source)
            ):
                self._quiet_done(scheduled, started)
                return
            with self._engine.begin() as conn:
                if not leases.renew(conn, source.kind, source.name, self.id, lease):
                    log.debug("source.held_elsewhere")
                    self._lost(key)
                    self._finish(scheduled, Outcome(), "held by another daemon", record=False)
                    return
                leases.set_health(conn, source.kind, source.name, self.id, state="syncing")
                # The lease this sync runs under: lost and taken back meanwhile, it is
                # another one, and nothing read under this one may be written then.
                epoch = leases.lease_epoch(conn, source.kind, source.name)
            scheduled.state = "syncing"
            directory = self._current_directory()

            def fence(conn: Connection) -> None:
                leases.fence(conn, source.kind, source.name, self.id, lease, epoch)

            def should_stop() -> bool:  # a stop, or the source's owner is another daemon now
                return self._stop.is_set() or key in self._leases.handover

            (result,) = sync_pass([source], directory, fence=fence, should_stop=should_stop)
            error = result.error
            created = result.report.total("captured")
            reason = result.report.reason()
            if error is not None:
                reason = describe(error)
                outcome = Outcome(
                    error.kind,
                    error.retry_after if isinstance(error, TransientError) else None,
                )
        except leases.LeaseLost as err:
            # Another daemon took the source over (we were too slow, or cut off from the
            # database): its sync goes on from the committed cursor; ours stops here.
            log.warning("source.lease_lost", error=str(err))
            self._lost(key)
            self._finish(scheduled, Outcome(), "held by another daemon", record=False)
            return
        except Exception as err:  # a bug or a database outage must not kill the worker
            kind = crash_kind(err)
            log.error("source.crashed", kind=kind, error=type(err).__name__, at=raised_at(err))
            outcome = Outcome(kind)
            reason = f"internal error: {type(err).__name__} at {raised_at(err)}"
        self._metrics.synced(
            source.name, source.record_kind, created, time.monotonic() - started, outcome.error_kind
        )
        with self._lock:
            self._counters.records += created
            self._counters.syncs += 1
        if created:  # new facts for the rules: this daemon evaluates them, turn or not
            self._jobs.captured()
        self._finish(scheduled, outcome, reason)

    def _poll_at_hand(self, scheduled: Scheduled) -> bool:
        """The cheap poll on the loop's own thread where it needs no round trip to the
        server (INBOX covered by its watch, nothing else to ask): True when it found
        nothing new and the poll is over.  A thread handoff would cost more than it."""
        started = time.monotonic()
        with self._lock:
            if scheduled.news or scheduled.state != "ok" or scheduled.reason is not None:
                return False  # news: the pass, which takes them, on a worker
        try:
            if not self._polls.quiet(scheduled.source, ask=False):
                return False
        except Exception:  # the loop must not die of a source: the worker's pass reports it
            return False
        self._quiet_done(scheduled, started)
        return True

    def _quiet_done(self, scheduled: Scheduled, started: float) -> None:
        """A cheap poll found nothing new: counted, and the next one an interval away."""
        source = scheduled.source
        self._metrics.synced(source.name, source.record_kind, 0, time.monotonic() - started, None)
        with self._lock:
            self._counters.syncs += 1
        self._finish(scheduled, Outcome(), None, record=False, quiet=True)

    def _finish(
        self,
        source: Scheduled,
        outcome: Outcome,
        reason: str | None,
        *,
        record: bool = True,
        quiet: bool = False,
    ) -> None:
        config = self._config.sync
        nxt = next_run(
            outcome,
            datetime.now(UTC),
            interval=config.interval,
            jitter=config.jitter,
            max_backoff=config.max_backoff,
            failures=source.failures,
            rng=self._rng,
        )
        delay = (nxt.at - datetime.now(UTC)).total_seconds()
        if record and self._engine is not None and not source.retired:
            try:
                with self._engine.begin() as conn:
                    leases.set_health(
                        conn, source.kind, source.name, self.id,
                        state=nxt.state, reason=reason,
                        retry_at=nxt.at if nxt.state != "ok" else None, failures=nxt.failures,
                    )  # fmt: skip
            except Exception as err:  # the database may be the thing that is down
                log.warning("health.not_saved", error=type(err).__name__)
        restart_watcher = nxt.state == "ok" and source.state == "attention"
        with self._lock:
            source.state, source.failures, source.reason = nxt.state, nxt.failures, reason
            source.due = time.monotonic() + max(0.0, delay)
            if source.woken and nxt.state == "ok":  # mail came while it ran: not in 60 s
                source.due = time.monotonic()
            source.running = source.woken = False
            self._schedule(source)
            held = source.key in self._leases.held
            if (
                restart_watcher
                and not source.retired
                and held
                and not self._watchers.alive(source.key)
            ):
                self._start_watcher(source)
        if nxt.state != "ok":
            log.warning("source.deferred", state=nxt.state, retry_in=round(delay), reason=reason)
        # After a quiet poll the next one is an interval away: the main loop, awake at least
        # every heartbeat, finds it in time without a wake (and an O(sources) round) per poll.
        if not quiet or source.due - time.monotonic() < HEARTBEAT_EVERY:
            self._wake.set()

    def _follow_directory(self) -> None:
        """Watch the [directory] source; a change applied drops the cached directory."""
        assert self._engine is not None
        self._directory_watcher = DirectoryWatcher.follow(
            self._directory_watcher, self._engine, self._config, self._metrics, self._directory.drop
        )

    def _drop_directory(self) -> None:
        self._directory.drop()

    def _current_directory(self) -> Directory:
        assert self._engine is not None
        return self._directory.current(self._engine, self._config.capture)

    # --- heartbeat ----------------------------------------------------------------------------

    def _summary(self) -> str:
        with self._lock:
            states = [s.state for s in self._sources.values()]
        parts = [f"{len(states)} sources"]
        for state, label in (
            ("syncing", "syncing"),
            ("backoff", "backing off"),
            ("attention", "need attention"),
        ):
            if n := states.count(state):
                parts.append(f"{n} {label}")
        parts.append(f"{self._counters.records} records captured")
        return ", ".join(parts)

    def _beat(self) -> None:
        assert self._engine is not None
        self._reindex_if_due()
        self._revive_watchers()
        self._imap_sessions.expire()
        summary = self._summary()
        with self._lock:
            keys = frozenset(self._sources)
            busy = frozenset(k for k, s in self._sources.items() if s.running)
            states = [s.state for s in self._sources.values()]
        watching = self._watchers.open_count()
        self._heartbeat.beat(self._engine, summary, keys, busy, states, watching)

    def _healthy(self) -> bool:
        return time.monotonic() - self._last_loop < HEALTHY_WITHIN

    # --- leases: our share of the sources (syncd/engine/fleet.py) -------------------------------

    def _apply_fleet(self, *, first: bool = False) -> None:
        """Watch and sync what the last heartbeat gained; stop watching what it lost."""
        with self._lock:
            taken = self._leases.take()
            if taken is None:
                return
            view, gained, lost = taken
            for key in lost:
                self._stop_watcher(key)
                self._imap_sessions.discard_source(key)  # its next holder logs in itself
            for key in gained:
                scheduled = self._sources.get(key)
                if scheduled is None or scheduled.retired:
                    continue
                # Taken over from another daemon: mail may have come since its last poll.
                # Where a watch on INBOX can say so at its login, only the mailboxes it finds
                # news in are polled at once: a daemon that takes over a thousand mailboxes
                # polls the hundred with mail first, not all thousand in any order.
                checked = not first and scheduled.state == "ok" and scheduled.source.news_at_login
                watched = scheduled.state != "attention" and self._start_watcher(
                    scheduled, taken_over=checked
                )
                if not first and scheduled.state == "ok":
                    # (Its `due` is stale: it was never polled here, or not since it left.)
                    if checked and watched:
                        scheduled.due = time.monotonic() + OPEN_GRACE
                    else:
                        scheduled.due = min(scheduled.due, time.monotonic())
                self._schedule(scheduled)  # ours now, whether its due moved or not
            if gained:  # (every beat posts a view: most gain nothing)
                self._verify_at = 0.0  # a source gained may have a verify due
        if gained or lost:
            log.info("fleet.changed", daemons=len(view.live), held=len(view.held),
                     gained=len(gained), lost=len(lost))  # fmt: skip

    def _apply_opened(self) -> None:
        """Watches of sources taken over that logged in: those with news are polled now, the
        others within the interval, spread, as any source; the watch covers them meanwhile."""
        assert self._engine is not None
        opened = self._watchers.take_opened()
        if not opened:
            return
        news = with_news(self._engine, opened)
        now = time.monotonic()
        interval = float(self._config.sync.interval)
        with self._lock:
            for key in opened:
                scheduled = self._sources.get(key)
                if scheduled is None or scheduled.retired or scheduled.state != "ok":
                    continue
                if key in news:
                    scheduled.due = min(scheduled.due, now)
                elif not scheduled.running and scheduled.due > now:
                    # (A due already past: a wake came since, IDLE saw mail: left alone.)
                    spread = self._rng.uniform(min(OPEN_GRACE, interval), interval)
                    scheduled.due = now + spread
                self._schedule(scheduled)
        log.debug("fleet.taken_over_checked", mailboxes=len(opened), news=len(news))

    def _lost(self, key: Key) -> None:
        with self._lock:
            self._leases.lost(key)
            self._stop_watcher(key)
            self._imap_sessions.discard_source(key)
