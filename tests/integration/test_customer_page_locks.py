"""PostgreSQL: what the triggers of 0031 lock.  A link reads its record FOR KEY SHARE and a
move (an update of records.occurred_at) takes the row FOR UPDATE, the one mode that
conflicts with it, so a link never waits behind any other update of its record (a subject, a forget, a redaction),
a link that exists already (ON CONFLICT DO NOTHING, as capture and calendar sync re-link on
every pass) never deadlocks two writers, and whichever of a link and a move comes second
sees the other's work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, insert, select, text, update

from syncd.schema.tables import customers, record_customers, records
from syncd.store.database import open_database
from syncd.store.sql import insert_ignore
from tests.servers.insight_seed import seed

# Row locks are PostgreSQL's (SQLite has one writer): these run there alone.
pytestmark = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MOVED = NOW + timedelta(days=30)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_database(db_url)
    seed(engine, n_records=20, n_customers=2, now=NOW)
    with engine.begin() as conn:
        conn.execute(insert(customers).values(id=50, name="Second", created_at=NOW))
    try:
        yield engine
    finally:
        engine.dispose()


def _two_links(engine: Engine) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(record_customers.c.record_id, record_customers.c.customer_id)
            .order_by(record_customers.c.record_id)
            .limit(2)
        ).all()
    return [(r, c) for r, c in rows]


def _link(conn: Connection, record_id: int, customer_id: int) -> None:
    insert_ignore(
        conn,
        record_customers,
        [{"record_id": record_id, "customer_id": customer_id, "link": "contact"}],
        ["record_id", "customer_id"],
    )


def test_linking_waits_behind_no_unrelated_update_of_the_record(engine: Engine) -> None:
    (rid, cid), _ = _two_links(engine)
    with engine.connect() as a, engine.connect() as b:
        a.begin()
        a.execute(text("UPDATE records SET subject = 'x' WHERE id = :i"), {"i": rid})
        b.begin()
        b.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
        _link(b, rid, cid)  # the link exists already: re-linked as every pass does
        _link(b, rid, 50)  # a new link
        b.rollback()
        a.rollback()


@pytest.mark.parametrize(
    "change",
    [
        "subject = 'changed'",
        # A rescheduled meeting, calendar sync moving changed ones and re-linking the others:
        # the move rewrites its links (their copy of the time), and an insert of a link whose
        # row another transaction is rewriting waits for it, whatever the triggers lock.
        # Two daemons that each moved one meeting and re-link the other's still deadlock
        # (one is rolled back and retries); only links without the copy would avoid it.
        pytest.param(
            "occurred_at = occurred_at + interval '1 day'",
            marks=pytest.mark.xfail(strict=True, reason="a move rewrites its links' rows"),
        ),
    ],
)
def test_two_writers_each_updating_one_record_and_relinking_the_other_do_not_deadlock(
    engine: Engine, change: str
) -> None:
    (r1, c1), (r2, c2) = _two_links(engine)
    errors: list[BaseException] = []
    with engine.connect() as a, engine.connect() as b:
        a.begin()
        b.begin()
        for conn in (a, b):
            conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        a.execute(text(f"UPDATE records SET {change} WHERE id = :i"), {"i": r1})
        b.execute(text(f"UPDATE records SET {change} WHERE id = :i"), {"i": r2})

        def link(conn: Connection, rid: int, cid: int) -> None:
            try:
                _link(conn, rid, cid)
            except BaseException as err:  # reported by the assertion below
                errors.append(err)

        t = threading.Thread(target=link, args=(a, r2, c2))
        t.start()
        link(b, r1, c1)
        t.join()
        a.rollback()
        b.rollback()
    assert not errors, [str(e).splitlines()[0] for e in errors]


def _second_waits(engine: Engine, first: str) -> datetime:
    """One connection moves a record, the other links it to customer 50, ``first`` of the
    two uncommitted while the other runs; the link's copy of the time once both commit."""
    (rid, _), _ = _two_links(engine)

    def move(conn: Connection) -> None:
        conn.execute(update(records).where(records.c.id == rid).values(occurred_at=MOVED))

    def link(conn: Connection) -> None:
        conn.execute(insert(record_customers).values(record_id=rid, customer_id=50, link="manual"))

    steps = {"move": move, "link": link}
    second_name = "link" if first == "move" else "move"
    errors: list[BaseException] = []
    with engine.connect() as a, engine.connect() as b:
        a.begin()
        steps[first](a)
        b.begin()
        b.exec_driver_sql("SET LOCAL lock_timeout = '20s'")

        def run_second() -> None:
            try:
                steps[second_name](b)
                b.commit()
            except BaseException as err:  # reported by the assertion below
                errors.append(err)

        t = threading.Thread(target=run_second)
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), f"the {second_name} did not wait for the {first}"
        a.commit()
        t.join()
    assert not errors, [str(e).splitlines()[0] for e in errors]
    with engine.connect() as conn:
        return conn.scalar(
            select(record_customers.c.occurred_at).where(
                record_customers.c.record_id == rid, record_customers.c.customer_id == 50
            )
        )


def test_a_link_written_during_a_move_takes_the_moved_time(engine: Engine) -> None:
    assert _second_waits(engine, "move") == MOVED


def test_a_move_made_during_a_link_moves_the_new_link(engine: Engine) -> None:
    assert _second_waits(engine, "link") == MOVED
