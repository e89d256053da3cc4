"""Second review of h-pgblk: what a kinds or dates filter costs on a big table (measure)."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from syncd.domain.search_text import parse_query
from syncd.store import database, search_index
from syncd.store.search_index import Filters
from tests.servers.postgres import scratch_database

T0 = datetime(2024, 1, 1, tzinfo=UTC)
N = 300_000


@pytest.fixture
def pg(pg_admin: str) -> Iterator[Engine]:
    with scratch_database(pg_admin) as url:
        eng = database.open_database(url)
        yield eng
        eng.dispose()


@pytest.mark.postgres
def test_filter_costs(pg: Engine) -> None:
    with pg.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO records (id, key, kind, direction, subject, body, occurred_at, "
                "created_at) SELECT g, 'm:' || g, CASE WHEN g <= 50 THEN 'meeting' ELSE 'email' "
                "END, 'inbound', 'Order ' || g, CASE WHEN g <= 50 THEN 'budget review' "
                "ELSE 'budget overdue w' || (g % 1000) END, "
                "CAST(:t0 AS timestamptz) + g * interval '1 minute', :t0 "
                "FROM generate_series(1, :n) AS g"
            ),
            {"t0": T0, "n": N},
        )
        started = time.perf_counter()
        search_index.rebuild(conn)
        built = time.perf_counter() - started
    with pg.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    recent = T0 + timedelta(minutes=N - 5_000)
    cases = {
        "budget|meeting": ("budget", Filters(kinds=("meeting",))),
        "nomatch|meeting": ("zzqx", Filters(kinds=("meeting",))),
        "budget|email": ("budget", Filters(kinds=("email",))),
        "budget|since-5000": ("budget", Filters(since=recent)),
        "budget|before-old": ("budget", Filters(before=T0 + timedelta(minutes=100))),
        "budget -overdue|meeting": ("budget -overdue", Filters(kinds=("meeting",))),
        "budget": ("budget", Filters()),
        "w7": ("w7", Filters()),
    }
    out: dict[str, object] = {"records": N, "rebuild_s": round(built, 1)}
    with pg.connect() as conn:
        for name, (words, filters) in cases.items():
            times, hits = [], 0
            for _ in range(5):
                started = time.perf_counter()
                hits = len(search_index.search(conn, parse_query(words), filters, limit=20))
                times.append((time.perf_counter() - started) * 1000)
            out[name] = {"median_ms": round(statistics.median(times), 1), "hits": hits}
    out["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(out)
