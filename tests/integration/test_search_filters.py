"""A filter's few records are all read, whatever their age (PostgreSQL's bound on what a
ranked search reads is for searches without one)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from syncd.domain.search_text import index_terms, parse_query
from syncd.schema.tables import records
from syncd.store import search_index
from syncd.store.search_index import Filters

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.postgres
def test_a_reps_oldest_mails_are_found_under_the_owner_filter(pg_engine: Engine) -> None:
    """One rep's 4,000 mails of ~20 kB (store = "full"), all about an invoice; the newest
    3,960 say "overdue".  The owner filter has 4,000 records (<= NARROW): "invoice -overdue"
    must find the 40 oldest, ranked and counted alike."""
    rnd = random.Random(7)
    vocab = ["".join(rnd.choice("abcdefghiklmnoprstu") for _ in range(rnd.randint(3, 10)))
             for _ in range(20_000)]  # fmt: skip
    weights = [1 / (i + 1) for i in range(len(vocab))]
    for start in range(1, 4_001, 250):
        rows = []
        for rid in range(start, start + 250):
            words = rnd.choices(vocab, weights, k=3_000)
            words[1_500] = "invoice" if rid <= 40 else "invoice overdue"
            rows.append(
                {"id": rid, "key": f"m:{rid}", "kind": "email", "direction": "inbound",
                 "subject": f"Re: order {rid}", "body": " ".join(words),
                 "owner": "rep@example.com", "occurred_at": T0 + timedelta(minutes=rid),
                 "created_at": T0}
            )  # fmt: skip
        with pg_engine.begin() as conn:
            conn.execute(insert(records), rows)
            search_index.add(conn, {r["id"]: index_terms([r["subject"], r["body"]]) for r in rows})
    rep = Filters(owner="rep@example.com")
    query = parse_query("invoice -overdue")
    with pg_engine.connect() as conn:
        ranked = search_index.search(conn, query, rep, limit=100)
        counted = search_index.matching_ids(conn, query, rep)
    assert counted == set(range(1, 41))
    assert {rid for rid, _ in ranked} == set(range(1, 41))
