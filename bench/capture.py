"""Email capture benchmark: syncd vs raw imapclient vs mbsync, from one run.

    .venv/bin/python bench/capture.py --messages 20000

Seeds one Dovecot mailbox with N sample messages (~3.3 KB), warms Dovecot's index, then measures
in the same run: the raw imapclient fetch rate (BODY.PEEK[] in batches of 1,000), mbsync's rate
into a Maildir, syncd's end-to-end backfill rate on SQLite (fetch, parse, match, store; in a child
process so its peak RSS is its own), and syncd's re-sync time when nothing changed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The test servers and sample data are not installed: they live in the checkout's
# tests/servers/, so the checkout's root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imapclient

from tests.servers.dovecot import Dovecot
from tests.servers.sample import CUSTOMERS_CSV, generate

USER, PASSWORD = "bench", "bench-password"


def seed(dovecot: Dovecot, count: int) -> None:
    chunk = 5000
    for start in range(0, count, chunk):
        raws = [m.raw for m in generate(min(chunk, count - start), seed=start + 1)]
        dovecot.deliver_many(USER, raws)
    client = _login(
        dovecot
    )  # Dovecot indexes a new Maildir on first access: keep that out of every figure
    client.select_folder("INBOX", readonly=True)
    uids = client.search("ALL")
    for i in range(0, len(uids), 1000):
        client.fetch(uids[i : i + 1000], ["UID", "RFC822.SIZE"])
    client.logout()


def _login(dovecot: Dovecot) -> imapclient.IMAPClient:
    client = imapclient.IMAPClient("127.0.0.1", dovecot.port, ssl=False)
    client.login(USER, PASSWORD)
    return client


def raw_fetch(dovecot: Dovecot) -> tuple[int, float]:
    client = _login(dovecot)
    start = time.perf_counter()
    client.select_folder("INBOX", readonly=True)
    uids = client.search("ALL")
    total = 0
    for i in range(0, len(uids), 1000):
        total += len(client.fetch(uids[i : i + 1000], ["BODY.PEEK[]"]))
    elapsed = time.perf_counter() - start
    client.logout()
    return total, elapsed


def mbsync(dovecot: Dovecot, work: Path) -> float | None:
    exe = shutil.which("mbsync")
    if exe is None:
        return None
    target = work / "mbsync-maildir"
    target.mkdir()
    conf = work / "mbsyncrc"
    conf.write_text(
        f"IMAPAccount bench\nHost 127.0.0.1\nPort {dovecot.port}\nUser {USER}\nPass {PASSWORD}\n"
        "SSLType None\nAuthMechs LOGIN\n\nIMAPStore remote\nAccount bench\n\n"
        f"MaildirStore local\nPath {target}/\nInbox {target}/INBOX\n\n"
        "Channel bench\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSync Pull\n"
        "SyncState *\n"  # state inside the Maildir: never reuse a previous run's
    )
    start = time.perf_counter()
    subprocess.run([exe, "-q", "-c", str(conf), "bench"], check=True)
    return time.perf_counter() - start


def _peak_rss_mb() -> float:
    """This process's own peak RSS.  Not getrusage's ru_maxrss: on Linux that carries the
    parent's peak across fork and exec, so it would grow with the size of the seeded data."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def syncd_child(port: int, work: Path) -> dict[str, float]:
    """Runs in its own process: backfill, then an unchanged re-sync; reports timings and peak RSS."""
    from syncd.config import parse_config
    from syncd.engine.mail_sync import MailSync
    from syncd.store.database import open_database
    from syncd.store.directory import ensure_contact, ensure_customer

    config = parse_config(
        {
            "database": {"url": f"sqlite:///{work / 'bench.db'}"},
            "organization": {"internal_domains": ["example.com"]},
            "capture": {"batch_size": int(os.environ.get("SYNCD_BENCH_BATCH", "500"))},
            "mailbox": [
                {
                    "name": "bench",
                    "owner": "alice@example.com",
                    "host": "127.0.0.1",
                    "port": port,
                    "security": "plain",
                    "username": USER,
                    "password": PASSWORD,
                    "folders": ["INBOX"],
                }
            ],
        }
    )
    engine = open_database(config.database.url)
    with engine.begin() as conn:
        for line in CUSTOMERS_CSV.splitlines()[1:]:
            name, domains, contact_name, email = line.split(",")
            customer_id, _ = ensure_customer(conn, name, domains.split(";") if domains else [])
            if email:
                ensure_contact(conn, email, customer_id=customer_id, name=contact_name)
    sync = MailSync(engine, config)
    start = time.perf_counter()
    (result,) = sync.run_once()
    backfill = time.perf_counter() - start
    assert result.ok, result
    start = time.perf_counter()
    (again,) = sync.run_once()
    resync = time.perf_counter() - start
    assert again.folders[0].captured == 0
    folder = result.folders[0]
    return {
        "backfill_s": backfill,
        "resync_s": resync,
        "captured": folder.captured,
        "skipped": folder.skipped,
        "quarantined": folder.quarantined,
        "peak_rss_mb": _peak_rss_mb(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--child", nargs=2, metavar=("PORT", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(syncd_child(int(args.child[0]), Path(args.child[1]))))
        return 0

    work = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    work.chmod(0o755)  # Dovecot's unprivileged processes must reach its folder inside
    dovecot = Dovecot(work / "dovecot", {USER: PASSWORD}).start()
    try:
        t = time.perf_counter()
        seed(dovecot, args.messages)
        print(
            f"seeded {args.messages} messages in {time.perf_counter() - t:.1f}s (Dovecot index warmed)"
        )

        fetched, raw_s = raw_fetch(dovecot)
        raw_rate = fetched / raw_s
        mbsync_s = mbsync(dovecot, work)
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(dovecot.port), str(work)],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        dovecot.stop()
        shutil.rmtree(work, ignore_errors=True)

    processed = args.messages
    syncd_rate = processed / figures["backfill_s"]
    print(
        f"\nmessages: {processed} ({figures['captured']} captured, {figures['skipped']} skipped, "
        f"{figures['quarantined']} quarantined)"
    )
    print(f"raw imapclient BODY.PEEK[] : {raw_rate:9.0f} msg/s  ({raw_s:.2f}s)")
    if mbsync_s is not None:
        print(f"mbsync (C) to Maildir      : {processed / mbsync_s:9.0f} msg/s  ({mbsync_s:.2f}s)")
    print(f"syncd end to end (SQLite)  : {syncd_rate:9.0f} msg/s  ({figures['backfill_s']:.2f}s)")
    print(f"syncd / raw imapclient     : {syncd_rate / raw_rate:9.2f}x")
    if mbsync_s is not None:
        print(f"syncd / mbsync             : {syncd_rate / (processed / mbsync_s):9.2f}x")
    print(f"syncd peak RSS             : {figures['peak_rss_mb']:9.0f} MB")
    print(f"syncd re-sync, unchanged   : {figures['resync_s'] * 1000:9.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
