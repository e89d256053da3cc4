"""Ranking of long mails on both engines, and migration 0033 with rows of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, insert

from syncd.domain.search_text import parse_query
from syncd.schema.tables import records
from syncd.store import database, search_index
from tests.servers.postgres import scratch_database

T0 = datetime(2024, 1, 1, tzinfo=UTC)
FILLER = " ".join(f"filler{i % 97} text{i % 13}" for i in range(1_000))  # ~13 kB


def test_a_mail_about_the_word_ranks_above_one_that_mentions_it_once(db_engine: Engine) -> None:
    """Two mails of the same length: one says "budget" once in its first line, the other
    discusses the budget 40 times after its quoted history's first 4,000 characters (id 1,
    older).  BM25 ranks the second first (SQLite does); it must not score 0."""
    about = FILLER + " " + " ".join(["budget approval"] * 40)
    once = "budget " + FILLER + " " + " ".join(["other approval"] * 40)
    rows = [
        {"id": rid, "key": f"m:{rid}", "kind": "email", "direction": "inbound",
         "subject": "Re: plan", "body": body, "occurred_at": T0 + timedelta(minutes=rid),
         "created_at": T0}
        for rid, body in ((1, about), (2, once))
    ]  # fmt: skip
    with db_engine.begin() as conn:
        conn.execute(insert(records), rows)
        search_index.rebuild(conn)
    with db_engine.connect() as conn:
        ranked = search_index.search(conn, parse_query("budget"))
    assert [rid for rid, _ in ranked] == [1, 2]
    assert all(score > 0 for _, score in ranked)


@pytest.mark.postgres
def test_0033_up_down_up_with_long_records(pg_admin: str) -> None:
    with scratch_database(pg_admin) as url:
        engine = database.make_engine(url)
        cfg = database._alembic_config()
        rows = [
            {"id": rid, "key": f"logged:c{rid}", "kind": "call", "direction": "outbound",
             "subject": f"call {rid}", "body": (FILLER + " tailword") if rid % 2 else "short",
             "occurred_at": T0, "created_at": T0}
            for rid in (1, 2, 31, 32, 33, 64, 65)
        ]  # fmt: skip
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0032")
            conn.execute(insert(records), rows)
            command.upgrade(cfg, "0033")
            assert search_index.matching_ids(conn, parse_query("tailword")) == {1, 31, 33, 65}
            command.downgrade(cfg, "0032")
            command.upgrade(cfg, "0033")
            assert search_index.matching_ids(conn, parse_query("tailword")) == {1, 31, 33, 65}
            assert search_index.matching_ids(conn, parse_query("short")) == {2, 32, 64}
            conn.execute(records.delete().where(records.c.id.in_([31, 32])))
            assert search_index.matching_ids(conn, parse_query("tailword")) == {1, 33, 65}
            assert search_index.matching_ids(conn, parse_query("short")) == {2, 64}
        engine.dispose()
