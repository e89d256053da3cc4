"""The daemon's timed jobs, run on its worker pool beside the syncs: `syncd verify` of each
held source every ``[sync] verify_interval``, and the follow-up rules with the outbox's
upkeep (meetings that ended announced held, retention) every ``[tasks] interval`` and after
any sync that captured something.

The loop asks ``rules_due`` and ``verifies_due`` for what to submit and ``waits`` for when to wake next; a job notes
its end here and rings the loop's alarm.  Nothing here calls the loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from functools import partial

from sqlalchemy import Connection, Engine

from syncd.config import Config
from syncd.engine.event_upkeep import events_upkeep
from syncd.engine.fleet import LEASE
from syncd.engine.followups import evaluate_followups
from syncd.engine.sources import Source
from syncd.logs import get_logger
from syncd.metrics import Metrics
from syncd.store import leases, turns

log = get_logger("syncd.daemon")

Key = tuple[str, str]  # (kind, name)
Job = Callable[[], None]
FIRST_VERIFY_WITHIN = 600.0  # seconds after start (a daemon restarted daily must still verify)


class TimedJobs:
    def __init__(self, daemon_id: str, metrics: Metrics, alarm: threading.Event) -> None:
        self._id = daemon_id
        self._metrics = metrics
        self._alarm = alarm
        self._lock = threading.Lock()
        self._verify_due: dict[Key, float] = {}
        self._verifying: set[Key] = set()
        # A verify ended since the loop last looked: its next one is due, at the earliest,
        # ``every`` after it began, which the loop's next wake (``next_verify``) left out.
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

    def verifies_due(
        self,
        engine: Engine,
        every: float,
        sources: Mapping[Key, Source],
        healthy: Collection[Key],
        held: Collection[Key],
    ) -> list[Job]:
        """The verifies to run now (each marked running until it ends); never waits on one.
        ``healthy``: the sources whose last sync did not fail (a verify of one that fails
        would only say again what its sync already says)."""
        now = time.monotonic()
        jobs: list[Job] = []
        with self._lock:
            for gone in set(self._verify_due) - set(sources):  # removed by a reload
                del self._verify_due[gone]
            if not every:
                self._verify_due.clear()
                return jobs
            for key, source in sources.items():
                # The first verify comes soon after start, after the first syncs' turn.
                due = self._verify_due.setdefault(key, now + min(every, FIRST_VERIFY_WITHIN))
                if due > now or key in self._verifying:
                    continue
                self._verify_due[key] = now + every
                if key not in healthy or key not in held:
                    continue
                self._verifying.add(key)
                jobs.append(partial(self._verify, engine, key, source))
        return jobs

    def verify_ended(self) -> bool:
        """A verify ended since the last call."""
        with self._lock:
            ended, self._verify_ended = self._verify_ended, False
        return ended

    def next_verify(self, held: Collection[Key]) -> float:
        """When the soonest verify of a held source not running now is due
        (time.monotonic(); infinity when none is)."""
        with self._lock:
            return min(
                (d for k, d in self._verify_due.items() if k not in self._verifying and k in held),
                default=float("inf"),
            )

    def rules_wait(self) -> float:
        """When the follow-up rules are next due (infinity while they run)."""
        with self._lock:
            return float("inf") if self._rules_running else self._rules_due

    def waits(self, held: Collection[Key]) -> list[float]:
        """When the jobs not running now are next due (time.monotonic())."""
        with self._lock:
            out = [d for k, d in self._verify_due.items() if k not in self._verifying and k in held]
            if not self._rules_running:
                out.append(self._rules_due)
        return out

    def _verify(self, engine: Engine, key: Key, source: Source) -> None:
        """Account for every message or event of one source; export and log what is missing."""
        kind, name = key
        try:
            with engine.connect() as conn:
                epoch = leases.lease_epoch(conn, kind, name)

            def fence(conn: Connection) -> None:
                leases.fence(conn, kind, name, self._id, LEASE, epoch)

            report = source.verify(fence)
            if not report.failed:
                self._metrics.unaccounted.labels(name).set(report.missing)
            log.info("verify.done", source=name, missing=report.missing)
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
            self._alarm.set()

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
