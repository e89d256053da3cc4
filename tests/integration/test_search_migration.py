"""Migration 0023 indexes the records a database already holds, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import Engine, insert, text

from syncd.domain.search_text import parse_query, tsvector
from syncd.schema.tables import participants, records
from syncd.store import database, search_index
from tests.servers.postgres import scratch_database


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


def test_upgrading_drops_the_positions_of_an_index_made_with_them(db_url: str) -> None:
    """Migration 0026 converts an index made by 0023 with positions, in place."""
    engine = database.make_engine(db_url)
    cfg = database._alembic_config()
    now = datetime(2024, 5, 1, tzinfo=UTC)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0025")
        conn.execute(
            insert(records),
            [{"id": 1, "key": "logged:c1", "kind": "call", "direction": "outbound",
              "subject": "关于报价的问题", "body": "the price list, the list price",
              "occurred_at": now, "created_at": now}],
        )  # fmt: skip
        terms = search_index.current_terms(conn, [1])[1]
        if conn.dialect.name == "sqlite":  # the layout 0023 made before 0026
            conn.exec_driver_sql("DROP TABLE record_search")
            conn.exec_driver_sql(
                "CREATE VIRTUAL TABLE record_search USING fts5(terms, content='', tokenize='ascii')"
            )
            conn.exec_driver_sql("INSERT INTO record_search (rowid, terms) VALUES (1, ?)", (terms,))
            conn.exec_driver_sql(
                "INSERT INTO record_search_terms (record_id, terms) VALUES (1, ?)",
                (search_index.pack(terms),),
            )
        else:
            positions = " ".join(f"'{t}':{i}" for i, t in enumerate(terms.split(), start=1))
            conn.exec_driver_sql(
                "INSERT INTO record_search (record_id, terms) VALUES (1, CAST(%s AS tsvector))",
                (positions,),
            )
    database.upgrade(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            made = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'record_search'"
            ).scalar()
            assert made is not None and "detail=none" in made
        else:  # 0026 stripped the positions, then 0033 kept the records 32 to a row
            assert conn.exec_driver_sql("SELECT block FROM record_search").scalars().all() == [0]
        for query, expected in [
            ("报价", {1}), ('"price list"', {1}), ('"list price"', {1}), ('"price the"', set()),
            ("price -\"the list\"", set()),
        ]:  # fmt: skip
            assert search_index.matching_ids(conn, parse_query(query)) == expected, query
        # The converted index still lets the record leave it.
        conn.execute(records.delete())
        assert search_index.matching_ids(conn, parse_query("price")) == set()
    engine.dispose()


@pytest.mark.postgres
def test_postgres_index_rows_a_record_and_back(pg_admin: str) -> None:
    """Migration 0033 (PostgreSQL) builds the index of 32 records a row from the records as
    stored, and its downgrade builds the row-per-record index again; both find the same."""
    with scratch_database(pg_admin) as url:
        _rows_a_record_and_back(database.make_engine(url))


def _rows_a_record_and_back(engine: Engine) -> None:
    cfg = database._alembic_config()
    now = datetime(2024, 5, 1, tzinfo=UTC)
    rows = [
        {"id": rid, "key": f"logged:c{rid}", "kind": "call", "direction": "outbound",
         "subject": f"关于报价 call {rid}", "body": "price list" if rid % 2 else "Café",
         "occurred_at": now, "created_at": now}
        for rid in (1, 2, 31, 32, 33, 70)
    ]  # fmt: skip
    queries = {"报价": {1, 2, 31, 32, 33, 70}, "cafe": {2, 32, 70}, '"price list"': {1, 31, 33}}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0032")
        conn.execute(insert(records), rows)
        conn.exec_driver_sql("DELETE FROM record_search")  # 0023's index filled as 0032 left it
        conn.execute(
            text(
                "INSERT INTO record_search (record_id, terms) SELECT i, CAST(t AS tsvector) "
                "FROM unnest(CAST(:ids AS integer[]), CAST(:ts AS text[])) AS u(i, t)"
            ),
            {
                "ids": [r["id"] for r in rows],
                "ts": [
                    tsvector(t)
                    for t in search_index.current_terms(conn, [1, 2, 31, 32, 33, 70]).values()
                ],
            },
        )
        command.upgrade(cfg, "0033")
        assert conn.exec_driver_sql(
            "SELECT block FROM record_search ORDER BY block"
        ).scalars().all() == [0, 1, 2]
        for query, expected in queries.items():
            assert search_index.matching_ids(conn, parse_query(query)) == expected, query
        command.downgrade(cfg, "0032")
        assert (
            conn.exec_driver_sql(
                "SELECT count(*) FROM record_search WHERE terms @@ CAST('报价' AS tsquery)"
            ).scalar()
            == 6
        )
        conn.execute(records.delete().where(records.c.id == 70))
        assert conn.exec_driver_sql("SELECT count(*) FROM record_search").scalar() == 5
    engine.dispose()
