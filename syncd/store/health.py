"""Daemon heartbeats, source health and source leases.

A lease lets several daemons share one PostgreSQL: a daemon syncs a mailbox or calendar
only while it holds the source's lease, taken and renewed in one UPDATE, so two daemons
never sync the same source at once and a dead daemon's sources pass to another one when
its leases run out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, or_, select, update

from syncd.schema.tables import daemons, source_health
from syncd.store.sql import insert_ignore

# A daemon whose heartbeat is older than this is not running.
HEARTBEAT_STALE = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    summary: str


def register_daemon(conn: Connection, daemon_id: str, host: str, pid: int) -> None:
    now = datetime.now(UTC)
    conn.execute(
        daemons.insert().values(
            id=daemon_id, host=host, pid=pid, started_at=now, heartbeat_at=now, summary="starting"
        )
    )


def heartbeat(conn: Connection, daemon_id: str, summary: str) -> None:
    conn.execute(
        update(daemons)
        .where(daemons.c.id == daemon_id)
        .values(heartbeat_at=datetime.now(UTC), summary=summary)
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
    now = now or datetime.now(UTC)
    rows = conn.execute(
        select(daemons)
        .where(daemons.c.stopped_at.is_(None), daemons.c.heartbeat_at > now - HEARTBEAT_STALE)
        .order_by(daemons.c.started_at)
    )
    return [DaemonInfo(r.id, r.host, r.pid, r.started_at, r.heartbeat_at, r.summary) for r in rows]


def claim(conn: Connection, kind: str, name: str, daemon_id: str, lease: timedelta) -> bool:
    """Take or renew the lease on a source; False while another daemon holds it."""
    now = datetime.now(UTC)
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
                source_health.c.lease_until < now,
                # A holder that stopped or stopped beating (kill -9, a lost host) holds nothing.
                ~exists().where(
                    daemons.c.id == source_health.c.daemon_id,
                    daemons.c.stopped_at.is_(None),
                    daemons.c.heartbeat_at > now - HEARTBEAT_STALE,
                ),
            ),
        )
        .values(daemon_id=daemon_id, lease_until=now + lease)
    ).rowcount
    return bool(taken)


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
    return {
        (row["kind"], row["name"]): dict(row)
        for row in conn.execute(select(source_health)).mappings()
    }
