"""Customer insight benchmark: the customer list, first responses and gone_quiet at volume.

    .venv/bin/python bench/insight.py --records 200000 --customers 2000

Seeds N records over M customers straight into SQLite and into a throw-away PostgreSQL
database (made and dropped here), then times, on each: ``customers list`` with every column,
``report responses`` over a year, and the gone_quiet evaluation, each beside a plain
``SELECT count(*)`` over the same tables measured in the same run.  Best of a few runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text

from syncd.cli.present.directory import customer_json
from syncd.config import Config
from syncd.config_file import parse_config
from syncd.domain.insight import arrange
from syncd.domain.responses import BusinessClock, Wait, summarize
from syncd.engine.quiet import quiet_followups
from syncd.store.database import open_database
from syncd.store.insight import customer_overview, first_replies
from tests.servers.insight_seed import seed
from tests.servers.postgres import admin_url, scratch_database

TARGETS = {"customers list": 0.5, "report responses (a year)": 2.0, "gone_quiet evaluation": 1.0}


def best(runs: int, work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(best wall seconds, CPU seconds of that run, its result)."""
    found: tuple[float, float, Any] | None = None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        took = (time.perf_counter() - wall, time.process_time() - cpu, result)
        if found is None or took[0] < found[0]:
            found = took
    assert found is not None
    return found


def measure(
    engine: Engine, config: Config, now: datetime, runs: int
) -> list[tuple[str, float, float, float, str]]:
    owners = {box.name: box.owner for box in config.mailbox}

    def count(sql: str) -> Callable[[], int]:
        def run() -> int:
            with engine.connect() as conn:
                return int(conn.execute(text(sql)).scalar_one())

        return run

    def customers_list() -> int:
        with engine.connect() as conn:
            rows = customer_overview(conn, now=now, window_start=now - timedelta(days=90))
        return len([customer_json(r) for r in arrange(rows, sort_by="last-contact")])

    def responses() -> int:
        with engine.connect() as conn:
            asked = first_replies(
                conn, since=now - timedelta(days=365), until=now, mailboxes=owners
            )
        clocks: dict[str, BusinessClock] = {}
        waits = []
        for item in asked:
            rep = owners.get(item.mailbox or "") or item.recipient or "?"
            clock = clocks.get(rep) or clocks.setdefault(
                rep, BusinessClock(config.working_week_of(rep))
            )
            waits.append(Wait(item.customer, item.asked_at, item.replied_at, clock))
        return len(summarize(waits, now))

    def gone_quiet() -> int:
        with engine.connect() as conn:
            wanted, _ = quiet_followups(
                conn, config, now, now - timedelta(days=config.tasks.lookback_days)
            )
        return len(wanted)

    join = "FROM record_customers JOIN records ON records.id = record_customers.record_id"
    plans = [
        ("customers list", customers_list, f"SELECT count(*) {join}"),
        ("report responses (a year)", responses, f"SELECT count(*) {join}"),
        ("gone_quiet evaluation", gone_quiet, f"SELECT count(*) {join}"),
    ]
    out = []
    for name, work, reference in plans:
        ref_wall, _, _ = best(runs, count(reference))
        wall, cpu, result = best(runs, work)
        out.append((name, wall, cpu, ref_wall, f"{result} rows"))
    return out


def run_on(
    url: str, label: str, args: argparse.Namespace, now: datetime
) -> list[tuple[str, float, float, float, str]]:
    config = parse_config(
        {
            "database": {"url": url},
            "organization": {"internal_domains": ["example.com"], "timezone": "Europe/Berlin"},
            "tasks": {"lookback_days": 60},  # every seeded quiet spell is due: the worst case
            "mailbox": [
                {"name": f"rep{n}", "owner": f"rep{n}@example.com", "host": "127.0.0.1",
                 "username": f"rep{n}", "password": "x",
                 **({"timezone": "America/New_York", "hours": "08:00-16:00"} if n % 3 == 0 else {})}
                for n in range(10)
            ],
        }
    )  # fmt: skip
    engine = open_database(url)
    t = time.perf_counter()
    seed(engine, n_records=args.records, n_customers=args.customers, now=now)
    print(
        f"{label}: seeded {args.records} records over {args.customers} customers in {time.perf_counter() - t:.1f} s",
        flush=True,
    )
    try:
        return measure(engine, config, now, args.runs)
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    now = datetime.now(UTC)
    results: dict[str, list[tuple[str, float, float, float, str]]] = {}
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-insight-"))
    try:
        if args.only in (None, "sqlite"):
            results["SQLite"] = run_on(f"sqlite:///{work / 'insight.db'}", "SQLite", args, now)
        if args.only in (None, "postgres"):
            with ExitStack() as stack:
                admin = stack.enter_context(admin_url(work / "pg"))
                url = stack.enter_context(scratch_database(admin))
                results["PostgreSQL"] = run_on(url, "PostgreSQL", args, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        f"{'database':<11} {'what':<27} {'wall':>8} {'cpu':>8} {'count(*)':>9} {'ratio':>7} {'target':>7}  result"
    )
    for label, rows in results.items():
        for name, wall, cpu, ref, note in rows:
            print(
                f"{label:<11} {name:<27} {wall * 1000:6.0f}ms {cpu * 1000:6.0f}ms {ref * 1000:7.0f}ms "
                f"{wall / ref:6.1f}x {TARGETS[name]:6.1f}s  {note}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
