"""The rules' horizon (store/quiet.py ``next_quiet``, issue #20) once read every record ever
captured, on every full pass.  On a 1,000,000-record SQLite database
(bench/search.py's loader) it took 3.2 s CPU where the evaluation without it took 6 ms:
its work must not grow with records older than the rule's span."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from syncd.domain.business_time import Span
from syncd.domain.quiet import QuietRule
from syncd.schema.tables import record_customers, records
from syncd.store import quiet
from syncd.store.database import open_database
from syncd.store.sql import insert_ignore

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.search import _records  # synthetic records, 2020 onwards


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield engine
    engine.dispose()


def _steps(engine: Engine) -> int:
    """SQLite virtual-machine steps (in thousands) that ``next_quiet`` takes now."""
    rule = QuietRule(
        after=Span.parse("30 days"),
        min_records=3,
        lookback=timedelta(days=365),
    )
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        counted = [0]

        def tick() -> int:
            counted[0] += 1
            return 0

        raw.set_progress_handler(tick, 1000)  # type: ignore[union-attr]
        try:
            quiet.next_quiet(conn, rule, datetime.now(UTC))
        finally:
            raw.set_progress_handler(None, 0)  # type: ignore[union-attr]
    return counted[0]


def _load(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        for c in range(1, 1001):
            conn.exec_driver_sql(
                "INSERT OR IGNORE INTO customers (id, name, created_at) VALUES (?, ?, ?)",
                (c, f"Customer {c}", "2020-01-01 00:00:00.000000"),
            )
        for batch in _records(count):
            for r, _, _ in batch:
                r["kind"] = "email"  # a contact record, as gone_quiet counts them
            insert_ignore(conn, records, [r for r, _, _ in batch], ["key"])
            insert_ignore(
                conn,
                record_customers,
                [{"record_id": r["id"], "customer_id": c, "link": "domain"} for r, c, _ in batch],
                ["record_id", "customer_id"],
            )


def test_next_quiet_does_not_read_old_records(engine: Engine) -> None:
    _load(engine, 2_000)
    few = _steps(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM record_customers")
        conn.exec_driver_sql("DELETE FROM records")
    _load(engine, 60_000)  # years old: none can be "too recent to be quiet"
    many = _steps(engine)
    assert many <= few * 3 + 10, (few, many)
