"""A beat's writes: the heartbeat row, the quiet polls and the fleet step, each in its own
transaction, on one connection taken from the pool once (on PostgreSQL each checkout costs
a round trip: the pool pings the server first)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import event, select

from syncd.engine.fleet import Leases
from syncd.engine.heartbeat import Heartbeat
from syncd.engine.poll_ledger import PollLedger
from syncd.metrics import Metrics
from syncd.notify import Notifier
from syncd.schema.tables import daemons, source_states
from syncd.store import leases
from syncd.store.database import open_database


class _Quiet:
    kind = "mailbox"
    name = "alice"

    def unchanged(self) -> list[str] | None:
        return ["INBOX"]


def test_a_beat_writes_in_three_transactions_on_one_checkout(db_url: str) -> None:
    engine = open_database(db_url)
    with engine.begin() as conn:
        leases.register_daemon(conn, "me", "host", 1)
    fleet = Leases("me")
    polls = PollLedger(clock=lambda: datetime(2026, 12, 7, 9, 30, tzinfo=UTC))
    alarm = threading.Event()
    heartbeat = Heartbeat(
        "me", fleet, polls, Metrics(), Notifier(""), alarm=alarm, stopping=threading.Event()
    )
    keys = frozenset({("mailbox", "alice")})
    heartbeat.write(engine, "first", keys)  # claims alice
    assert fleet.take() is not None and fleet.held == keys
    assert polls.quiet(_Quiet())
    checkouts: list[object] = []
    event.listen(engine.pool, "checkout", lambda *args: checkouts.append(args))
    commits: list[object] = []
    event.listen(engine, "commit", lambda *args: commits.append(args))
    alarm.clear()
    heartbeat.write(engine, "second", keys)
    assert len(checkouts) == 1 and len(commits) == 3
    assert alarm.is_set() and len(polls) == 0
    with engine.connect() as conn:
        assert conn.scalar(select(daemons.c.summary).where(daemons.c.id == "me")) == "second"
        assert conn.scalar(select(source_states.c.last_success_at)) is not None
    engine.dispose()
