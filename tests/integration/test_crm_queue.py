"""The CRM sink's queue on real SQLite and PostgreSQL: one row per subject, claims fenced by
epoch on the database's clock, a change during a push keeps the subject pending."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from syncd.schema.tables import crm_deliveries
from syncd.store import crm_queue as queue
from syncd.store import events
from syncd.store.database import open_database
from syncd.store.events import Event


def _emit(engine: object, *subjects: str, occurred: datetime | None = None) -> None:
    with engine.begin() as conn:  # type: ignore[attr-defined]
        events.emit_many(
            conn,
            [
                Event("record.updated", s, {"id": s}, occurred or datetime.now(UTC))
                for s in subjects
            ],
        )


def test_claims_are_fenced_and_a_change_during_a_push_stays_pending(db_url: str) -> None:
    engine = open_database(db_url)
    with engine.begin() as conn:
        queue.ensure(conn, ["bottle"])
    _emit(engine, "record:1", "record:2", "record:1", "task:7", "contact:abc")
    with engine.begin() as conn:
        assert queue.take_new(conn, "bottle", ["records"], None) == 5
        assert queue.take_new(conn, "bottle", ["records"], None) == 0
    with engine.connect() as conn:
        rows = conn.execute(select(crm_deliveries.c.subject)).scalars().all()
    assert sorted(rows) == ["record:1", "record:2"]  # one row per subject; no tasks, no contacts

    with engine.begin() as conn:
        first = queue.claim(conn, "bottle", "daemon-a", limit=10, lease=timedelta(seconds=0.2))
    # Oldest change first: record:1 changed again after record:2.
    assert [c.subject for c in first] == ["record:2", "record:1"]
    assert all(c.epoch == 1 for c in first)
    with engine.begin() as conn:
        assert queue.claim(conn, "bottle", "daemon-b", limit=10, lease=timedelta(seconds=60)) == []
    time.sleep(0.3)  # daemon-a stalls past its claim
    with engine.begin() as conn:
        second = queue.claim(conn, "bottle", "daemon-b", limit=10, lease=timedelta(seconds=60))
    assert sorted(c.epoch for c in second) == [2, 2]
    one = next(c for c in first if c.subject == "record:1")
    with engine.begin() as conn:
        assert not queue.done(conn, "bottle", one)  # fenced off: daemon-b holds it now
        assert not queue.fail(conn, "bottle", one, status=400, error="late")
    # A change arrives while daemon-b pushes record:1: its success keeps record:1 pending.
    _emit(engine, "record:1")
    with engine.begin() as conn:
        queue.take_new(conn, "bottle", ["records"], None)
    held = {c.subject: c for c in second}
    with engine.begin() as conn:
        assert queue.done(conn, "bottle", held["record:1"])
        assert queue.done(conn, "bottle", held["record:2"])
    with engine.connect() as conn:
        left = conn.execute(select(crm_deliveries.c.subject, crm_deliveries.c.state)).all()
    assert [tuple(r) for r in left] == [("record:1", "pending")]


def test_since_keeps_older_records_out_but_not_their_deletion(db_url: str) -> None:
    engine = open_database(db_url)
    with engine.begin() as conn:
        queue.ensure(conn, ["bottle"])
    old = datetime(2025, 6, 1, tzinfo=UTC)
    with engine.begin() as conn:
        events.emit_many(
            conn,
            [
                Event("record.created", "record:1", {}, old),
                Event("record.deleted", "record:2", {}, old),
                Event("record.created", "record:3", {}, datetime.now(UTC)),
            ],
        )
        queue.take_new(conn, "bottle", ["records", "tasks"], datetime(2026, 1, 1).date())
        subjects = sorted(conn.execute(select(crm_deliveries.c.subject)).scalars())
    assert subjects == ["record:2", "record:3"]
