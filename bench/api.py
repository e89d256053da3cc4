"""HTTP API benchmark: a customer's records, 32 clients at once, and the event long-poll.

    .venv/bin/python bench/api.py --records 200000 --customers 2000

Seeds N records over M customers (the insight bench's seeding) into SQLite and into a
throw-away PostgreSQL database, serves the API with ``syncd serve`` in its own process, and
while a writer stands in for capture (a record and its event every 20 ms, as a busy daemon
writes them) measures, on each database:

- ``GET /api/v1/records?customer=ID&limit=50`` from 32 connections, two ways:
  closed loop (each client sends its next request when the last is answered: the
  saturation throughput, requests a second) and open loop (``--rate``, wrk2's way:
  requests sent on a fixed schedule spread over the 32 connections, each latency counted
  from the time the request was due, so a stalled server is not hidden by clients that
  wait for it: p50 / p95 at that offered rate, and the rate achieved); beside them, as the
  reference of the same run, the same page read in-process with no HTTP at all (the store
  call alone);
- ``GET /api/v1/records?q=...``: a selective query (the words of one customer's subjects,
  one of them common to every record) over the search index, rebuilt after seeding;
- the event long-poll: from a record's commit to a waiting client holding its event.

``syncd serve`` runs the API in ``[api] workers`` processes (default 1, at most 16:
syncd/api/processes.py); the server's CPU counted here is its whole process tree's.  To
compare process counts in one run: ``--syncd PATH@1 --syncd PATH@2`` (``serve --workers N``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import Engine, func, select, text

from syncd.domain.payloads import record_json
from syncd.schema.tables import customers, participants, record_customers, records
from syncd.store import api_tokens, record_pages, search_index
from syncd.store.database import open_database
from syncd.store.events import RECORD_CREATED, Event, emit
from tests.servers.insight_seed import seed
from tests.servers.ports import free_port, wait_listening
from tests.servers.postgres import admin_url, scratch_database

SYNCD = str(Path(sys.executable).with_name("syncd"))
CLIENTS = 32
TARGETS = {"p95_ms": 30.0, "rps": 500.0, "search_p95_ms": 100.0, "poll_p95_s": 1.0}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Writer(threading.Thread):
    """Stands in for capture: a record linked to a customer (with a participant), and its
    record.created event, every ``every`` s, each in its own transaction, as capture links
    them (so a customer's page changes as it would); remembers when each event's
    transaction committed."""

    def __init__(self, engine: Engine, customer_ids: list[int], every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.customer_ids = customer_ids
        self.rng = random.Random(11)
        self.every = every
        self.stop = threading.Event()
        self.committed: dict[str, float] = {}  # subject -> monotonic commit time
        self.written = 0

    def run(self) -> None:
        n = 0
        while not self.stop.wait(self.every):
            n += 1
            now = datetime.now(UTC)
            with self.engine.begin() as conn:
                rid = conn.execute(
                    records.insert().values(
                        key=f"email:<bench-{time.time_ns()}-{n}@api>",
                        kind="email",
                        direction="inbound",
                        subject=f"Captured {n}",
                        occurred_at=now,
                        created_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                customer = self.rng.choice(self.customer_ids)
                conn.execute(
                    record_customers.insert().values(
                        record_id=rid, customer_id=customer, link="domain"
                    )
                )
                conn.execute(
                    participants.insert().values(
                        record_id=rid, address=f"buyer@c{customer}.test", name="", role="from"
                    )
                )
                emit(conn, Event(RECORD_CREATED, f"record:{rid}", {"id": rid}, now))
            self.committed[f"record:{rid}"] = time.monotonic()
            self.written += 1


class Load:
    """What one run of ``load`` measured."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.rate = 0.0
        self.client_cpu = 0.0  # seconds of CPU the clients' event loop used


async def _client(
    host: str,
    port: int,
    token: str,
    customer_ids: list[int],
    deadline: float,
    out: Load,
    rng: random.Random,
) -> None:
    """One keep-alive HTTP/1.1 connection asking for customers' first pages: a plain
    asyncio stream, so that the clients cost the 2 cores as little as they can (httpx
    spent about as much CPU a request as the server)."""
    reader, writer = await asyncio.open_connection(host, port)
    head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    try:
        while time.perf_counter() < deadline:
            cid = rng.choice(customer_ids)
            started = time.perf_counter()
            writer.write(b"GET /api/v1/records?customer=%d&limit=50 HTTP/1.1\r\n" % cid + head)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            out.latencies.append(time.perf_counter() - started)
            if headers[9:12] != b"200":
                out.errors += 1
    finally:
        writer.close()


async def _scheduled_client(
    host: str,
    port: int,
    token: str,
    customer_ids: list[int],
    first: float,
    every: float,
    deadline: float,
    out: Load,
    rng: random.Random,
) -> None:
    """One connection of the open loop: its requests are due at ``first``, then every
    ``every`` s; each is sent when due (or as soon as the one before is answered, if that
    is later) and its latency counted from when it was due (no coordinated omission)."""
    reader, writer = await asyncio.open_connection(host, port)
    head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    due = first
    try:
        while due < deadline:
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            cid = rng.choice(customer_ids)
            writer.write(b"GET /api/v1/records?customer=%d&limit=50 HTTP/1.1\r\n" % cid + head)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            out.latencies.append(time.perf_counter() - due)
            if headers[9:12] != b"200":
                out.errors += 1
            due += every
    finally:
        writer.close()


async def open_load(
    url: str, token: str, customer_ids: list[int], seconds: float, rate: float
) -> Load:
    """``rate`` requests a second offered over ``CLIENTS`` connections for ``seconds``,
    each connection's schedule offset from the others' so the sends are evenly spread."""
    out = Load()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    rng = random.Random(5)
    every = CLIENTS / rate
    cpu = time.thread_time()
    began = time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(
        *(
            _scheduled_client(host, int(port), token, customer_ids, began + n / rate, every,
                              deadline, out, rng)
            for n in range(CLIENTS)
        )
    )  # fmt: skip
    took = time.perf_counter() - began
    out.client_cpu = time.thread_time() - cpu
    out.rate = len(out.latencies) / took
    return out


async def load(url: str, token: str, customer_ids: list[int], seconds: float) -> Load:
    """32 clients asking for customers' first pages for ``seconds``: latencies, errors,
    rate, and the clients' own CPU time (this thread's: the writer's is not counted)."""
    out = Load()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    rng = random.Random(7)
    cpu = time.thread_time()
    began = time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(
        *(_client(host, int(port), token, customer_ids, deadline, out, rng) for _ in range(CLIENTS))
    )
    took = time.perf_counter() - began
    out.client_cpu = time.thread_time() - cpu
    out.rate = len(out.latencies) / took
    return out


def long_polls(url: str, token: str, writer: Writer, polls: int) -> list[float]:
    """From an event's commit to a waiting client holding it, ``polls`` times."""
    delays: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=90) as http:
        after = http.get("/api/v1/events", params={"limit": 1, "after": 2**40}).json()
        last = int(after["next_cursor"] or 0)
        with writer.engine.connect() as conn:
            from syncd.store.events import last_id

            last = last_id(conn)
        while len(delays) < polls:
            answer = http.get("/api/v1/events", params={"after": last, "wait": 30, "limit": 1})
            got = time.monotonic()
            body = answer.json()
            if not body["items"]:
                continue
            event = body["items"][0]
            last = int(event["id"])
            committed = writer.committed.get(f"record:{event['data']['id']}")
            if committed is not None:
                delays.append(got - committed)
    return delays


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its children so far (Linux /proc): the
    API's processes when ``syncd serve`` has several (``[api] workers``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for child in _children(pid):
        with contextlib.suppress(OSError):  # ended meanwhile
            used += _cpu_seconds(child)
    return used


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    found.append(int(entry.name))
    return found


def _database_cpu(engine: Engine, since: dict[int, float] | None = None) -> Any:
    """PostgreSQL: the CPU time of the server processes of the bench's database's clients
    (the API's connections and the writer's: the writer costs both servers alike);
    with ``since``, the seconds used since then.  None on SQLite (no process of its own)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pid, backend_start > :mark FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"  # not autovacuum after the seeding
            ),
            {"mark": datetime.fromtimestamp(since[0] if since else 0, UTC)},
        ).all()
    now: dict[int, float] = {0: time.time()}  # key 0: when (no process has pid 0)
    new: set[int] = set()
    for pid, started_since in rows:
        try:
            now[int(pid)] = _cpu_seconds(int(pid))
        except OSError:  # ended meanwhile
            continue
        if started_since:
            new.add(int(pid))
    if since is None:
        return now
    # The processes seen both times, and those that connected meanwhile (the pools of
    # several API processes open as requests come): not one that was there before but
    # unseen, the pool's connection that asked the first time (left out then), which holds
    # the seeding's CPU.
    return sum(
        used - since.get(pid, 0.0)
        for pid, used in now.items()
        if pid and (pid in since or pid in new)
    )


def run_on(url: str, label: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    engine = open_database(url)
    t = time.perf_counter()
    seed(engine, n_records=args.records, n_customers=args.customers, now=datetime.now(UTC))
    print(f"{label}: seeded {args.records} records in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    with engine.begin() as conn:
        search_index.rebuild(conn)  # the seeding writes rows, not the index capture keeps
    print(f"{label}: indexed for search in {time.perf_counter() - t:.1f} s", flush=True)
    with engine.begin() as conn:
        token, _ = api_tokens.create(conn, f"bench-{label}", scope="read")
        customer_ids = [int(c) for c in conn.scalars(select(customers.c.id))]
        total = int(conn.scalar(select(func.count()).select_from(records)) or 0)
    config = work / f"{label}.toml"
    out: dict[str, Any] = {"records": total}
    writer = Writer(engine, customer_ids)
    try:
        # The reference: the same pages read in-process, no HTTP, one client.
        rng = random.Random(3)
        direct: list[float] = []
        with engine.connect() as conn:
            for _ in range(300):
                started = time.perf_counter()
                rows = record_pages.page(conn, customer_id=rng.choice(customer_ids), limit=51)
                json.dumps([record_json(r) for r in rows[:50]])
                direct.append(time.perf_counter() - started)
        out["direct_p50_ms"] = statistics.median(direct) * 1000
        out["direct_p95_ms"] = percentile(direct, 0.95) * 1000
        writer.start()
        # Each server in turn, ``rounds`` times: servers compared (--syncd given more than
        # once) see the same data, the same writer and, alternating, the same machine.
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.syncd}
        for turn in range(args.rounds):
            for syncd in args.syncd:
                runs[syncd].append(
                    _serve_and_load(syncd, url, config, work, token, customer_ids, writer, args,
                                    last=turn == args.rounds - 1 and syncd == args.syncd[-1])
                )  # fmt: skip
        out["by_syncd"] = {name: _combined(found) for name, found in runs.items()}
        out.update(out["by_syncd"][args.syncd[-1]])
        out["captured_meanwhile"] = writer.written
    finally:
        writer.stop.set()
        if writer.is_alive():  # its last commit before the scratch database is dropped
            writer.join(10)
        engine.dispose()
    return out


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's rounds: latencies and requests pooled, CPU a request over them all."""
    latencies = [t for run in runs for t in run["latencies"]]
    requests = len(latencies)
    skip = {"latencies", "open_latencies"}
    out = {key: value for run in runs for key, value in run.items() if key not in skip}
    scheduled = [t for run in runs for t in run["open_latencies"]]
    out.update(
        p50_ms=statistics.median(latencies) * 1000,
        p95_ms=percentile(latencies, 0.95) * 1000,
        rps=requests / sum(run["took"] for run in runs),
        requests=requests,
        errors=sum(run["errors"] for run in runs),
        server_cpu_ms=sum(run["server_cpu"] for run in runs) / max(requests, 1) * 1000,
        database_cpu_ms=(
            sum(run["database_cpu"] for run in runs) / max(requests, 1) * 1000
            if runs[0]["database_cpu"] is not None
            else None
        ),
        client_cpu_ms=sum(run["client_cpu"] for run in runs) / max(requests, 1) * 1000,
        rounds=[round(run["server_cpu"] / max(len(run["latencies"]), 1) * 1000, 2) for run in runs],
        database_rounds=[
            round(run["database_cpu"] / max(len(run["latencies"]), 1) * 1000, 2)
            for run in runs
            if run["database_cpu"] is not None
        ],
        open_p50_ms=statistics.median(scheduled) * 1000,
        open_p95_ms=percentile(scheduled, 0.95) * 1000,
        open_rps=len(scheduled) / sum(run["open_took"] for run in runs),
        open_errors=sum(run["open_errors"] for run in runs),
        open_server_cpu_ms=sum(run["open_server_cpu"] for run in runs)
        / max(len(scheduled), 1)
        * 1000,
        load_average=os.getloadavg()[0],
    )
    return out


def _serve_and_load(
    syncd: str,
    url: str,
    config: Path,
    work: Path,
    token: str,
    customer_ids: list[int],
    writer: Writer,
    args: argparse.Namespace,
    *,
    last: bool,
) -> dict[str, Any]:
    """One server: idle CPU, the 32 clients, and (``last``) search and long polls."""
    port = free_port()
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[api]\nlisten = "127.0.0.1:{port}"\nrate_limit = 100000\n'
    )
    log = (work / "serve.log").open("ab")
    program, _, workers = syncd.partition("@")
    command = [program, "--config", str(config), "serve"]
    if workers:
        command += ["--workers", workers]
    server = subprocess.Popen(command, stdout=log, stderr=log)
    out: dict[str, Any] = {}
    try:
        wait_listening(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        # Idle: what serving costs when nobody calls (a share of one core).
        time.sleep(2.0)
        before, began = _cpu_seconds(server.pid), time.perf_counter()
        time.sleep(args.idle)
        out["idle_cpu"] = (_cpu_seconds(server.pid) - before) / (time.perf_counter() - began)
        asyncio.run(load(base, token, customer_ids, 2.0))  # warm up
        served = _cpu_seconds(server.pid)
        database = _database_cpu(writer.engine)
        began = time.perf_counter()
        measured = asyncio.run(load(base, token, customer_ids, args.seconds))
        out.update(
            took=time.perf_counter() - began,
            server_cpu=_cpu_seconds(server.pid) - served,
            database_cpu=_database_cpu(writer.engine, database),
            latencies=measured.latencies,
            errors=measured.errors,
            client_cpu=measured.client_cpu,
        )
        served = _cpu_seconds(server.pid)
        began = time.perf_counter()
        scheduled = asyncio.run(open_load(base, token, customer_ids, args.seconds, args.rate))
        out.update(
            open_took=time.perf_counter() - began,
            open_latencies=scheduled.latencies,
            open_errors=scheduled.errors,
            open_server_cpu=_cpu_seconds(server.pid) - served,
        )
        if not last:
            return out
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
            words = {"q": f"customer {customer_ids[len(customer_ids) // 2]}", "limit": 20}
            searched = http.get("/api/v1/records", params=words)
            out["search"] = searched.status_code
            if searched.status_code == 200:
                out["search_hits"] = len(searched.json()["items"])
                times = []
                for _ in range(50):
                    started = time.perf_counter()
                    http.get("/api/v1/records", params=words).raise_for_status()
                    times.append(time.perf_counter() - started)
                out["search_p95_ms"] = percentile(times, 0.95) * 1000
        delays = long_polls(base, token, writer, args.polls)
        out["poll_p50_s"] = statistics.median(delays)
        out["poll_p95_s"] = percentile(delays, 0.95)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument(
        "--syncd",
        action="append",
        help="the syncd that serves (default: this checkout's); given more than once, each "
        "serves in turn on the same data (another checkout's, to compare before and after); "
        "PATH@N: `serve --workers N` (one that has [api] workers)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="turns of each --syncd")
    parser.add_argument(
        "--rate", type=float, default=500.0, help="requests a second offered in the open loop"
    )
    args = parser.parse_args()
    args.syncd = args.syncd or [SYNCD]
    results: dict[str, dict[str, Any]] = {}
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-api-"))
    try:
        if args.only in (None, "sqlite"):
            results["SQLite"] = run_on(f"sqlite:///{work / 'api.db'}", "SQLite", work, args)
        if args.only in (None, "postgres"):
            with ExitStack() as stack:
                admin = stack.enter_context(admin_url(work / "pg"))
                url = stack.enter_context(scratch_database(admin))
                results["PostgreSQL"] = run_on(url, "PostgreSQL", work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{CLIENTS} clients, GET /api/v1/records?customer=ID&limit=50 while a writer "
          f"stands in for capture (cores: {os.cpu_count()}, load average now "
          f"{os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"{'database':<11} {'records':>8} {'p50':>8} {'p95':>8} {'req/s':>7} {'errors':>6} "
          f"{'store p50':>9} {'store p95':>9} {'poll p50':>8} {'poll p95':>8}  search")  # fmt: skip
    for label, r in results.items():
        search = (
            f"p95 {r['search_p95_ms']:.0f} ms ({r['search_hits']} hits)"
            if "search_p95_ms" in r
            else f"HTTP {r['search']}"
        )
        print(
            f"{label:<11} {r['records']:>8} {r['p50_ms']:6.1f}ms {r['p95_ms']:6.1f}ms {r['rps']:7.0f} "
            f"{r['errors']:>6} {r['direct_p50_ms']:7.1f}ms {r['direct_p95_ms']:7.1f}ms "
            f"{r['poll_p50_s']:7.2f}s {r['poll_p95_s']:7.2f}s  {search}; idle API "
            f"{r['idle_cpu']:.2%} of a core"
        )
    print("\nCPU a request (server process, all threads; clients: their event loop's thread), "
          "and the HTTP page against the store read alone (reference, same run):")  # fmt: skip
    for label, r in results.items():
        print(
            f"{label:<11} server {r['server_cpu_ms']:.2f} ms, clients {r['client_cpu_ms']:.2f} ms "
            f"({r['requests']} requests; load average {r['load_average']:.1f}); HTTP p50 / store "
            f"p50 = {r['p50_ms'] / r['direct_p50_ms']:.1f}x, server CPU / store p50 = "
            f"{r['server_cpu_ms'] / r['direct_p50_ms']:.2f}x"
        )
    if len(args.syncd) > 1:
        print(f"\nEach server in turn ({args.rounds} rounds of {args.seconds:g} s, alternating; "
              "server CPU a request in each round in brackets):")  # fmt: skip
        for label, r in results.items():
            for syncd, found in r["by_syncd"].items():
                print(
                    f"{label:<11} {syncd}: p50 {found['p50_ms']:.1f} ms, p95 {found['p95_ms']:.1f} ms, "
                    f"{found['rps']:.0f} req/s, server {found['server_cpu_ms']:.2f} ms a request "
                    f"{found['rounds']}, clients {found['client_cpu_ms']:.2f} ms, "
                    + (
                        f"PostgreSQL's processes {found['database_cpu_ms']:.2f} ms "
                        f"{found['database_rounds']}, "
                        if found["database_cpu_ms"] is not None
                        else ""
                    )
                    + f"{found['errors']} errors"
                )
    print(f"\nOpen loop: {args.rate:g} requests a second offered over {CLIENTS} connections "
          "(latency from each request's due time), beside the closed loop's saturation:")  # fmt: skip
    for label, r in results.items():
        for syncd, found in r["by_syncd"].items():
            print(
                f"{label:<11} {syncd}: saturation {found['rps']:.0f} req/s (p95 "
                f"{found['p95_ms']:.1f} ms); at {args.rate:g} req/s offered: p50 "
                f"{found['open_p50_ms']:.1f} ms, p95 {found['open_p95_ms']:.1f} ms, achieved "
                f"{found['open_rps']:.0f} req/s, server {found['open_server_cpu_ms']:.2f} ms CPU a "
                f"request, {found['open_errors']} errors"
            )
    print(f"targets: saturation >= {TARGETS['rps']:.0f} req/s, p95 <= {TARGETS['p95_ms']:.0f} ms "
          f"at {TARGETS['rps']:.0f} req/s offered, search p95 <= {TARGETS['search_p95_ms']:.0f} ms, "
          f"long-poll p95 <= {TARGETS['poll_p95_s']:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
