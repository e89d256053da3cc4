"""The daemon's heartbeat: the database row that says it is alive, fleet membership (its
leases renewed, released and claimed: engine/fleet.py), systemd's status and watchdog, and
the gauges.

The database write runs on its own thread: a database that hangs (a host gone without a
reset, a server that accepts and never answers) must not stop the main loop, whose watchdog
pings tell systemd that syncd itself is alive.  At most one write is in flight; a slow one is
reported and the next beat skips its write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection

from sqlalchemy import Engine

from syncd.engine.fleet import Leases
from syncd.engine.poll_ledger import PollLedger
from syncd.logs import get_logger
from syncd.metrics import Metrics
from syncd.notify import Notifier
from syncd.store import leases as store_leases

log = get_logger("syncd.daemon")

Key = tuple[str, str]  # (kind, name)
STATES = ("ok", "syncing", "backoff", "attention")
# seconds; each beat also reads which daemons are live, so that a stopped or dead one's
# sources are taken over within a beat of it being seen gone (syncd/engine/fleet.py).
HEARTBEAT_EVERY = 2.5


class Heartbeat:
    def __init__(
        self,
        daemon_id: str,
        leases: Leases,
        polls: PollLedger,
        metrics: Metrics,
        notifier: Notifier,
        *,
        alarm: threading.Event,
        stopping: threading.Event,
    ) -> None:
        self._id = daemon_id
        self._leases = leases
        self._polls = polls
        self._metrics = metrics
        self._notifier = notifier
        self._alarm = alarm  # rung when a beat posted a new share of the sources
        self._stopping = stopping  # once set, a beat claims nothing more
        self._writer: threading.Thread | None = None
        self._writer_at = 0.0

    def beat(
        self,
        engine: Engine,
        summary: str,
        keys: frozenset[Key],
        busy: frozenset[Key],
        states: Collection[str],
        watching: int,
    ) -> None:
        writer = self._writer
        if writer is not None and writer.is_alive():
            log.warning(
                "heartbeat.database_slow", waiting=round(time.monotonic() - self._writer_at)
            )
        else:
            self._writer = threading.Thread(
                target=self.write,
                args=(engine, summary, keys, busy),
                name="heartbeat",
                daemon=True,
            )
            self._writer_at = time.monotonic()
            self._writer.start()
        counts = list(states)
        for state in STATES:
            self._metrics.sources.labels(state).set(counts.count(state))
        self._metrics.watchers_open.set(watching)
        self._metrics.held.set(len(self._leases.held))
        self._notifier.status(summary)
        self._notifier.watchdog()

    def write(
        self,
        engine: Engine,
        summary: str,
        keys: frozenset[Key] = frozenset(),
        busy: frozenset[Key] = frozenset(),
    ) -> None:
        """The heartbeat row, the quiet polls noted since the last beat, then the fleet step
        (on the writer thread): three transactions, each failing alone, on one connection
        taken from the pool once."""
        try:
            with engine.connect() as conn:
                # One statement, committed as it runs: no BEGIN and COMMIT round trips.
                level = conn.default_isolation_level
                conn.execution_options(isolation_level="AUTOCOMMIT")
                store_leases.heartbeat(conn, self._id, summary)
                conn.commit()
                conn.execution_options(isolation_level=level)  # transactions from here
                self._polls.flush(conn, self._leases.held, due=True)
                if self._leases.beat(conn, keys, busy, claim=not self._stopping.is_set()):
                    self._alarm.set()
        except Exception as err:  # keep running; status shows us stale
            log.warning("heartbeat.failed", error=type(err).__name__)

    def join(self, timeout: float) -> None:
        """Wait for a write in flight: a claim must not land after the stop's release."""
        if self._writer is not None:
            self._writer.join(max(0.0, timeout))
