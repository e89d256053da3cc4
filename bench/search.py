"""Search benchmark: `records search` over N records on SQLite FTS5 and PostgreSQL, and what
the index costs a capture backfill.

    .venv/bin/python bench/search.py --records 1000000 --messages 10000

Loads N synthetic records (a subject and a 40-word body; a tenth in Chinese; 1,000
customers) into a fresh SQLite file and a throw-away PostgreSQL database on 127.0.0.1:5432
(dropped after), in bulk, indexed with the one tokeniser.  Then, on each engine, each query
is timed (median of 5, with the 20 records read as the CLI reads them) beside a
``SELECT count(*) FROM records`` of the same table in the same run:
- a selective word (~500 hits), top 20 (target <= 50 ms);
- a word in 3 records of 4 with ``--customer`` (target <= 100 ms);
- the worst of: that common word alone, a common prefix, a common Chinese pair, a common
  word without another (target <= 1 s);
and the index's size against the text it indexes (target <= 1.5x).  Last, a real backfill
of --messages messages from Dovecot (bench/capture.py's seed) into a fresh database of each
engine, with and without the index, alternated (target >= 0.85x).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, create_engine, text

from bench.capture import PASSWORD, USER, seed
from syncd.domain.search_text import index_terms, parse_query
from syncd.store import search_index
from syncd.store.database import open_database
from syncd.store.queries import records_by_id
from syncd.store.sql import insert_ignore
from tests.servers.dovecot import Dovecot

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CUSTOMERS = 1_000
T0 = datetime(2020, 1, 1, tzinfo=UTC)
HAN = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理"
VOCABULARY = [f"w{n}" for n in range(5_000)]


def _texts(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """``count`` (subject, body) templates; a tenth Chinese."""
    weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
    out = []
    for n in range(count):
        if n % 10 == 0:
            body = "".join(rng.choices(HAN, k=120))
            subject = "关于" + "".join(rng.choices(HAN, k=8))
        else:
            body = " ".join(rng.choices(VOCABULARY, weights, k=40))
            subject = " ".join(rng.choices(VOCABULARY, weights, k=6))
        out.append((subject, body))
    return out


def _records(count: int) -> Any:
    """Rows of records, their customer and their search terms, in batches of 10,000."""
    rng = random.Random(7)
    templates = _texts(rng, 20_000)
    now = datetime.now(UTC)
    batch: list[tuple[dict[str, Any], int, str]] = []
    for rid in range(1, count + 1):
        subject, body = templates[(rid * 7919) % len(templates)]
        extra = []
        if rid % 4:
            extra.append("common")
        extra.append(f"rare{rid % 2000}")  # ~count/2000 hits each
        body = body + " " + " ".join(extra)
        row = {
            "id": rid,
            "key": f"note:{rid}",
            "kind": "note",
            "direction": "outbound",
            "subject": subject,
            "body": body,
            "occurred_at": T0 + timedelta(minutes=rid),
            "created_at": now,
        }
        batch.append((row, rid % CUSTOMERS + 1, index_terms([subject, body])))
        if len(batch) == 10_000:
            yield batch
            batch = []
    if batch:
        yield batch


def _load(engine: Engine, count: int) -> tuple[float, int]:
    """Bulk load; returns (seconds, bytes of indexed text)."""
    started = time.perf_counter()
    text_bytes = 0
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO customers (id, name, created_at) VALUES (:id, :name, :at)"),
            [
                {"id": c, "name": f"Customer {c}", "at": datetime.now(UTC)}
                for c in range(1, CUSTOMERS + 1)
            ],
        )
    if not sqlite:  # the GIN index is built once, after the load
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_record_search_terms")
    for batch in _records(count):
        text_bytes += sum(len((r["subject"] + " " + r["body"]).encode()) for r, _, _ in batch)
        with engine.begin() as conn:
            if sqlite:
                from syncd.schema.tables import record_customers, records

                insert_ignore(conn, records, [r for r, _, _ in batch], ["key"])
                insert_ignore(
                    conn,
                    record_customers,
                    [
                        {"record_id": r["id"], "customer_id": c, "link": "domain"}
                        for r, c, _ in batch
                    ],
                    ["record_id", "customer_id"],
                )
                search_index.add(conn, {r["id"]: terms for r, _, terms in batch})
            else:
                raw = conn.connection.driver_connection
                cur = raw.cursor()  # type: ignore[union-attr]
                with cur.copy(
                    "COPY records (id, key, kind, direction, subject, body, occurred_at, created_at) FROM STDIN"
                ) as copy:
                    for r, _, _ in batch:
                        copy.write_row(
                            (
                                r["id"],
                                r["key"],
                                r["kind"],
                                r["direction"],
                                r["subject"],
                                r["body"],
                                r["occurred_at"],
                                r["created_at"],
                            )
                        )
                with cur.copy(
                    "COPY record_customers (record_id, customer_id, link) FROM STDIN"
                ) as copy:
                    for r, c, _ in batch:
                        copy.write_row((r["id"], c, "domain"))
                search_index.add(conn, {r["id"]: terms for r, _, terms in batch})
    with engine.begin() as conn:
        if sqlite:
            search_index.merge(conn)
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("SELECT setval('records_id_seq', (SELECT max(id) FROM records))")
            conn.exec_driver_sql(
                "CREATE INDEX ix_record_search_terms ON record_search "
                "USING gin (syncd_search_lexemes(terms))"
            )
    if not sqlite:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return time.perf_counter() - started, text_bytes


def _parts(conn: Any) -> dict[str, float]:
    """The index's size per table and index."""
    if conn.dialect.name == "sqlite":
        sql = "SELECT name, sum(pgsize) FROM dbstat WHERE name LIKE 'record_search%' GROUP BY name"
    else:
        sql = (  # the table, its compressed rows (TOAST) and its indexes
            "SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relname LIKE "
            "'%record_search%' OR oid = (SELECT reltoastrelid FROM pg_class "
            "WHERE relname = 'record_search')"
        )
    return {name: round(size / 1e6, 1) for name, size in conn.execute(text(sql))}


def _median_ms(run: Callable[[], Any], times: int = 5) -> float:
    found = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        found.append((time.perf_counter() - started) * 1000)
    return statistics.median(found)


def _measure(engine: Engine, count: int) -> dict[str, Any]:
    load_s, text_bytes = _load(engine, count)
    out: dict[str, Any] = {"load_s": round(load_s, 1), "text_mb": round(text_bytes / 1e6, 1)}

    def searched(words: str, **filters: Any) -> Callable[[], Any]:
        query = parse_query(words)

        def run() -> Any:
            with engine.connect() as conn:
                hits = search_index.search(conn, query, search_index.Filters(**filters), limit=20)
                return records_by_id(conn, [rid for rid, _ in hits])

        return run

    with engine.connect() as conn:
        out["index_mb"] = round(search_index.index_size(conn) / 1e6, 1)
        out["index_parts_mb"] = _parts(conn)

    def counted() -> Any:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM records"))

    out["count_ms"] = round(_median_ms(counted), 2)
    out["selective_ms"] = round(_median_ms(searched("rare1234")), 2)
    # Customer 18 holds the records whose id ends in 017 (mod 1,000): three in four of them
    # carry "common" (customer 17's ids are multiples of 4, which never do, so a query for it
    # ranked nothing).
    out["common_customer_ms"] = round(_median_ms(searched("common", customer_id=18)), 2)
    out["common_customer_hits"] = len(searched("common", customer_id=18)())
    worst = {
        "common": searched("common"),
        "w12*": searched("w12*"),
        "的": searched("的"),
        "common -w0": searched("common -w0"),
        "common w0 w1": searched("common w0 w1"),
    }
    out["worst"] = {name: round(_median_ms(run, 3), 1) for name, run in worst.items()}
    out["ratio"] = round(out["index_mb"] / out["text_mb"], 2)
    return out


def _capture_child(port: int, url: str, mode: str) -> dict[str, float]:
    from syncd.config_file import parse_config
    from syncd.engine.imap.mail_sync import MailSync
    from syncd.store import capture

    if mode != "1":  # the reference run: a no-op stands in for the index (this child only)
        capture._index_created = lambda *_args: None  # type: ignore[assignment]
    config = parse_config(
        {
            "database": {"url": url},
            "organization": {"internal_domains": ["example.com"]},
            "mailbox": [
                {
                    "name": "bench", "owner": "alice@example.com", "host": "127.0.0.1",
                    "port": port, "security": "plain", "username": USER, "password": PASSWORD,
                    "folders": ["INBOX"],
                }
            ],
        }
    )  # fmt: skip
    engine = open_database(config.database.url)
    started = time.perf_counter()
    MailSync(engine, config).run_once()
    return {"backfill_s": time.perf_counter() - started}


def _capture(messages: int, rounds: int, engines: str) -> dict[str, Any]:
    """A backfill of ``messages`` into a fresh database, with the index and without it
    (alternated, ``rounds`` each), on each engine."""
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-search-"))
    work.chmod(0o755)
    dovecot = Dovecot(work / "dovecot", {USER: PASSWORD}).start()
    out: dict[str, Any] = {"messages": messages}
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        seed(dovecot, messages)
        for engine in [e for e in ("sqlite", "postgres") if e in engines]:
            runs: dict[str, list[float]] = {"0": [], "1": []}
            for n in range(rounds):
                for mode in ("0", "1"):
                    name = f"syncd_bench_capture_{os.getpid()}_{n}_{mode}"
                    if engine == "sqlite":
                        url = f"sqlite:///{work / f'{name}.db'}"
                    else:
                        with admin.connect() as conn:
                            conn.exec_driver_sql(f"CREATE DATABASE {name}")
                        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
                    try:
                        child = subprocess.run(
                            [sys.executable, __file__, "--child", str(dovecot.port), url, mode],
                            check=True, capture_output=True, text=True,
                        )  # fmt: skip
                    finally:
                        if engine != "sqlite":
                            with admin.connect() as conn:
                                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    last = child.stdout.strip().splitlines()[-1]
                    runs[mode].append(json.loads(last)["backfill_s"])
            without, with_index = min(runs["0"]), min(runs["1"])
            out[engine] = {
                "without_s": round(without, 2),
                "with_s": round(with_index, 2),
                "speed_ratio": round(without / with_index, 3),
            }
    finally:
        admin.dispose()
        dovecot.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        port, url, mode = args.child
        print(json.dumps(_capture_child(int(port), url, mode)))
        return 0
    results: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-search-"))
    try:
        if "sqlite" in args.engines:
            engine = open_database(f"sqlite:///{work / 'search.db'}")
            results["sqlite"] = _measure(engine, args.records)
            engine.dispose()
            print("sqlite", json.dumps(results["sqlite"], ensure_ascii=False), flush=True)
        if "postgres" in args.engines:
            name = f"syncd_bench_search_{os.getpid()}"
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
            try:
                engine = open_database(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
                results["postgres"] = _measure(engine, args.records)
                engine.dispose()
                print("postgres", json.dumps(results["postgres"], ensure_ascii=False), flush=True)
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.messages:
        results["capture"] = _capture(args.messages, args.rounds, args.engines)
        print("capture", json.dumps(results["capture"]), flush=True)
    print(json.dumps({"records": args.records, **results}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
