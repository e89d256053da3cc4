"""Migration 0023 indexes the records a database already holds, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import insert

from syncd.domain.search_text import parse_query
from syncd.schema.tables import participants, records
from syncd.store import database, search_index


def test_upgrading_indexes_the_records_already_stored(db_url: str) -> None:
    engine = database.make_engine(db_url)
    cfg = database._alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0018")
        now = datetime(2024, 5, 1, tzinfo=UTC)
        conn.execute(
            insert(records),
            [
                {"id": 1, "key": "email:<a@x>", "kind": "email", "direction": "inbound",
                 "subject": "关于报价的问题", "snippet": "Café au lait", "body": None,
                 "location": None, "occurred_at": now,
                 "created_at": now},
                {"id": 2, "key": "logged:c1", "kind": "call", "direction": "outbound",
                 "subject": "Call", "snippet": None, "body": "discussed the renewal",
                 "location": "Zürich",
                 "occurred_at": now, "created_at": now},
            ],
        )  # fmt: skip
        conn.execute(
            insert(participants),
            [{"record_id": 1, "address": "wang@acme.cn", "name": "王伟", "role": "from",
              "external": 1}],
        )  # fmt: skip
    assert database.current_revision(engine) == "0018"
    database.upgrade(engine)
    with engine.connect() as conn:
        for query, expected in [
            ("报价", {1}), ("cafe", {1}), ("王伟", {1}), ("wang@acme.cn", {1}),
            ("renewal zurich", {2}), ("call", {2}), ("报价 renewal", set()),
        ]:  # fmt: skip
            assert search_index.matching_ids(conn, parse_query(query)) == expected, query
    engine.dispose()
