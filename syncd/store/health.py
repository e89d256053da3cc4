"""Daemon heartbeats, source health and source leases.

A lease lets several daemons share one PostgreSQL: a daemon syncs a mailbox or calendar
only while it holds the source's lease, taken and renewed in one UPDATE, so two daemons
never sync the same source at once and a dead daemon's sources pass to another one when
its leases run out.

Every time that decides who holds what is the database's clock, never a host's: hosts
drift, and one running 31 s fast would see every other daemon's heartbeat as stale.  Each
batch renews the lease inside its own transaction (``fence``), so a daemon that lost its
lease cannot commit for that source any more: the batch rolls back.

The read side (``DaemonInfo``, ``live_daemons``, ``health_rows``) is plain SQL in
store/status_read.py, so that ``syncd status`` reads without SQLAlchemy; the functions
here run it on a ``Connection``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, literal_column, or_, select, update

from syncd.errors import SyncdError
from syncd.schema.tables import daemons, source_health
from syncd.schema.types import UtcDateTime
from syncd.store import status_read
from syncd.store.sql import insert_ignore
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


def daemon_stopped(conn: Connection, daemon_id: str) -> None:
    now = datetime.now(UTC)
    conn.execute(
        update(daemons).where(daemons.c.id == daemon_id).values(stopped_at=now, summary="stopped")
    )
    # Leases of a daemon that stopped cleanly are free at once.
    conn.execute(
        update(source_health)
        .where(source_health.c.daemon_id == daemon_id)
        .values(daemon_id=None, lease_until=None)
    )


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
            or_(
                source_health.c.daemon_id.is_(None),
                source_health.c.daemon_id == daemon_id,
                source_health.c.lease_until < db_now(conn),
                # A holder that stopped or stopped beating (kill -9, a lost host) holds nothing.
                ~exists().where(
                    daemons.c.id == source_health.c.daemon_id,
                    daemons.c.stopped_at.is_(None),
                    daemons.c.heartbeat_at > db_now(conn, -HEARTBEAT_STALE),
                ),
            ),
        )
        .values(daemon_id=daemon_id, lease_until=db_now(conn, lease))
    ).rowcount
    return bool(taken)


def fence(conn: Connection, kind: str, name: str, daemon_id: str, lease: timedelta) -> None:
    """Renew our lease inside a batch's transaction, or raise LeaseLost to roll it back.

    The holder is the fencing token: a lease that ran out while nobody took it is still
    ours (a calendar is read whole before its one save, which may take longer than the
    lease), and only another daemon's claim, which changes the holder, fences us out.
    On PostgreSQL this UPDATE and claim's both update the one row: whichever comes second
    waits for the first's transaction and re-checks its condition on the row as committed,
    so a claim cannot slip in between this check and the batch's commit (it finds the
    lease just renewed), nor can a fence succeed after a claim (it finds another holder).
    SQLite has one writer at a time.
    """
    renewed = conn.execute(
        update(source_health)
        .where(
            source_health.c.kind == kind,
            source_health.c.name == name,
            source_health.c.daemon_id == daemon_id,
        )
        .values(lease_until=db_now(conn, lease))
    ).rowcount
    if not renewed:
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
