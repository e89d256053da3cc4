"""Source leases between daemons sharing a database: held, renewed, freed, taken over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from syncd.schema.tables import daemons

from syncd.store import health
from syncd.store.database import open_database

LEASE = timedelta(minutes=5)


def test_a_lease_is_held_by_one_daemon_until_it_stops_or_dies(db_url: str) -> None:
    engine = open_database(db_url)
    with engine.begin() as conn:
        health.register_daemon(conn, "a", "host-a", 1)
        health.register_daemon(conn, "b", "host-b", 2)
        assert health.claim(conn, "mailbox", "alice", "a", LEASE)
        assert not health.claim(conn, "mailbox", "alice", "b", LEASE)
        assert health.claim(conn, "mailbox", "alice", "a", LEASE)  # renewal
        assert health.claim(conn, "mailbox", "bob", "b", LEASE)
        # a stops beating (kill -9): b may take alice long before the lease runs out.
        conn.execute(
            update(daemons)
            .where(daemons.c.id == "a")
            .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        assert health.claim(conn, "mailbox", "alice", "b", LEASE)
        assert not health.claim(conn, "mailbox", "alice", "a", LEASE)
        assert [d.id for d in health.live_daemons(conn)] == ["b"]
        # A clean stop frees its leases at once.
        health.daemon_stopped(conn, "b")
        health.register_daemon(conn, "c", "host-c", 3)
        assert health.claim(conn, "mailbox", "bob", "c", LEASE)
        assert health.claim(conn, "mailbox", "alice", "c", LEASE)
    engine.dispose()
