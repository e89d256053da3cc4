"""A server's searches reuse a term's count of records while the index is unchanged, and
count again once anything is indexed: the scores stay those of ``records search``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from syncd.domain.search_text import parse_query
from syncd.schema.tables import record_customers, records
from syncd.store import search_index
from syncd.store.database import open_database
from tests.servers.insight_seed import seed

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_counts_are_reused_until_the_index_changes(tmp_path: Any) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'syncd.db'}")
    counted: list[str] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if "count(*)" in statement and "MATCH" in statement:
            counted.append(statement)

    try:
        seed(engine, n_records=400, n_customers=4, now=NOW)
        with engine.begin() as conn:
            search_index.rebuild(conn)
        query = parse_query("customer 2")
        event.listen(engine, "before_cursor_execute", watch)
        with engine.connect() as conn:
            fresh = search_index.search(conn, query, limit=50)
            assert len(counted) == 2  # a count for each of the two words
            first = search_index.search(conn, query, limit=50, reader=True)
            again = search_index.search(conn, query, limit=50, reader=True)
        assert first == again == fresh and len(fresh) == 50
        assert len(counted) == 4  # the reader's first search counted; its second did not
        with engine.begin() as conn:  # a record more with both words: both counts change
            rid = conn.execute(
                records.insert().values(
                    key="email:<extra@c2.test>", kind="email", direction="inbound",
                    subject="Customer 2 again", occurred_at=NOW, created_at=NOW,
                )
            ).inserted_primary_key[0]  # type: ignore[index]  # fmt: skip
            conn.execute(
                record_customers.insert().values(record_id=rid, customer_id=2, link="domain")
            )
            search_index.reindex_records(conn, [rid])
        with engine.connect() as conn:
            after = search_index.search(conn, query, limit=50, reader=True)
            assert len(counted) == 6  # counted again
            assert after == search_index.search(conn, query, limit=50)
        assert after != fresh
    finally:
        engine.dispose()
