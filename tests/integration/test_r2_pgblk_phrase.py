"""Second review of h-pgblk: a phrase of two common words over long mails (measure)."""

from __future__ import annotations

import random
import statistics
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from syncd.domain.search_text import index_terms, parse_query
from syncd.schema.tables import records
from syncd.store import database, search_index
from syncd.store.search_index import Filters
from tests.servers.postgres import scratch_database

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def pg(pg_admin: str) -> Iterator[Engine]:
    with scratch_database(pg_admin) as url:
        eng = database.open_database(url)
        yield eng
        eng.dispose()


def _ms(eng: Engine, words: str, filters: Filters) -> tuple[float, int]:
    times, hits = [], 0
    with eng.connect() as conn:
        for _ in range(3):
            started = time.perf_counter()
            hits = len(search_index.search(conn, parse_query(words), filters, limit=20))
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1), hits


@pytest.mark.postgres
def test_phrase_of_common_words_over_long_mails(pg: Engine) -> None:
    rnd = random.Random(7)
    vocab = ["".join(rnd.choice("abcdefghiklmnoprstu") for _ in range(rnd.randint(3, 10)))
             for _ in range(20_000)]  # fmt: skip
    weights = [1 / (i + 1) for i in range(len(vocab))]
    for start in range(1, 3_001, 250):
        rows = [
            {"id": rid, "key": f"m:{rid}", "kind": "email", "direction": "inbound",
             "subject": f"Re: order {rid}", "body": " ".join(rnd.choices(vocab, weights, k=3_000)),
             "owner": "rep@example.com", "occurred_at": T0 + timedelta(minutes=rid),
             "created_at": T0}
            for rid in range(start, start + 250)
        ]  # fmt: skip
        with pg.begin() as conn:
            conn.execute(insert(records), rows)
            search_index.add(conn, {r["id"]: index_terms([r["subject"], r["body"]]) for r in rows})
    rep = Filters(owner="rep@example.com")
    out = {
        "phrase-rare": _ms(pg, f'"{vocab[40]} {vocab[41]} {vocab[42]}"', Filters()),
        "phrase-rare|owner": _ms(pg, f'"{vocab[40]} {vocab[41]} {vocab[42]}"', rep),
        "common -second": _ms(pg, f"{vocab[0]} -{vocab[1]}", Filters()),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    print(out)
