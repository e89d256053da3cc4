"""`syncd run`: every mailbox and calendar on its own schedule, for months, unattended.

The main thread only schedules: it hands due sources to a bounded pool of workers,
wakes at once when IDLE reports new mail, answers signals and beats the heart (database,
systemd, metrics).  A worker syncs one source at a time with the same engines as
`syncd sync`, so a stop between two batches loses nothing: each batch commits with its
cursor.  One failing source only ever occupies its own worker, for at most its timeout.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from syncd.api.service import ApiService
from syncd.config import Config, load_config
from syncd.connectors.imap_idle import FOLDER as INBOX
from syncd.crm.runner import CrmWorkers
from syncd.domain.matching import Directory
from syncd.engine.directory_sync import DirectoryWatcher
from syncd.engine.event_upkeep import events_upkeep
from syncd.engine.fleet import (
    LEASE,
    Leases,
    bounded,
    clear_predecessors,
    end_abandoned_transactions,
)
from syncd.engine.followups import evaluate_followups
from syncd.engine.imap_sessions import DaemonSessions
from syncd.engine.instance_lock import InstanceLock
from syncd.engine.mail_sync import open_imap
from syncd.engine.poll_ledger import PollLedger
from syncd.engine.push import RECONNECT_MAX, PushHub, Watch
from syncd.engine.schedule import Outcome, next_run
from syncd.engine.sources import Fence, Source, configured_sources
from syncd.engine.task_sync import TaskLists
from syncd.errors import ConfigError, RemoteError, TransientError, describe, raised_at
from syncd.group_tokens import keep_rotated_tokens_in
from syncd.metrics import Metrics, MetricsServer
from syncd.notify import Notifier
from syncd.secrets import exposed_secrets
from syncd.store import health, turns
from syncd.store.database import open_database
from syncd.store.directory import load_directory
from syncd.store.state import Cursor, cursors_of
from syncd.webhooks.deliverer import Deliverer

log = structlog.get_logger("syncd.daemon")

# seconds; each beat also reads which daemons are live, so that a stopped or dead one's
# sources are taken over within a beat of it being seen gone (syncd/engine/fleet.py).
HEARTBEAT_EVERY = 2.5
HEALTHY_WITHIN = 15.0  # /healthz: the main loop went round this recently
# Seconds a stop waits for workers (from SIGTERM, the release of the leases included);
# with the rest (watchers 1, LOGOUTs 1.5, the last write 1, threads 0.5), under 10 s.
STOP_WITHIN = 5.0
DIRECTORY_TTL = 30.0  # customers and contacts are re-read at most this often
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

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def key(self) -> tuple[str, str]:
        return (self.source.kind, self.source.name)


def _reads_inbox(scheduled: Scheduled) -> bool:
    """A mailbox whose folders include INBOX, the folder a watch sees."""
    if scheduled.kind != "mailbox":
        return False
    folders = getattr(scheduled.source.config, "folders", None)
    return folders is None or any(folder.upper() == INBOX for folder in folders)


def _warn_exposed_secrets(config: Config, config_path: Path) -> None:
    for problem in exposed_secrets(config, config_path):
        log.warning("secrets.exposed", problem=problem)


@dataclass(slots=True)
class _Deaths:
    """An IDLE watcher's unexpected deaths, for the backoff of its restarts."""

    count: int = 0
    restart_at: float | None = None  # monotonic time of the pending restart
    restarted: float = 0.0  # monotonic time of the last restart


@dataclass(slots=True)
class _Counters:
    records: int = 0
    syncs: int = 0
    started: float = field(default_factory=time.monotonic)


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
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._sources: dict[tuple[str, str], Scheduled] = {}
        # Push (IMAP IDLE): one selector thread for every watcher, whatever their number.
        # Its logins count in syncd_imap_logins_total beside the polls' (the lambda: the
        # session cache is made below).
        self._hub = PushHub(on_login=lambda outcome: self._imap_sessions.observe_login(outcome))
        self._watchers: dict[tuple[str, str], Watch] = {}  # by (kind, name)
        # Watchers that died of something they could not catch, for the restart backoff.
        self._watcher_deaths: dict[tuple[str, str], _Deaths] = {}
        # Watches of mailboxes taken over, logged in: INBOX's (UIDVALIDITY, UIDNEXT) then.
        self._opened: dict[tuple[str, str], tuple[int | None, int | None]] = {}
        self._futures: set[Future[None]] = set()
        self._directory: tuple[float, Directory] | None = None
        self._directory_generation = 0  # changes applied by the [directory] source
        self._directory_watcher: DirectoryWatcher | None = None  # the [directory] source
        self._task_lists = TaskLists()  # task list URLs, shared by the worker threads
        # Follow-up rules run after syncs that captured something, and on their own timer.
        self._tasks_due = 0.0
        # A sync captured something since the last evaluation (or the daemon just started,
        # perhaps with new rules: it evaluates once at start, whoever's turn it is).
        self._tasks_news = True
        self._tasks_running = False
        self._counters = _Counters()
        # `syncd verify` per source on its own timer ([sync] verify_interval), in the pool.
        self._verify_due: dict[tuple[str, str], float] = {}
        self._verifying: set[tuple[str, str]] = set()
        self._metrics = Metrics()
        # IMAP sessions kept from one poll of a mailbox to the next.
        self._imap_sessions = DaemonSessions(self._config.sync, self._metrics, open_imap)
        self._last_loop = time.monotonic()
        self._instance = InstanceLock.for_database(self._config.database.url)
        self._engine: Engine | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._server: MetricsServer | None = None
        self._api = ApiService()  # the HTTP API, when the config has [api]
        self._db_beat: threading.Thread | None = None  # the heartbeat's database write
        self._db_beat_at = 0.0
        self._webhooks: Deliverer | None = None  # started with the first [[webhook]]
        self._crms: CrmWorkers | None = None  # started with the first [[crm]]
        # Leases (syncd/engine/fleet.py): only held sources are synced, verified and watched.
        self._leases = Leases(self.id)
        # Polls that found nothing new, recorded by the heartbeat for all sources at once.
        self._polls = PollLedger()

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
        end_abandoned_transactions(self._engine)
        keep_rotated_tokens_in(self._engine)  # a rotated refresh token outlives the process
        with self._engine.begin() as conn:
            if self._instance is not None:
                # The lock file says no other daemon uses this database: whatever a killed
                # predecessor still holds is free.
                health.release_all(conn)
            health.register_daemon(conn, self.id, socket.gethostname(), os.getpid())
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
        if self._db_beat is not None:
            # A claim in flight must not land after the release.
            self._db_beat.join(max(0.0, min(2.0, deadline - time.monotonic())))
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
        watchers_deadline = min(deadline, time.monotonic() + 1.0)
        for watcher in self._watchers.values():
            watcher.join(max(0.0, watchers_deadline - time.monotonic()))
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
                health.daemon_stopped(conn, self.id)
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
        self._drop_directory()
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
                self._engine, config, task_lists=self._task_lists, sessions=self._imap_sessions
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
                self._stop_watcher(key)
                if key in self._leases.held:  # only the lease holder watches (fleet.py)
                    self._start_watcher(scheduled)
                if not first:
                    log.info(
                        "source.added" if current is None else "source.changed",
                        source=source.name,
                    )

    def _apply_webhooks(self, config: Config) -> None:
        only = self._instance is not None  # SQLite's lock file: no other daemon on it
        self._webhooks = Deliverer.follow(self._webhooks, config, self.id, self._metrics, only)
        assert self._engine is not None
        self._crms = CrmWorkers.follow(self._crms, self._engine, config, self.id)

    def _start_watcher(self, scheduled: Scheduled, *, taken_over: bool = False) -> bool:
        """Watch the source if its server can push; True when a watch was started.  For a
        source ``taken_over`` from another daemon, the watch's first login tells whether
        INBOX holds mail past the cursor (``_apply_opened``)."""
        key = scheduled.key

        def opened(found: tuple[int | None, int | None]) -> None:
            with self._lock:
                self._opened[key] = found
            self._wake.set()

        watcher = scheduled.source.watcher(
            self._hub, lambda _name: self.wake(key), opened if taken_over else None
        )
        if watcher is not None:
            self._watchers[key] = watcher
            self._imap_sessions.watch_source(key, watcher)  # its connection is the kept one
        return watcher is not None

    def _stop_watcher(self, key: tuple[str, str]) -> None:
        watcher = self._watchers.pop(key, None)
        if watcher is not None:
            watcher.stop()
        self._imap_sessions.unwatch_source(key)
        self._watcher_deaths.pop(key, None)

    def _revive_watchers(self) -> None:
        """Restart, with backoff, watchers that died instead of ending on purpose.

        A watcher survives any exception by itself; this is for what it cannot catch (its
        step raised past every handler, or the hub's selector thread died).  Until
        it is back, the source is still polled every interval: only push is delayed.
        """
        now = time.monotonic()
        with self._lock:
            for key, watcher in list(self._watchers.items()):
                deaths = self._watcher_deaths.get(key)
                if watcher.alive:
                    if deaths is not None and now - deaths.restarted > RECONNECT_MAX:
                        del self._watcher_deaths[key]  # up for a while: backoff starts over
                    continue
                scheduled = self._sources.get(key)
                if watcher.ended is not None or scheduled is None or self._stop.is_set():
                    continue
                if deaths is None:
                    deaths = self._watcher_deaths[key] = _Deaths()
                if deaths.restart_at is None:  # just found dead: wait, doubling each time
                    deaths.count += 1
                    delay = min(RECONNECT_MAX, 2.0 ** (deaths.count - 1))
                    deaths.restart_at = now + delay
                    log.error(
                        "idle.watcher_died",
                        **{key[0]: key[1]},
                        deaths=deaths.count,
                        retry_in=delay,
                    )
                elif now >= deaths.restart_at:
                    deaths.restart_at, deaths.restarted = None, now
                    self._start_watcher(scheduled)
                    log.info("idle.watcher_restarted", **{key[0]: key[1]}, deaths=deaths.count)

    # --- scheduling -------------------------------------------------------------------------

    def wake(self, key: tuple[str, str]) -> None:
        """New items (IMAP IDLE): sync this source now, or right after the sync in progress."""
        with self._lock:
            scheduled = self._sources.get(key)
            if scheduled is not None and scheduled.state in ("ok", "syncing"):
                scheduled.due = time.monotonic()
                # The running sync may have read the folder already; its end sets `due`.
                scheduled.woken = scheduled.running
        self._wake.set()

    def _dispatch(self) -> None:
        assert self._pool is not None
        now = time.monotonic()
        with self._lock:
            if not self._tasks_running and self._tasks_due <= now:
                self._tasks_running = True
                self._track(self._pool.submit(self._evaluate_tasks))
            held = self._leases.held
            due = [
                s
                for s in self._sources.values()
                if not s.running and s.due <= now and s.key in held
            ]
            for source in sorted(due, key=lambda s: s.due):
                source.running = True
                self._track(self._pool.submit(self._sync, source))
            self._dispatch_verify(now)

    def _dispatch_verify(self, now: float) -> None:
        """Submit the verifies that are due (called with the lock held); never waits on one."""
        assert self._pool is not None
        every = self._config.sync.verify_interval
        for gone in set(self._verify_due) - set(self._sources):  # removed by a reload
            del self._verify_due[gone]
        if not every:
            self._verify_due.clear()
            return
        for key, source in self._sources.items():
            # The first verify comes soon after start (a daemon restarted daily must still
            # verify), after the first syncs have had their turn.
            due = self._verify_due.setdefault(key, now + min(every, 600.0))
            if due > now or key in self._verifying:
                continue
            self._verify_due[key] = now + every
            if source.state in ("backoff", "attention") or key not in self._leases.held:
                continue  # the sync's own error already says what is wrong
            self._verifying.add(key)
            self._track(self._pool.submit(self._verify, source))

    def _track(self, future: Future[None]) -> None:
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def _evaluate_tasks(self) -> None:
        assert self._engine is not None
        every = timedelta(seconds=self._config.tasks.interval)
        with self._lock:
            news, self._tasks_news = self._tasks_news, False
        try:
            # The timer's runs: one per interval across the daemons (store/turns.py).  After
            # a capture the capturing daemon evaluates at once, whoever's turn it is.
            with self._engine.begin() as conn:
                mine = turns.take_turn(conn, "tasks", every) or news
            if mine:
                evaluate_followups(self._engine, self._config)
                events_upkeep(self._engine, self._config)  # held meetings, retention
            else:
                log.debug("tasks.not_our_turn")
        except Exception as err:  # the database may be down; the next round tries again
            log.warning("tasks.evaluation_failed", error=f"{type(err).__name__}: {str(err)[:200]}")
            with self._lock:
                self._tasks_news |= news
        with self._lock:
            self._tasks_running = False
            # A capture that ended during this evaluation brought facts it did not see.
            later = 0.0 if self._tasks_news else self._config.tasks.interval
            self._tasks_due = time.monotonic() + later
        self._wake.set()

    def _sleep_for(self, next_beat: float) -> float:
        with self._lock:
            held = self._leases.held
            waiting = [s.due for s in self._sources.values() if not s.running and s.key in held]
            waiting += [
                d for k, d in self._verify_due.items() if k not in self._verifying and k in held
            ]
            if not self._tasks_running:
                waiting.append(self._tasks_due)
        soonest = min([next_beat, *waiting])
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
            if scheduled.state == "ok" and scheduled.reason is None and self._polls.quiet(source):
                self._metrics.synced(
                    source.name, source.record_kind, 0, time.monotonic() - started, None
                )
                with self._lock:
                    self._counters.syncs += 1
                self._finish(scheduled, outcome, None, record=False, quiet=True)
                return
            with self._engine.begin() as conn:
                if not health.renew(conn, source.kind, source.name, self.id, lease):
                    log.debug("source.held_elsewhere")
                    self._lost(key)
                    self._finish(scheduled, Outcome(), "held by another daemon", record=False)
                    return
                health.set_health(conn, source.kind, source.name, self.id, state="syncing")
                # The lease this sync runs under: lost and taken back meanwhile, it is
                # another one, and nothing read under this one may be written then.
                epoch = health.lease_epoch(conn, source.kind, source.name)
            scheduled.state = "syncing"
            directory = self._current_directory()

            def fence(conn: Connection) -> None:
                health.fence(conn, source.kind, source.name, self.id, lease, epoch)

            def should_stop() -> bool:  # a stop, or the source's owner is another daemon now
                return self._stop.is_set() or key in self._leases.handover

            report = source.sync(directory, should_stop=should_stop, fence=fence)
            error = report.error
            created = report.total("captured")
            reason = report.reason()
            if error is None:
                error = self._push_tasks(source, fence)
            if error is not None:
                reason = describe(error)
                outcome = Outcome(
                    error.kind,
                    error.retry_after if isinstance(error, TransientError) else None,
                )
        except health.LeaseLost as err:
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
                self._tasks_due = min(self._tasks_due, time.monotonic())
                self._tasks_news = True
        self._finish(scheduled, outcome, reason)

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
                    health.set_health(
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
            if restart_watcher and not source.retired and source.key in self._leases.held:
                watcher = self._watchers.get(source.key)
                if watcher is None or not watcher.alive:
                    self._start_watcher(source)
        if nxt.state != "ok":
            log.warning("source.deferred", state=nxt.state, retry_in=round(delay), reason=reason)
        # After a quiet poll the next one is an interval away: the main loop, awake at least
        # every heartbeat, finds it in time without a wake (and an O(sources) round) per poll.
        if not quiet or source.due - time.monotonic() < HEARTBEAT_EVERY:
            self._wake.set()

    def _verify(self, source: Scheduled) -> None:
        """Account for every message or event of one source; export and log what is missing."""
        assert self._engine is not None
        kind, name = source.key
        try:
            with self._engine.connect() as conn:
                epoch = health.lease_epoch(conn, kind, name)

            def fence(conn: Connection) -> None:
                health.fence(conn, kind, name, self.id, LEASE, epoch)

            report = source.source.verify(fence)
            if not report.failed:
                self._metrics.unaccounted.labels(source.name).set(report.missing)
            log.info("verify.done", source=source.name, missing=report.missing)
        except health.LeaseLost:
            log.info("verify.lease_lost", source=source.name)  # its new holder verifies it
        except Exception as err:  # the next round tries again; the sync itself is unaffected
            log.warning(
                "verify.crashed",
                source=source.name,
                error=f"{type(err).__name__}: {str(err)[:200]}",
            )
        finally:
            with self._lock:
                self._verifying.discard(source.key)
            self._wake.set()

    def _push_tasks(self, source: Source, fence: Fence) -> RemoteError | None:
        """The source's task list, if it has one, after a clean sync (fenced as the sync)."""
        try:
            source.push_tasks(fence)
        except RemoteError as err:
            log.warning("tasks.calendar_failed", error=str(err))
            return err
        return None

    def _follow_directory(self) -> None:
        """Watch the [directory] source; a change applied drops the cached directory."""
        assert self._engine is not None

        self._directory_watcher = DirectoryWatcher.follow(
            self._directory_watcher, self._engine, self._config, self._metrics, self._drop_directory
        )

    def _drop_directory(self) -> None:
        """The directory changed (a mirror applied, a reload): the next sync reads it anew."""
        with self._lock:
            self._directory = None
            self._directory_generation += 1

    def _current_directory(self) -> Directory:
        with self._lock:
            cached, generation = self._directory, self._directory_generation
        if cached is not None and time.monotonic() - cached[0] < DIRECTORY_TTL:
            return cached[1]
        assert self._engine is not None
        with self._engine.connect() as conn:
            directory = load_directory(conn, self._config.capture)
        with self._lock:
            # A load that began before a change was applied read the old directory: it
            # serves the sync that asked, but it is not kept for the next ones.
            if generation == self._directory_generation:
                self._directory = (time.monotonic(), directory)
        return directory

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
        self._revive_watchers()
        self._imap_sessions.expire()
        summary = self._summary()
        with self._lock:
            keys = frozenset(self._sources)
            busy = frozenset(k for k, s in self._sources.items() if s.running)
        # The database write runs on its own thread: a database that hangs (a host gone
        # without a reset, a server that accepts and never answers) must not stop the main
        # loop, whose watchdog pings tell systemd that syncd itself is alive.  At most one
        # write is in flight; a slow one is reported and the next beat is skipped.
        writer = self._db_beat
        if writer is not None and writer.is_alive():
            log.warning(
                "heartbeat.database_slow", waiting=round(time.monotonic() - self._db_beat_at)
            )
        else:
            self._db_beat = threading.Thread(
                target=self._write_heartbeat,
                args=(summary, keys, busy),
                name="heartbeat",
                daemon=True,
            )
            self._db_beat_at = time.monotonic()
            self._db_beat.start()
        with self._lock:
            states = [s.state for s in self._sources.values()]
        for state in ("ok", "syncing", "backoff", "attention"):
            self._metrics.sources.labels(state).set(states.count(state))
        self._metrics.watchers_open.set(self._hub.open_count())
        self._metrics.held.set(len(self._leases.held))
        self._notifier.status(summary)
        self._notifier.watchdog()

    def _write_heartbeat(
        self,
        summary: str,
        keys: frozenset[tuple[str, str]] = frozenset(),
        busy: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        assert self._engine is not None
        try:
            with self._engine.begin() as conn:
                health.heartbeat(conn, self.id, summary)
        except Exception as err:  # keep running; status shows us stale
            log.warning("heartbeat.failed", error=type(err).__name__)
            return
        self._polls.flush(self._engine, self._leases.held)
        if self._leases.beat(self._engine, keys, busy, claim=not self._stop.is_set()):
            self._wake.set()

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
                checked = not first and scheduled.state == "ok" and _reads_inbox(scheduled)
                watched = scheduled.state != "attention" and self._start_watcher(
                    scheduled, taken_over=checked
                )
                if not first and scheduled.state == "ok":
                    # (Its `due` is stale: it was never polled here, or not since it left.)
                    if checked and watched:
                        scheduled.due = time.monotonic() + OPEN_GRACE
                    else:
                        scheduled.due = min(scheduled.due, time.monotonic())
        if gained or lost:
            log.info("fleet.changed", daemons=len(view.live), held=len(view.held),
                     gained=len(gained), lost=len(lost))  # fmt: skip

    def _apply_opened(self) -> None:
        """Watches of mailboxes taken over that logged in: INBOX's UIDNEXT against the
        cursor (one query for all of them).  News: poll now.  None: the next poll comes
        within the interval, spread, as for any mailbox; the watch covers INBOX meanwhile."""
        assert self._engine is not None
        with self._lock:
            opened, self._opened = self._opened, {}
        if not opened:
            return
        try:
            with self._engine.connect() as conn:
                cursors: dict[str, Cursor] | None = cursors_of(
                    conn, [name for _kind, name in opened], INBOX
                )
        except Exception as err:  # the database may be down: poll them, as before
            log.warning("fleet.cursors_unread", error=type(err).__name__)
            cursors = None
        now = time.monotonic()
        interval = float(self._config.sync.interval)
        news = 0
        with self._lock:
            for key, (validity, uidnext) in opened.items():
                scheduled = self._sources.get(key)
                if scheduled is None or scheduled.retired or scheduled.state != "ok":
                    continue
                cursor = None if cursors is None else cursors.get(key[1])
                if (
                    cursor is None
                    or validity is None
                    or uidnext is None
                    or cursor.uidvalidity != validity
                    or uidnext > cursor.last_uid + 1
                ):
                    scheduled.due = min(scheduled.due, now)
                    news += 1
                elif not scheduled.running and scheduled.due > now:
                    # (A due already past: a wake came since, IDLE saw mail: left alone.)
                    spread = self._rng.uniform(min(OPEN_GRACE, interval), interval)
                    scheduled.due = now + spread
        log.debug("fleet.taken_over_checked", mailboxes=len(opened), news=news)

    def _lost(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._leases.lost(key)
            self._stop_watcher(key)
            self._imap_sessions.discard_source(key)
