"""The daemon's share of the sources when several daemons run on one PostgreSQL.

Each heartbeat (2.5 s), one daemon: writes its heartbeat; reads the live daemons (heartbeat
within ``HEARTBEAT_STALE`` of the database's clock, not stopped); renews every lease it holds
in one UPDATE (every ``RENEW_EVERY``), else counts them (the rows read only when the count
moved); releases the sources whose rendezvous owner is now another live daemon (those
in the middle of a sync stay until their batch is committed: the sync is told to stop, the
next beat releases them); and claims, in bulk, the sources it owns that are free, whose
lease ran out, or whose holder stopped beating.  A few statements per beat whatever the
number of sources.

So each of K daemons holds about N/K sources; a daemon that joins gets its share within two
beats of its first heartbeat (the others release, it claims); one that stops cleanly marks
itself stopped and frees its leases at once; one that dies is left out once its heartbeat
is ``HEARTBEAT_STALE`` old, and its sources are claimed at the next beat of their new owners.

With SQLite (one daemon, by the lock file) the same code gives that daemon every source.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Connection, Engine, event, text

from syncd.domain.assignment import share, source_key
from syncd.logs import get_logger
from syncd.store import leases
from syncd.store.database import transaction

log = get_logger("syncd.fleet")
# A daemon's start and last write (``join``, ``leave``) log under the daemon's name.
daemon_log = get_logger("syncd.daemon")

Key = tuple[str, str]  # (kind, name)

# A lease is renewed every RENEW_EVERY and by every committed batch; one not renewed for
# this long belongs to a daemon that is stuck, and its owner may take it.  (A dead daemon's
# leases go sooner: its heartbeat is stale after HEARTBEAT_STALE.)  Renewing is one UPDATE
# of every held row, so it is not done at every beat: those row writes are what a fleet of
# a hundred thousand mailboxes costs the database most.
LEASE = timedelta(seconds=30)
RENEW_EVERY = 10.0  # seconds


@dataclass(frozen=True, slots=True)
class FleetView:
    """What one heartbeat found: the live daemons and what this daemon holds now."""

    live: tuple[str, ...]  # ids of the live daemons, this one included
    held: frozenset[Key]  # leases this daemon holds after the step
    handover: frozenset[Key] = field(default_factory=frozenset)  # held, owned by another:
    # in the middle of a sync; it stops after its batch and the next beat releases it


class Fleet:
    def __init__(self, daemon_id: str) -> None:
        self.id = daemon_id
        # The rendezvous share is recomputed only when the live daemons or the sources change.
        self._cached: tuple[frozenset[str], frozenset[Key], frozenset[Key]] | None = None
        self._renewed = -RENEW_EVERY  # time.monotonic() of the last renewal
        # The leases held after the last step that committed (None: read them again).
        # Only this daemon's claims give it a lease; others only ever take one away, so
        # while the number it holds is the number it left, they are the same rows, and a
        # beat reads a count instead of every row it holds.
        self._held: frozenset[Key] | None = None

    def wanted(self, keys: frozenset[Key], live: frozenset[str]) -> frozenset[Key]:
        cached = self._cached
        if cached is not None and cached[0] == live and cached[1] == keys:
            return cached[2]
        by_key = {source_key(kind, name): (kind, name) for kind, name in keys}
        mine = frozenset(by_key[k] for k in share(by_key, live, self.id))
        self._cached = (live, keys, mine)
        return mine

    def step(
        self, conn: Connection, keys: frozenset[Key], busy: frozenset[Key], *, claim: bool = True
    ) -> FleetView:
        """One beat's worth of lease work in ``conn``'s transaction (the heartbeat itself is
        written before, in its own: a claim that waits on another daemon's batch must not
        make this daemon look dead)."""
        live = frozenset(d.id for d in leases.live_daemons(conn)) | {self.id}
        known, self._held = self._held, None  # set again once this step is done
        if time.monotonic() - self._renewed >= RENEW_EVERY:
            count = leases.renew_held(conn, self.id, LEASE)
            self._renewed = time.monotonic()
        else:
            count = leases.count_held(conn, self.id)
        if known is not None and count == len(known):
            held = set(known)
        else:
            held = leases.held_by(conn, self.id)
        wanted = self.wanted(keys, live)
        give_up = {k for k in held - wanted if k not in busy}
        if give_up:
            leases.release_many(conn, give_up, self.id)
            held -= give_up
        missing = wanted - held
        if claim and missing:
            leases.claim_many(conn, missing, self.id, LEASE)
            held = leases.held_by(conn, self.id)
            stuck = missing - held
            if stuck and (ended := leases.end_stale_holders(conn, stuck, self.id)):
                # Their locks are gone once the server has ended the sessions: the next
                # beat claims what they held.
                log.warning("fleet.stale_holder_sessions_ended", daemons=ended)
        self._held = frozenset(held)
        return FleetView(tuple(sorted(live)), self._held, frozenset(held - wanted))

    def forget(self) -> None:
        """The last step's transaction did not commit: what it saw is not what is stored."""
        self._held = None


class Leases:
    """The daemon's side: the leases it holds as far as it knows, and the view the heartbeat
    thread posted for the main loop to apply (watchers are started and stopped there)."""

    def __init__(self, daemon_id: str) -> None:
        self.id = daemon_id
        self._fleet = Fleet(daemon_id)
        self._lock = threading.Lock()
        self.held: frozenset[Key] = frozenset()
        self.handover: frozenset[Key] = frozenset()  # a sync of these stops after its batch
        self._posted: FleetView | None = None

    def beat(
        self,
        bind: Engine | Connection,
        keys: frozenset[Key],
        busy: frozenset[Key],
        *,
        claim: bool,
    ) -> bool:
        """Renew, release and claim (on the heartbeat thread); True when a view was posted."""
        try:
            with transaction(bind) as conn:
                view = self._fleet.step(conn, keys, busy, claim=claim)
        except Exception as err:  # the next beat tries again; held leases last LEASE
            self._fleet.forget()
            log.warning("fleet.step_failed", error=type(err).__name__)
            return False
        with self._lock:
            self._posted = view
        return True

    def take(self) -> tuple[FleetView, frozenset[Key], frozenset[Key]] | None:
        """The posted view, what it gained and what it lost; None when nothing was posted."""
        with self._lock:
            view, self._posted = self._posted, None
            if view is None:
                return None
            gained, lost = view.held - self.held, self.held - view.held
            self.held, self.handover = view.held, view.handover
        return view, gained, lost

    def lost(self, key: Key) -> None:
        """A sync found the lease gone (another daemon took it)."""
        with self._lock:
            self.held = self.held - {key}

    def stopping(self, engine: Engine, busy: list[Key], *, within: float | None = None) -> None:
        """SIGTERM: the others learn at once that this daemon is stopping, and every lease
        but those whose batch is still committing is free; ``daemon_stopped`` at the very
        end frees the rest.  Gives up after ``within`` seconds (the leases then expire)."""
        try:
            with engine.begin() as conn:
                if within is not None:
                    bounded(conn, within)
                leases.daemon_stopped(conn, self.id, keep=busy)
        except Exception as err:  # the database may be down: our leases then simply expire
            log.warning("daemon.handover_not_recorded", error=type(err).__name__)


def bounded(conn: Connection, seconds: float) -> None:
    """The rest of ``conn``'s transaction fails rather than wait past ``seconds`` per
    statement, for a lock included (PostgreSQL; SQLite's writers are this daemon's own)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT set_config('statement_timeout', :ms, true)"),
            {"ms": str(max(1, int(seconds * 1000)))},
        )


def end_abandoned_transactions(engine: Engine, daemon_id: str) -> None:
    """PostgreSQL ends a session of ours that sits in an open transaction for longer than a
    lease: a holder paused mid-batch (SIGSTOP, a frozen VM) would otherwise keep its row
    locks, and the new holder's writes of the same rows would wait until it wakes.  A
    daemon's transactions never idle: the network is read before a batch's one begins.
    The sessions carry the daemon's id, so that a holder paused in the middle of a
    pipelined statement, which that timeout does not cover, can be ended by the daemon
    taking its sources over (``leases.end_stale_holders``)."""
    if engine.dialect.name != "postgresql":
        return
    timeout_ms = int(LEASE.total_seconds() * 1000)
    name = leases.session_name(daemon_id)

    def on_connect(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
        cursor.execute("SELECT set_config('application_name', %s, false)", (name,))
        cursor.close()
        dbapi_connection.commit()  # type: ignore[attr-defined]

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before (migrations) take it too when reopened


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_predecessors(conn: Connection, daemon_id: str, host: str, *, alone: bool) -> list[str]:
    """Mark stopped the daemons that cannot be running any more, so that their sources are
    shared out now rather than when their heartbeat goes stale: every other one when this
    daemon is ``alone`` (SQLite's lock file says so), else those of this host whose process
    is gone (a daemon restarted after kill -9) or whose pid is ours (a container restarted)."""
    others = leases.unstopped(conn, daemon_id, None if alone else host)
    gone = [
        other for other, pid in others.items() if alone or pid == os.getpid() or not pid_alive(pid)
    ]
    leases.mark_stopped(conn, gone)
    return gone


def join(engine: Engine, daemon_id: str, *, alone: bool) -> None:
    """A daemon starting: its heartbeat row, and the daemons that cannot be running any
    more marked stopped (``clear_predecessors``).  ``alone``: SQLite's lock file says no
    other daemon uses this database, so whatever a killed predecessor still holds is free."""
    with engine.begin() as conn:
        if alone:
            leases.release_all(conn)
        leases.register_daemon(conn, daemon_id, socket.gethostname(), os.getpid())
        gone = clear_predecessors(conn, daemon_id, socket.gethostname(), alone=alone)
        if gone:
            daemon_log.info("daemon.predecessors_cleared", daemons=gone)


def leave(engine: Engine, daemon_id: str, *, within: float) -> None:
    """The last write of a stop: this daemon stopped, its remaining leases free.  Gives up
    after ``within`` seconds: the database may be down, and the leases then simply expire."""
    try:
        with engine.begin() as conn:
            bounded(conn, within)
            leases.daemon_stopped(conn, daemon_id)
    except Exception as err:
        daemon_log.warning("daemon.stop_not_recorded", error=type(err).__name__)
