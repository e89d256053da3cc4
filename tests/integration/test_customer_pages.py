"""A customer's page is a range of the index on record_customers (customer_id, occurred_at,
record_id), read backwards for the page alone: the copy of each record's occurred_at the
links carry (migration 0031) is kept by the database on every path that links or moves a
record, and pages keep the records' own order (occurred_at, then id, newest first)."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import Connection, Engine, event, insert, select, text, update

from syncd.schema.tables import customers, record_customers, records
from syncd.store import database, record_pages
from syncd.store.database import open_database
from syncd.store.queries import list_records
from tests.conftest import World
from tests.servers.insight_seed import seed

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
INDEX = "ix_record_customers_customer_id_occurred_at_record_id"


def _truth(conn: Connection, customer_id: int) -> list[int]:
    """The customer's record ids newest first, from the records' own occurred_at."""
    return list(
        conn.scalars(
            select(records.c.id)
            .join(record_customers, record_customers.c.record_id == records.c.id)
            .where(record_customers.c.customer_id == customer_id)
            .order_by(records.c.occurred_at.desc(), records.c.id.desc())
        )
    )


def _explained(engine: Engine, conn: Connection, read: Any) -> str:
    """The plan of the one statement ``read`` runs, as text."""
    seen: list[tuple[str, Any]] = []

    def keep(_c: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        read()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    statement, parameters = seen[0]
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    return "\n".join(str(row[-1]) for row in rows)


def test_a_customer_page_is_a_range_of_the_index_not_a_sort(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        seed(engine, n_records=3000, n_customers=3, now=NOW)
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("ANALYZE")
        with engine.connect() as conn:
            truth = _truth(conn, 2)
            first = record_pages.page(conn, customer_id=2, limit=51)
            after = (first[-1]["occurred_at"], first[-1]["id"])
            for read in (
                lambda: record_pages.page(conn, customer_id=2, limit=51),
                lambda: record_pages.page(conn, customer_id=2, after=after, limit=51),
                lambda: list_records(conn, customer_id=2, limit=50),
            ):
                plan = _explained(engine, conn, read)
                assert INDEX in plan, plan
                if conn.dialect.name == "sqlite":
                    assert "TEMP B-TREE" not in plan, plan
                else:
                    assert plan.splitlines()[0].startswith("Limit"), plan
                    assert "Index Only Scan Backward using " + INDEX in plan, plan
                    assert "Sort" not in plan, plan
            # The records' own order, ties (the seed's threads) by id.
            assert [r["id"] for r in first] == truth[:51]
            second = record_pages.page(conn, customer_id=2, after=after, limit=51)
            assert [r["id"] for r in second] == truth[51:102]
            assert [r["id"] for r in list_records(conn, customer_id=2)] == truth
    finally:
        engine.dispose()


def test_pages_across_a_cursor_while_records_are_added(db_url: str) -> None:
    """Records captured between two pages: newer ones, and one at the very time of the
    cursor with a higher id (after it in the order: newer), never shift the next page."""
    engine = open_database(db_url)
    try:
        seed(engine, n_records=400, n_customers=2, now=NOW)
        with engine.connect() as conn:
            before = _truth(conn, 1)
            first = record_pages.page(conn, customer_id=1, limit=20)
        cursor = (first[-1]["occurred_at"], first[-1]["id"])
        with engine.begin() as conn:
            for n, at in enumerate((NOW + timedelta(days=1), cursor[0], NOW)):
                rid = conn.execute(
                    insert(records).values(
                        key=f"email:new{n}@c1.test",
                        kind="email",
                        direction="inbound",
                        subject="new",
                        occurred_at=at,
                        created_at=NOW,
                    )
                ).inserted_primary_key[0]
                conn.execute(
                    insert(record_customers).values(record_id=rid, customer_id=1, link="domain")
                )
        with engine.connect() as conn:
            rest: list[int] = []
            after = cursor
            while True:
                part = record_pages.page(conn, customer_id=1, after=after, limit=20)
                rest.extend(r["id"] for r in part)
                if len(part) < 20:
                    break
                after = (part[-1]["occurred_at"], part[-1]["id"])
        assert [r["id"] for r in first] + rest == before
    finally:
        engine.dispose()


def test_a_moved_record_moves_in_its_customer_s_page(db_url: str) -> None:
    """An update of records.occurred_at (as a rescheduled meeting or an edited logged
    record writes it) moves its links' copies, and a link added later takes the time."""
    engine = open_database(db_url)
    try:
        seed(engine, n_records=300, n_customers=2, now=NOW)
        with engine.begin() as conn:
            oldest = _truth(conn, 1)[-1]
            conn.execute(insert(customers).values(id=50, name="Second", created_at=NOW))
            conn.execute(
                insert(record_customers).values(record_id=oldest, customer_id=50, link="manual")
            )
            conn.execute(
                update(records)
                .where(records.c.id == oldest)
                .values(occurred_at=NOW + timedelta(days=30))
            )
        with engine.connect() as conn:
            for customer in (1, 50):
                page = record_pages.page(conn, customer_id=customer, limit=3)
                assert page[0]["id"] == oldest
                assert page[0]["occurred_at"] == NOW + timedelta(days=30)
                assert [r["id"] for r in page] == _truth(conn, customer)[:3]
    finally:
        engine.dispose()


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    cfg = database._alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_the_migration_fills_every_link_in_batches_and_goes_back(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        seed(engine, n_records=500, n_customers=5, now=NOW)
        with engine.connect() as conn:
            truth = {c: _truth(conn, c) for c in range(1, 6)}
        _migrate(engine, "0030", down=True)
        assert "occurred_at" not in [c["name"] for c in _columns(engine)]
        _migrate(engine, "0031")
        _assert_filled(engine, truth)
        # Batches of 7 record ids: ranges that cut customers and runs of ids.
        migration = importlib.import_module("syncd.schema.migrations.versions.0031_customer_pages")
        with engine.begin() as conn:
            conn.execute(update(record_customers).values(occurred_at=None))
            migration.backfill(conn, 7)
        _assert_filled(engine, truth)
    finally:
        engine.dispose()


def _assert_filled(engine: Engine, truth: dict[int, list[int]]) -> None:
    with engine.connect() as conn:
        stale = conn.scalar(
            text(
                "SELECT count(*) FROM record_customers rc JOIN records r "
                "ON r.id = rc.record_id WHERE rc.occurred_at IS NULL "
                "OR rc.occurred_at <> r.occurred_at"
            )
        )
        assert stale == 0
        for customer, ids in truth.items():
            page = record_pages.page(conn, customer_id=customer, limit=1000)
            assert [r["id"] for r in page] == ids


def _columns(engine: Engine) -> list[Any]:
    from sqlalchemy import inspect

    return list(inspect(engine).get_columns("record_customers"))


def test_an_edited_logged_record_moves_in_the_customer_s_records(world: World) -> None:
    world.rep("alice")
    world.customers(
        "customer,domains,contact_name,contact_email\nAcme Corp,acme.com,Wile Coyote,wile@acme.com\n"
    )
    world.write_config()
    made = []
    for day in (1, 2, 3):
        out = world.cli(
            "records",
            "add",
            "--kind",
            "call",
            "--owner",
            "alice@example.com",
            "--contact",
            "wile@acme.com",
            "--at",
            f"2026-03-0{day}T10:00:00Z",
            "--subject",
            f"call {day}",
            "--json",
        )
        made.append(json.loads(out.stdout)["id"])
    listed = [r["id"] for r in world.records("--customer", "Acme Corp")]
    assert listed == made[::-1]
    world.cli("records", "edit", str(made[0]), "--at", "2026-03-09T10:00:00Z")
    listed = [r["id"] for r in world.records("--customer", "Acme Corp")]
    assert listed == [made[0], made[2], made[1]]
    assert [r["id"] for r in world.records("--customer", "Acme Corp", "--limit", "1")] == [made[0]]


def test_a_link_s_copied_time_moves_no_change_counter(tmp_path: Any) -> None:
    # The first look's counter (migration 0032, SQLite) counts changes the rules read: the
    # copy of a record's time that 0031 writes into each new link is not one, and a link
    # capture adds must not cost the counter's UPDATE (issue #20's backfill speed).
    engine = open_database(f"sqlite:///{tmp_path / 'syncd.db'}")
    try:
        seed(engine, n_records=40, n_customers=2, now=NOW)

        def counter(conn: Connection) -> int:
            return int(conn.scalar(text("SELECT value FROM settings WHERE name = 'data_changes'")))

        with engine.begin() as conn:
            rid, cid = conn.execute(
                select(record_customers.c.record_id, record_customers.c.customer_id).limit(1)
            ).one()
            other = conn.scalar(select(customers.c.id).where(customers.c.id != cid).limit(1))
            before = counter(conn)
            conn.execute(
                insert(record_customers).values(record_id=rid, customer_id=other, link="manual")
            )
            copied = conn.scalar(
                select(record_customers.c.occurred_at).where(
                    record_customers.c.record_id == rid, record_customers.c.customer_id == other
                )
            )
            assert copied is not None  # 0031's trigger filled it
            assert counter(conn) == before
            conn.execute(
                update(records)
                .where(records.c.id == rid)
                .values(occurred_at=NOW - timedelta(days=1))
            )
            assert (
                counter(conn) == before + 1
            )  # the record moved: one change, its links' copies none
    finally:
        engine.dispose()
