"""One source's turn, from the daemon's dispatch to its next due time: the cheap poll, or the
pass of `syncd sync` (engine/passes.py) under the source's lease, then its outcome written
and the next sync placed in the timetable.

It runs on the daemon's worker threads (the cheap poll the watch answers alone on the loop's
own thread: ``poll_at_hand``) and owns nothing but the config its schedule is computed
from: what a turn changes it tells the timetable, and a turn the loop must act on (a lease
found lost, a source back from "attention") is noted there and the loop's alarm rung.  A
stop between two batches loses nothing: each batch commits with its cursor.  One failing
source only ever occupies its own worker, for at most its timeout.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from syncd.config import Config
from syncd.engine.directory_cache import DirectoryCache
from syncd.engine.fleet import LEASE, Leases
from syncd.engine.heartbeat import HEARTBEAT_EVERY
from syncd.engine.passes import sync_pass
from syncd.engine.poll_ledger import PollLedger
from syncd.engine.schedule import Outcome, next_run
from syncd.engine.timed_jobs import TimedJobs
from syncd.engine.timetable import Scheduled, Timetable
from syncd.errors import TransientError, describe, raised_at
from syncd.logs import get_logger
from syncd.metrics import Metrics
from syncd.store import leases

log = get_logger("syncd.daemon")

HELD_ELSEWHERE = "held by another daemon"


def crash_kind(err: Exception) -> str:
    """What an exception that escaped a sync means for its schedule: a database that cannot
    be reached is transient (back off, it comes back); anything else is a bug of ours or a
    library that changed (internal: wait for a person, do not retry it every few seconds)."""
    if isinstance(err, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return "transient"  # PoolTimeout: every connection busy, which passes
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return "transient"
    return "internal"


class SyncWorker:
    def __init__(
        self,
        daemon_id: str,
        config: Config,
        timetable: Timetable,
        leases: Leases,
        polls: PollLedger,
        directory: DirectoryCache,
        jobs: TimedJobs,
        metrics: Metrics,
        *,
        rng: random.Random,
        alarm: threading.Event,
        stopping: threading.Event,
    ) -> None:
        self._id = daemon_id
        self.config = config  # the loop's, swapped on a reload
        self._timetable = timetable
        self._leases = leases
        self._polls = polls
        self._directory = directory
        self._jobs = jobs  # told when a sync captured something: new facts for the rules
        self._metrics = metrics
        self._rng = rng
        self._alarm = alarm
        self._stopping = stopping

    def sync(self, engine: Engine, scheduled: Scheduled) -> None:
        source = scheduled.source
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**{source.kind: source.name})
        started = time.monotonic()
        key = scheduled.key
        outcome = Outcome()
        created = 0
        was: str | None = None  # the state before the pass (None: it never began)
        reason: str | None = None
        try:
            # After a clean pass, first the cheap poll: nothing new costs a STATUS a folder
            # and no database write of its own (poll_ledger.py); anything else: the pass.
            news = self._timetable.take_news(scheduled)
            if (
                not news
                and scheduled.state == "ok"
                and scheduled.reason is None
                and self._polls.quiet(source)
            ):
                self._quiet_done(scheduled, started)
                return
            with engine.begin() as conn:
                if not leases.renew(conn, source.kind, source.name, self._id, LEASE):
                    log.debug("source.held_elsewhere")
                    self._lost(scheduled)
                    return
                leases.set_health(conn, source.kind, source.name, self._id, state="syncing")
                # The lease this sync runs under: lost and taken back meanwhile, it is
                # another one, and nothing read under this one may be written then.
                epoch = leases.lease_epoch(conn, source.kind, source.name)
            # Its state before the pass, for `finished`: back from "attention" when it is
            # ok now (its watch, ended by the refused login, starts again).
            was = scheduled.state
            scheduled.state = "syncing"
            directory = self._directory.current(engine, self.config.capture)

            def fence(conn: Connection) -> None:
                leases.fence(conn, source.kind, source.name, self._id, LEASE, epoch)

            def should_stop() -> bool:  # a stop, or the source's owner is another daemon now
                return self._stopping.is_set() or key in self._leases.handover

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
            self._lost(scheduled)
            return
        except Exception as err:  # a bug or a database outage must not kill the worker
            kind = crash_kind(err)
            log.error("source.crashed", kind=kind, error=type(err).__name__, at=raised_at(err))
            outcome = Outcome(kind)
            reason = f"internal error: {type(err).__name__} at {raised_at(err)}"
        self._metrics.synced(
            source.name, source.record_kind, created, time.monotonic() - started, outcome.error_kind
        )
        self._timetable.counted(created)
        if created:  # new facts for the rules: this daemon evaluates them, turn or not
            self._jobs.captured()
        self.finish(scheduled, outcome, reason, engine=engine, was=was)

    def poll_at_hand(self, scheduled: Scheduled) -> bool:
        """The cheap poll on the loop's own thread where it needs no round trip to the
        server (INBOX covered by its watch, nothing else to ask): True when it found
        nothing new and the poll is over.  A thread handoff would cost more than it."""
        started = time.monotonic()
        if not self._timetable.may_poll_cheaply(scheduled):
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
        self._timetable.counted(0)
        self.finish(scheduled, Outcome(), None, quiet=True)

    def _lost(self, scheduled: Scheduled) -> None:
        """Another daemon holds the source now: not ours to sync, watch or keep a session
        of (the loop stops those)."""
        self._leases.lost(scheduled.key)
        self._timetable.lost(scheduled.key)
        self.finish(scheduled, Outcome(), HELD_ELSEWHERE)

    def finish(
        self,
        scheduled: Scheduled,
        outcome: Outcome,
        reason: str | None,
        *,
        engine: Engine | None = None,
        quiet: bool = False,
        was: str | None = None,
    ) -> None:
        """The turn is over: the next sync placed, and the source's health written in
        ``engine`` (None: nothing to record, the poll was quiet or the lease gone).  ``was``:
        the source's state before the pass (None: the one it has now)."""
        config = self.config.sync
        nxt = next_run(
            outcome,
            datetime.now(UTC),
            interval=config.interval,
            jitter=config.jitter,
            max_backoff=config.max_backoff,
            failures=scheduled.failures,
            rng=self._rng,
        )
        delay = (nxt.at - datetime.now(UTC)).total_seconds()
        if engine is not None and not scheduled.retired:
            try:
                with engine.begin() as conn:
                    leases.set_health(
                        conn, scheduled.kind, scheduled.name, self._id,
                        state=nxt.state, reason=reason,
                        retry_at=nxt.at if nxt.state != "ok" else None, failures=nxt.failures,
                    )  # fmt: skip
            except Exception as err:  # the database may be the thing that is down
                log.warning("health.not_saved", error=type(err).__name__)
        self._timetable.finished(scheduled, nxt.state, nxt.failures, reason, delay, was=was)
        if nxt.state != "ok":
            log.warning("source.deferred", state=nxt.state, retry_in=round(delay), reason=reason)
        # After a quiet poll the next one is an interval away: the main loop, awake at least
        # every heartbeat, finds it in time without a wake (and an O(sources) round) per poll.
        if not quiet or scheduled.due - time.monotonic() < HEARTBEAT_EVERY:
            self._alarm.set()
