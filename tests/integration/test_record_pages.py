"""The API's record pages: one statement a page, and the same records, in the same shape
and order, as the CLI's reader (``records list --json``) gives them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, insert, select

from syncd.schema.tables import (
    customers,
    meeting_sources,
    participants,
    provenance,
    record_customers,
    records,
)
from syncd.store import record_pages
from syncd.store.database import open_database
from syncd.store.queries import list_records
from tests.servers.insight_seed import seed

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    return seen


def _extras(engine: Engine) -> None:
    """What the seed leaves out: a record of two customers (the later one first by name),
    participants written out of address order, two mailboxes and a calendar source."""
    with engine.begin() as conn:
        first = conn.scalars(
            select(records.c.id)
            .join(record_customers, record_customers.c.record_id == records.c.id)
            .where(record_customers.c.customer_id == 1)
            .order_by(records.c.occurred_at.desc())
        ).first()
        meeting = conn.scalars(
            select(records.c.id)
            .join(record_customers, record_customers.c.record_id == records.c.id)
            .where(record_customers.c.customer_id == 1, records.c.kind == "meeting")
        ).first()
        assert first is not None and meeting is not None
        conn.execute(insert(customers).values(id=900, name="Aardvark Ltd", created_at=NOW))
        conn.execute(
            insert(record_customers).values(record_id=first, customer_id=900, link="manual")
        )
        for address, role in (("zed@c1.test", "cc"), ("amy@c1.test", "cc")):
            conn.execute(
                insert(participants).values(
                    record_id=first, address=address, name="Ä Name", role=role, external=1
                )
            )
        for mailbox, uid in (("zz", 7), ("aa", 8)):
            conn.execute(
                insert(provenance).values(
                    record_id=first, mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=uid
                )
            )
        for href in ("b.ics", "a.ics"):
            conn.execute(
                insert(meeting_sources).values(
                    record_id=meeting, calendar="rep1", url="http://dav.test/rep1/", href=href
                )
            )


def test_a_page_is_one_statement_and_the_cli_s_records(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        seed(engine, n_records=600, n_customers=3, now=NOW)
        _extras(engine)
        with engine.connect() as conn:
            expected = list_records(conn, customer_id=1)
            statements = _statements(engine)
            whole = record_pages.page(conn, customer_id=1, limit=1000)
            assert len(statements) == 1
            assert whole == expected
            assert any(len(r["customers"]) == 2 for r in whole)
            assert any(r["sources"] and "calendar" in r["sources"][0] for r in whole)
            # Keyset pages of 7, each one statement, give the same records once each.
            paged: list[dict[str, Any]] = []
            after = None
            statements.clear()
            while True:
                part = record_pages.page(conn, customer_id=1, after=after, limit=7)
                paged.extend(part)
                if len(part) < 7:
                    break
                after = (part[-1]["occurred_at"], part[-1]["id"])
            assert len(statements) == len(paged) // 7 + 1
            assert paged == expected
            # The other filters narrow the same statement.
            since = NOW - timedelta(days=100)
            narrowed = record_pages.page(
                conn, customer_id=1, kinds=["meeting"], since=since, until=NOW, limit=1000
            )
            assert narrowed == [
                r for r in expected if r["kind"] == "meeting" and since <= r["occurred_at"] < NOW
            ]
            assert narrowed
            one = expected[3]["id"]
            assert record_pages.page(conn, ids=[one]) == [expected[3]]
    finally:
        engine.dispose()
