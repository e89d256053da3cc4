"""Daemon heartbeats and source leases (with the schedule state the lease holder writes beside them).

A lease lets several daemons share one PostgreSQL: a daemon syncs a mailbox or calendar
only while it holds the source's lease, taken and renewed in one UPDATE, so two daemons
never sync the same source at once and a dead daemon's sources pass to another one when
its leases run out.

Which daemon should hold a source is decided by rendezvous hashing over the live daemons
(syncd/domain/assignment.py, syncd/engine/fleet.py); the functions here that take, renew
and free many leases at once (``renew_all``, ``claim_many``, ``release_many``) are what
a heartbeat runs, a few statements whatever the number of sources.

Every time that decides who holds what is the database's clock, never a host's: hosts
drift, and one running 31 s fast would see every other daemon's heartbeat as stale.  Each
batch renews the lease inside its own transaction (``fence``), so a daemon that lost its
lease cannot commit for that source any more: the batch rolls back.

The read side (``DaemonInfo``, ``live_daemons``, ``health_rows``) is plain SQL in
store/status_read.py, so that ``syncd status`` reads without SQLAlchemy; the functions
here run it on a ``Connection``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError

from syncd.errors import SyncdError
from syncd.schema.tables import daemons, source_health
from syncd.schema.types import UtcDateTime
from syncd.store import status_read
from syncd.store.sql import chunks, insert_ignore
from syncd.store.status_read import HEARTBEAT_STALE, DaemonInfo


class LeaseLost(SyncdError):
    """This daemon no longer holds the source's lease: another one may be syncing it.

    Raised inside a batch's transaction, so the batch rolls back.  Nothing is lost: the
    cursor did not move, and the new holder reads the same messages again.
    """


def db_now(conn: Connection, offset: timedelta = timedelta(0)) -> ColumnElement[datetime]:
    """The database server's current time, plus ``offset``, as an SQL expression."""
    seconds = float(offset.total_seconds())  # a float we made: safe to write into the SQL
    if conn.dialect.name == "sqlite":
        # SQLite has no timestamp type: UtcDateTime stores UTC text as
        # "YYYY-MM-DD HH:MM:SS.ffffff", so the expression writes that very format (%f has
        # milliseconds) and text comparison orders it correctly against stored values.
        sql = f"(strftime('%Y-%m-%d %H:%M:%f', 'now', '{seconds:+.3f} seconds') || '000')"
    else:
        # clock_timestamp(), not now(): the time of this statement, not of the transaction's
        # start, which matters for a check made at the end of a long batch.
        sql = f"(clock_timestamp() + make_interval(secs => {seconds:.6f}))"
    return literal_column(sql, type_=UtcDateTime())


def database_time(conn: Connection) -> datetime:
    value = conn.execute(select(db_now(conn))).scalar_one()
    assert isinstance(value, datetime)
    return value


def register_daemon(conn: Connection, daemon_id: str, host: str, pid: int) -> None:
    conn.execute(
        daemons.insert().values(
            id=daemon_id,
            host=host,
            pid=pid,
            started_at=db_now(conn),
            heartbeat_at=db_now(conn),
            summary="starting",
        )
    )


def heartbeat(conn: Connection, daemon_id: str, summary: str) -> None:
    conn.execute(
        update(daemons)
        .where(daemons.c.id == daemon_id)
        .values(heartbeat_at=db_now(conn), summary=summary)
    )


def daemon_stopped(
    conn: Connection, daemon_id: str, *, keep: Iterable[tuple[str, str]] = ()
) -> None:
    """The daemon is stopping: the others leave it out of the assignment at once, and every
    lease but ``keep`` (the sources whose batch in hand is still committing) is free."""
    conn.execute(
        update(daemons)
        .where(daemons.c.id == daemon_id)
        .values(stopped_at=db_now(conn), summary="stopped")
    )
    kept = set(keep)
    if not kept:
        conn.execute(
            update(source_health)
            .where(source_health.c.daemon_id == daemon_id)
            .values(daemon_id=None, lease_until=None)
        )
        return
    held = held_by(conn, daemon_id)
    release_many(conn, held - kept, daemon_id)


def mark_stopped(conn: Connection, daemon_ids: Iterable[str]) -> None:
    """Daemons known to be dead (a restarted daemon's killed predecessor on the same host):
    out of the assignment and their leases free now, not when their heartbeat goes stale."""
    ids = sorted(set(daemon_ids))
    if not ids:
        return
    conn.execute(
        update(daemons)
        .where(daemons.c.id.in_(ids), daemons.c.stopped_at.is_(None))
        .values(stopped_at=db_now(conn), summary="gone")
    )
    conn.execute(
        update(source_health)
        .where(source_health.c.daemon_id.in_(ids))
        .values(daemon_id=None, lease_until=None)
    )


def unstopped(conn: Connection, daemon_id: str, host: str | None = None) -> dict[str, int]:
    """The other daemons not marked stopped (of ``host`` only, when given): {id: pid}."""
    query = select(daemons.c.id, daemons.c.pid).where(
        daemons.c.stopped_at.is_(None), daemons.c.id != daemon_id
    )
    if host is not None:
        query = query.where(daemons.c.host == host)
    return {str(row.id): int(row.pid) for row in conn.execute(query)}


def live_daemons(conn: Connection, now: datetime | None = None) -> list[DaemonInfo]:
    return status_read.live_daemons(status_read.Reader.of(conn), now)


def claim(conn: Connection, kind: str, name: str, daemon_id: str, lease: timedelta) -> bool:
    """Take or renew the lease on a source; False while another daemon holds it."""
    now = datetime.now(UTC)  # only for updated_at, which nothing compares
    insert_ignore(
        conn,
        source_health,
        [{"kind": kind, "name": name, "state": "ok", "failures": 0, "updated_at": now}],
        ["kind", "name"],
    )
    taken = conn.execute(
        update(source_health)
        .where(
            source_health.c.kind == kind,
            source_health.c.name == name,
            _claimable(conn, daemon_id),
        )
        .values(**_taken_by(daemon_id), lease_until=db_now(conn, lease))
    ).rowcount
    return bool(taken)


def _claimable(conn: Connection, daemon_id: str) -> ColumnElement[bool]:
    """A source ``daemon_id`` may take: free, its own, its lease ran out, or its holder
    stopped beating (kill -9, a lost host).  A holder that is stopping (SIGTERM) still holds
    what it has not released: it commits the batch in hand first, then frees the rest."""
    return or_(
        source_health.c.daemon_id.is_(None),
        source_health.c.daemon_id == daemon_id,
        source_health.c.lease_until < db_now(conn),
        ~exists().where(
            daemons.c.id == source_health.c.daemon_id,
            daemons.c.heartbeat_at > db_now(conn, -HEARTBEAT_STALE),
        ),
    )


def fence(
    conn: Connection,
    kind: str,
    name: str,
    daemon_id: str,
    lease: timedelta,
    epoch: int | None = None,
) -> None:
    """Renew our lease inside a batch's transaction, or raise LeaseLost to roll it back.

    The holder and the lease's ``epoch`` (when given: the one the sync began under) are the
    fencing token: a lease that ran out while nobody took it is still ours (a calendar is
    read whole before its one save, which may take longer than the lease), and only another
    daemon's claim, which changes the holder and the epoch, fences us out, even once the
    lease has come back to us (a paused holder that is the rendezvous owner again).
    On PostgreSQL this UPDATE and claim's both update the one row: whichever comes second
    waits for the first's transaction and re-checks its condition on the row as committed,
    so a claim cannot slip in between this check and the batch's commit (it finds the
    lease just renewed), nor can a fence succeed after a claim (it finds another holder).
    SQLite has one writer at a time.
    """
    if not renew(conn, kind, name, daemon_id, lease, epoch):
        raise LeaseLost(
            f"{kind} {name}: the lease passed to another daemon; this batch was not saved",
            hint="nothing is lost: the daemon holding the lease now syncs it from the same cursor",
        )


def set_health(
    conn: Connection,
    kind: str,
    name: str,
    daemon_id: str,
    *,
    state: str,
    reason: str | None = None,
    retry_at: datetime | None = None,
    failures: int = 0,
) -> None:
    conn.execute(
        update(source_health)
        .where(
            and_(
                source_health.c.kind == kind,
                source_health.c.name == name,
                source_health.c.daemon_id == daemon_id,
            )
        )
        .values(
            state=state,
            reason=reason,
            retry_at=retry_at,
            failures=failures,
            updated_at=datetime.now(UTC),
        )
    )


def release_all(conn: Connection) -> None:
    """Free every lease: for a daemon that knows it is the only one (SQLite's lock file)."""
    conn.execute(update(source_health).values(daemon_id=None, lease_until=None))


def renew(
    conn: Connection,
    kind: str,
    name: str,
    daemon_id: str,
    lease: timedelta,
    epoch: int | None = None,
) -> bool:
    """Extend a lease we hold (under ``epoch``, when given); False when another daemon took
    it since (nothing is changed)."""
    query = update(source_health).where(
        source_health.c.kind == kind,
        source_health.c.name == name,
        source_health.c.daemon_id == daemon_id,
    )
    if epoch is not None:
        query = query.where(source_health.c.lease_epoch == epoch)
    return bool(conn.execute(query.values(lease_until=db_now(conn, lease))).rowcount)


def lease_epoch(conn: Connection, kind: str, name: str) -> int:
    """The lease's generation now: a sync reads it as it begins and fences with it."""
    found = conn.scalar(
        select(source_health.c.lease_epoch).where(
            source_health.c.kind == kind, source_health.c.name == name
        )
    )
    return int(found or 0)


def _taken_by(daemon_id: str) -> dict[str, Any]:
    """The values of a claim: the holder and its lease, and a new epoch unless the row was
    already ours (taking back our own lease, run out while nobody took it, is a renewal)."""
    return {
        "daemon_id": daemon_id,
        "lease_epoch": case(
            (source_health.c.daemon_id == daemon_id, source_health.c.lease_epoch),
            else_=source_health.c.lease_epoch + 1,
        ),
    }


# --- the fleet: every lease of a daemon at once -----------------------------------------------
# A daemon with thousands of sources renews, claims and releases them with a few statements
# per heartbeat, never one per source.


def held_by(conn: Connection, daemon_id: str) -> set[tuple[str, str]]:
    rows = conn.execute(
        select(source_health.c.kind, source_health.c.name).where(
            source_health.c.daemon_id == daemon_id
        )
    )
    return {(str(row.kind), str(row.name)) for row in rows}


def renew_all(conn: Connection, daemon_id: str, lease: timedelta) -> set[tuple[str, str]]:
    """Extend every lease ``daemon_id`` holds (one UPDATE); the sources it still holds."""
    renew_held(conn, daemon_id, lease)
    return held_by(conn, daemon_id)


def renew_held(conn: Connection, daemon_id: str, lease: timedelta) -> int:
    """Extend every lease ``daemon_id`` holds (one UPDATE); how many it holds."""
    return int(
        conn.execute(
            update(source_health)
            .where(source_health.c.daemon_id == daemon_id)
            .values(lease_until=db_now(conn, lease))
        ).rowcount
    )


def count_held(conn: Connection, daemon_id: str) -> int:
    """How many leases ``daemon_id`` holds: one row read, however many they are."""
    found = conn.scalar(
        select(func.count())
        .select_from(source_health)
        .where(source_health.c.daemon_id == daemon_id)
    )
    return int(found or 0)


def _by_kind(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind, name in sorted(set(keys)):
        out.setdefault(kind, []).append(name)
    return out


def claim_many(
    conn: Connection, keys: Iterable[tuple[str, str]], daemon_id: str, lease: timedelta
) -> None:
    """Take every lease of ``keys`` that is free (as ``claim``), a chunk per statement;
    ``held_by`` then says which were taken."""
    wanted = _by_kind(keys)
    now = datetime.now(UTC)  # only for updated_at, which nothing compares
    for kind, names in wanted.items():
        for part in chunks(names):
            # Only the rows that do not exist yet: an INSERT that meets a row another
            # daemon's open transaction changed waits for that transaction (the unique
            # check), and a paused holder's may stay open for a while.
            known = set(
                conn.scalars(
                    select(source_health.c.name).where(
                        source_health.c.kind == kind, source_health.c.name.in_(list(part))
                    )
                )
            )
            new = [
                {"kind": kind, "name": n, "state": "ok", "failures": 0, "updated_at": now}
                for n in part
                if n not in known
            ]
            if new:
                insert_ignore(conn, source_health, new, ["kind", "name"])
            # SKIP LOCKED (PostgreSQL; SQLite has one writer and ignores it): a row another
            # daemon's open batch has locked is left for the next beat, so a holder paused
            # inside a transaction (a stopped VM) cannot stall this claim and our heartbeat.
            free = (
                select(source_health.c.name)
                .where(
                    source_health.c.kind == kind,
                    source_health.c.name.in_(list(part)),
                    _claimable(conn, daemon_id),
                )
                .with_for_update(skip_locked=True)
            )
            conn.execute(
                update(source_health)
                .where(
                    source_health.c.kind == kind,
                    source_health.c.name.in_(free.scalar_subquery()),
                    _claimable(conn, daemon_id),
                )
                .values(**_taken_by(daemon_id), lease_until=db_now(conn, lease))
            )


def session_name(daemon_id: str) -> str:
    """The ``application_name`` of a daemon's PostgreSQL sessions: how another daemon finds
    the sessions of one that stopped beating (63 bytes at most; an id is 32)."""
    return f"syncd {daemon_id}"[:63]


def end_stale_holders(
    conn: Connection, keys: Iterable[tuple[str, str]], daemon_id: str
) -> list[str]:
    """End the open transactions of the daemons that hold ``keys`` but stopped beating.

    A holder paused in the middle of a pipelined statement (SIGSTOP, a frozen VM) keeps its
    session "active": PostgreSQL's idle-in-transaction timeout never fires, and the lease
    rows it locked stay locked until it wakes, so ``claim_many`` skips them at every beat.
    A daemon whose heartbeat is ``HEARTBEAT_STALE`` old is treated as dead everywhere
    else; ending its sessions makes that true of its locks too.  When it wakes, its
    connection is gone and its batch was rolled back; its fence would refuse it anyway.
    Returns the ids whose sessions were ended.  PostgreSQL only; a role that may not signal
    those sessions (``pg_signal_backend``) leaves them to expire as before."""
    if conn.dialect.name != "postgresql":
        return []
    stale: set[str] = set()
    for kind, names in _by_kind(keys).items():
        for part in chunks(names):
            stale.update(
                conn.scalars(
                    select(source_health.c.daemon_id)
                    .distinct()
                    .where(
                        source_health.c.kind == kind,
                        source_health.c.name.in_(list(part)),
                        source_health.c.daemon_id.is_not(None),
                        source_health.c.daemon_id != daemon_id,
                        ~exists().where(
                            daemons.c.id == source_health.c.daemon_id,
                            daemons.c.heartbeat_at > db_now(conn, -HEARTBEAT_STALE),
                        ),
                    )
                )
            )
    if not stale:
        return []
    names = sorted(session_name(d) for d in stale if d)
    try:
        with conn.begin_nested():
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = ANY(:names) AND xact_start IS NOT NULL"
                    " AND pid <> pg_backend_pid()"
                ),
                {"names": names},
            )
    except DBAPIError:  # not allowed to signal them: their leases wait for them to wake
        return []
    return sorted(d for d in stale if d)


def release_many(conn: Connection, keys: Iterable[tuple[str, str]], daemon_id: str) -> None:
    """Give up our leases of ``keys`` (a handover to their new owner), a chunk per statement."""
    for kind, names in _by_kind(keys).items():
        for part in chunks(names):
            conn.execute(
                update(source_health)
                .where(
                    source_health.c.kind == kind,
                    source_health.c.name.in_(list(part)),
                    source_health.c.daemon_id == daemon_id,
                )
                .values(daemon_id=None, lease_until=None)
            )


def release(conn: Connection, kind: str, name: str, daemon_id: str) -> None:
    conn.execute(
        update(source_health)
        .where(
            source_health.c.kind == kind,
            source_health.c.name == name,
            source_health.c.daemon_id == daemon_id,
        )
        .values(daemon_id=None, lease_until=None)
    )


def health_rows(conn: Connection) -> dict[tuple[str, str], dict[str, Any]]:
    return status_read.health_rows(status_read.Reader.of(conn))
