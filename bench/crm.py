"""CRM push benchmark against a real BottleCRM (tests/servers/bottlecrm.py), one run.

    .venv/bin/python bench/crm.py --records 5000 --latency 30

Prints:
  reference  a plain loop of the same POSTs (one keep-alive connection, bodies made up front):
             the CRM's answering time per request, and the loop's own CPU per request
  syncd      N records (with their outbox events) pushed by the CRM sink in this process:
             wall and syncd's own CPU per record (this process: rendering, claims, the map,
             JSON, HTTP), and that CPU as a share of the CRM's answering time (target <= 10 %)
  latency    records written one by one while `syncd run` runs: from the record's commit to
             the commit of its CRM id (after the CRM's 201): p50/p95 (target p95 <= 2 s)
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# The test servers are not installed: they live in the checkout's tests/servers/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select

from syncd.config_file import load_config
from syncd.crm.runner import open_sink
from syncd.schema.tables import (
    contact_addresses,
    crm_objects,
    customers,
    participants,
    record_customers,
    records,
)
from syncd.store import outbox
from syncd.store.database import open_database
from syncd.store.events import RECORD_CREATED
from tests.daemon import DaemonProcess
from tests.servers.bottlecrm import BottleCrm, prepare


def write_records(engine: Any, n: int, customer_id: int, address: str, tag: str) -> list[int]:
    """``n`` calls on the contact, with their events, in one transaction."""
    at = datetime.now(UTC) - timedelta(hours=1)
    with engine.begin() as conn:
        contact_id = conn.scalar(
            select(contact_addresses.c.contact_id).where(contact_addresses.c.address == address)
        )
        ids = []
        for i in range(n):
            rid = conn.execute(
                insert(records).values(
                    key=f"logged:bench-{tag}-{i}", kind="call", direction="outbound",
                    subject=f"Bench call {i}", body="Talked about the renewal and the price.",
                    occurred_at=at, created_at=datetime.now(UTC), duration_seconds=120,
                    outcome="connected",
                )
            ).inserted_primary_key[0]  # fmt: skip
            ids.append(int(rid))
        conn.execute(
            insert(record_customers),
            [{"record_id": r, "customer_id": customer_id, "link": "contact"} for r in ids],
        )
        conn.execute(
            insert(participants),
            [
                {"record_id": r, "address": address, "name": "", "role": "to", "external": 1,
                 "contact_id": contact_id}
                for r in ids
            ],
        )  # fmt: skip
        outbox.emit_records(conn, RECORD_CREATED, ids)
    return ids


def reference(crm: BottleCrm, contact: str, n: int) -> tuple[float, float]:
    """Seconds per POST (wall) and the loop's CPU per POST."""
    bodies = [
        json.dumps(
            {"kind": "call", "direction": "outbound", "occurred_at": "2026-12-01T10:00:00Z",
             "subject": f"Reference {i}", "body": "Talked about the renewal and the price.",
             "duration_seconds": 120, "outcome": "connected", "contact": contact}
        ).encode()
        for i in range(n)
    ]  # fmt: skip
    headers = {"Authorization": f"Bearer {crm.token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", crm.port, timeout=30)
    wall, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        conn.request("POST", "/api/interactions/", body=body, headers=headers)
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 201, answer.status
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    conn.close()
    return wall / n, cpu / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--latency", type=int, default=30, help="records for the latency run")
    args = parser.parse_args()
    print(f"prepare: {prepare():.1f} s (template reused when current)")
    crm = BottleCrm().start()
    print(f"BottleCRM started in {crm.started_in:.1f} s")
    root = Path(tempfile.mkdtemp(prefix="syncd-bench-crm-"))
    try:
        run(crm, root, args)
    finally:
        crm.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(crm: BottleCrm, root: Path, args: argparse.Namespace) -> None:
    account = crm.api(
        "POST", "/api/accounts/", {"name": "Bench Corp", "website": "https://bench.test"}
    )["id"]
    contact = crm.api(
        "POST", "/api/contacts/",
        {"first_name": "Ben", "last_name": "Ch", "email": "ben@bench.test", "account": account},
    )["id"]  # fmt: skip
    (root / "token").write_text(crm.token)
    config_path = root / "syncd.toml"
    config_path.write_text(
        f'[database]\nurl = "sqlite:///{root / "syncd.db"}"\n\n[[crm]]\nname = "bench"\n'
        f'kind = "bottlecrm"\nurl = "{crm.url}"\ntoken_file = "{root / "token"}"\n'
        "directory = true\n"
    )
    config = load_config(config_path)
    engine = open_database(config.database.url)
    sink = open_sink(engine, config.crm[0], "bench")
    sink.pull_directory()
    with engine.connect() as conn:
        customer_id = conn.scalar(select(customers.c.id).where(customers.c.name == "Bench Corp"))

    n = args.records
    per_post, ref_cpu = reference(crm, contact, n)
    print(
        f"reference: {n} POSTs, {per_post * 1000:.1f} ms each (the CRM answering), "
        f"the loop's own CPU {ref_cpu * 1000:.2f} ms per POST"
    )
    write_records(engine, n, customer_id, "ben@bench.test", "push")
    wall, cpu = time.perf_counter(), time.process_time()
    done = sink.push()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sink.crm.close()
    assert done.pushed == n, done
    print(
        f"syncd: {n} records pushed in {wall:.1f} s ({wall / n * 1000:.1f} ms each); "
        f"syncd's own CPU {cpu / n * 1000:.2f} ms per record = "
        f"{cpu / n / per_post:.1%} of the CRM's answering time (target <= 10 %)"
    )

    daemon = DaemonProcess(config_path, root / "daemon.log").start()
    try:
        delays = []
        for i in range(args.latency):
            (rid,) = write_records(engine, 1, customer_id, "ben@bench.test", f"late-{i}")
            written = time.perf_counter()
            subject = f"record:{rid}"
            while True:
                with engine.connect() as conn:
                    if conn.scalar(
                        select(crm_objects.c.crm_id).where(crm_objects.c.subject == subject)
                    ):
                        break
                if time.perf_counter() - written > 60:
                    raise SystemExit(f"{subject} not in the CRM after 60 s")
                time.sleep(0.01)
            delays.append(time.perf_counter() - written)
            time.sleep(0.3)
        code, _ = daemon.stop()
    finally:
        daemon.close()
        shutil.rmtree(daemon.notify_path.parent, ignore_errors=True)
    delays.sort()
    p95 = delays[max(0, int(len(delays) * 0.95) - 1)]
    print(
        f"latency: {len(delays)} records, written to in the CRM p50 "
        f"{statistics.median(delays):.2f} s, p95 {p95:.2f} s (target <= 2 s)"
    )
    # After the figures: a daemon that fails on its way out does not hide what it pushed.
    if code != 0:
        raise SystemExit(f"syncd run exited {code} when stopped: {root / 'daemon.log'}")


if __name__ == "__main__":
    main()
