"""Email capture benchmark: syncd vs raw imapclient vs mbsync, from one run.

    .venv/bin/python bench/capture.py --messages 20000

Seeds one Dovecot mailbox with N sample messages (~3.3 KB), warms Dovecot's index, then measures
in the same run: the raw imapclient fetch rate (BODY.PEEK[] in batches of 1,000), mbsync's rate
into a Maildir, syncd's end-to-end backfill rate on SQLite (fetch, parse, match, store; in a child
process so its peak RSS is its own), and syncd's re-sync time when nothing changed.  The syncd
backfill runs --rounds times with the outbox's record.created events and as often without them,
alternated, and prints the ratio (wall and CPU): what the events cost a large backfill.  A third
kind of run has a [[webhook]] endpoint (the verifying receiver of tests/servers/webhook.py, in
its own process) and its deliverer running in the same process during the backfill, as in
`syncd run`: the ratio to the run with the events but no webhook is the webhook's cost
(target: >= 0.90x); the ratio to the run without events is the feed's and the webhook's.

First of all, the figure issue #20 sets its targets on: ``syncd sync`` run as a user runs it,
a fresh process from start to exit (imports, migrations, the pass, the follow-up rules),
on a fresh SQLite database with the sample customers imported: its rate against mbsync
(target >= 2x) and the raw imapclient fetch (target >= 0.25x) of the same run, and its
peak RSS (target <= 200 MB), best of --rounds.
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
from typing import Any

# The test servers and sample data are not installed: they live in the checkout's
# tests/servers/, so the checkout's root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imapclient

from bench.webhooks import ReceiverProcess
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port
from tests.servers.sample import CUSTOMERS_CSV, generate
from tests.servers.webhook import new_secret

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


def _no_events(*_args: Any, **_kwargs: Any) -> None:
    """The reference run's stand-in for the record.created events."""


def syncd_child(port: int, work: Path, db_name: str, mode: str) -> dict[str, float]:
    """Runs in its own process: backfill, then an unchanged re-sync; reports timings (wall
    and this process's CPU), the events written and peak RSS.  ``events`` off: the reference
    run, without the outbox's record.created events.  Mode "0": no events, "1": events,
    "2": events and a webhook deliverer sending them while the backfill runs."""
    from syncd.config_file import parse_config
    from syncd.engine.imap.mail_sync import MailSync
    from syncd.store import outbox
    from syncd.store.database import open_database
    from syncd.store.directory import ensure_contact, ensure_customer
    from syncd.store.event_upkeep import count

    events = mode != "0"
    # The events' own CPU inside this very backfill: a figure the machine's other load
    # disturbs far less than comparing two runs.
    in_events = [0.0]
    emit = outbox.emit_created_emails

    def timed_emit(*args: Any, **kwargs: Any) -> None:
        start = time.process_time()
        emit(*args, **kwargs)
        in_events[0] += time.process_time() - start

    # The reference run stands a no-op in for the emitter (this child process only).
    outbox.emit_created_emails = timed_emit if events else _no_events  # type: ignore[assignment]
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{work / db_name}"},
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
            "webhook": [_bench_webhook()] if mode == "2" else [],
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
    worker = None
    if config.webhook:
        from syncd.webhooks.deliverer import EndpointWorker
        from syncd.webhooks.queue import ensure_endpoints

        with engine.begin() as conn:
            ensure_endpoints(conn, config.webhook)
        worker = EndpointWorker(engine, config.webhook[0], "bench").start()
    start, cpu = time.perf_counter(), time.process_time()
    (result,) = sync.run_once()
    backfill = time.perf_counter() - start
    backfill_cpu = time.process_time() - cpu
    delivered = drained = 0
    drain_s = 0.0
    if worker is not None:
        from sqlalchemy import func, select

        from syncd.schema.tables import events as events_table
        from syncd.schema.tables import webhook_endpoints

        def sent() -> int:
            with engine.connect() as conn:
                return int(conn.scalar(select(webhook_endpoints.c.delivered)) or 0)

        delivered = sent()
        # Then the backlog the trickle left: how long until the receiver has every event.
        with engine.connect() as conn:
            total = int(conn.scalar(select(func.count()).select_from(events_table)) or 0)
        deadline = time.monotonic() + 300
        while (drained := sent()) < total and time.monotonic() < deadline:
            time.sleep(0.02)
        drain_s = time.perf_counter() - start - backfill
        worker.stop()
        worker.join(30)
    assert result.ok, result
    start = time.perf_counter()
    (again,) = sync.run_once()
    resync = time.perf_counter() - start
    assert again.folders[0].captured == 0
    folder = result.folders[0]
    with engine.connect() as conn:
        written = count(conn)
    assert written == (folder.captured if events else 0), written
    return {
        "backfill_s": backfill,
        "backfill_cpu_s": backfill_cpu,
        "events_cpu_s": in_events[0],
        "events": written,
        "delivered": delivered,  # by the webhook during the backfill (mode "2")
        "drained": drained,  # ... and in all, once it had delivered the rest
        "drain_s": drain_s,  # seconds from the backfill's end until then
        "resync_s": resync,
        "captured": folder.captured,
        "skipped": folder.skipped,
        "quarantined": folder.quarantined,
        "peak_rss_mb": _peak_rss_mb(),
    }


CLI_CONFIG = """\
[database]
url = "sqlite:///{db}"

[organization]
internal_domains = ["example.com"]

[[mailbox]]
name = "bench"
owner = "alice@example.com"
host = "127.0.0.1"
port = {port}
security = "plain"
username = "{user}"
password = "{password}"
folders = ["INBOX"]
"""
# `syncd sync` as its console script runs it, and this process's own peak RSS (VmHWM of
# its own memory map, not ru_maxrss, which carries the parent's over fork and exec), and
# the largest of its children's (the backlog's parse worker): ru_maxrss, pages it shares
# with its parent since the fork included.
_CLI = (
    "import atexit, resource, sys\n"
    "from pathlib import Path\n"
    "def peak():\n"
    "    for line in Path('/proc/self/status').read_text().splitlines():\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('peak_rss_kb', line.split()[1], file=sys.stderr)\n"
    "    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "    print('child_peak_rss_kb', child, file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "from syncd.cli.main import main\n"
    "sys.argv[0] = 'syncd'\n"
    "main()\n"
)


def cli_sync(dovecot: Dovecot, work: Path, n: int) -> tuple[float, float, float, float]:
    """``syncd sync`` end to end in a fresh process on a fresh database: (wall seconds from
    the start of the process to its exit, its CPU seconds, its peak RSS in MB, its parse
    worker's peak RSS in MB, 0 without one)."""
    where = work / f"cli-{n}"
    where.mkdir()
    config = where / "syncd.toml"
    config.write_text(
        CLI_CONFIG.format(db=where / "syncd.db", port=dovecot.port, user=USER, password=PASSWORD)
    )
    (where / "customers.csv").write_text(CUSTOMERS_CSV)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["SYNCD_CONFIG"] = str(config)
    syncd = [sys.executable, "-c", _CLI]
    # The database and the directory exist before, as they would for a rep's new mailbox.
    subprocess.run(
        [*syncd, "customers", "import", str(where / "customers.csv")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([*syncd, "sync"], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or "bench: " not in done.stdout:
        raise SystemExit(f"syncd sync failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    peak = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("peak_rss_kb")]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    child = [
        line.split()[1] for line in done.stderr.splitlines() if line.startswith("child_peak_rss_kb")
    ]
    return wall, cpu, int(peak[-1]) / 1024, int(child[-1]) / 1024


def _bench_webhook() -> dict[str, Any]:
    url, secret = os.environ["SYNCD_BENCH_WEBHOOK"].split(" ", 1)
    return {"name": "bench", "url": url, "secret": secret}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument(
        "--rounds", type=int, default=2, help="backfills with and without events, alternated"
    )
    parser.add_argument(
        "--cli-only", action="store_true", help="only the CLI end to end, raw imapclient, mbsync"
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("PORT", "WORKDIR", "DB", "EVENTS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        port, workdir, db_name, events = args.child
        print(json.dumps(syncd_child(int(port), Path(workdir), db_name, events)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    work.chmod(0o755)  # Dovecot's unprivileged processes must reach its folder inside
    dovecot = Dovecot(work / "dovecot", {USER: PASSWORD}).start()
    secret = new_secret()
    receiver = ReceiverProcess(free_port(), secret).start()
    os.environ["SYNCD_BENCH_WEBHOOK"] = f"http://127.0.0.1:{receiver.port}/hooks {secret}"
    try:
        t = time.perf_counter()
        seed(dovecot, args.messages)
        print(
            f"seeded {args.messages} messages in {time.perf_counter() - t:.1f}s (Dovecot index warmed)"
        )

        fetched, raw_s = raw_fetch(dovecot)
        raw_rate = fetched / raw_s
        mbsync_s = mbsync(dovecot, work)
        cli_runs = [cli_sync(dovecot, work, n) for n in range(args.rounds)]
        # With and without the outbox's events, alternated, each in a fresh database: the
        # best of each kind, so another process's burst on a shared machine counts less.
        runs: dict[str, list[dict[str, float]]] = {"1": [], "0": [], "2": []}
        for n in range(0 if args.cli_only else args.rounds):
            for events in ("0", "1", "2"):
                db_name = f"bench-{events}-{n}.db"
                child = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        str(dovecot.port),
                        str(work),
                        db_name,
                        events,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                runs[events].append(json.loads(child.stdout.strip().splitlines()[-1]))
        figures = reference = hooked = {}
        best_cpu = reference_cpu = 0.0
        bad = 0
        if not args.cli_only:
            figures = min(runs["1"], key=lambda f: f["backfill_s"])
            reference = min(runs["0"], key=lambda f: f["backfill_s"])
            best_cpu = min(f["backfill_cpu_s"] for f in runs["1"])
            reference_cpu = min(f["backfill_cpu_s"] for f in runs["0"])
            hooked = min(runs["2"], key=lambda f: f["backfill_s"])
            bad = receiver.stats()["bad_signatures"]
    finally:
        receiver.stop()
        dovecot.stop()
        shutil.rmtree(work, ignore_errors=True)

    processed = args.messages
    cli_wall, cli_cpu, cli_peak, cli_child_peak = min(cli_runs)
    cli_rate = processed / cli_wall
    print(
        f"\nsyncd sync, the CLI end to end (process start to exit, SQLite), best of {args.rounds}:"
    )
    print(
        f"  {cli_rate:9.0f} msg/s ({cli_wall:.2f}s wall, {cli_cpu:.2f}s CPU, {processed} messages)"
    )
    print(f"  / raw imapclient fetch    : {cli_rate / raw_rate:9.2f}x (target >= 0.25x)")
    if mbsync_s is not None:
        print(
            f"  / mbsync                  : {cli_rate / (processed / mbsync_s):9.2f}x (target >= 2x)"
        )
    print(f"  peak RSS                  : {cli_peak:9.0f} MB (target <= 200 MB)")
    print(
        f"  parse worker's peak RSS   : {cli_child_peak:9.0f} MB (pages shared with the"
        " parent since the fork counted in both)"
    )
    print(f"  CPU per message           : {1e6 * cli_cpu / processed:9.0f} us")
    if args.cli_only:
        return 0
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
    plain_rate = processed / reference["backfill_s"]
    print(
        f"  without events (reference): {plain_rate:9.0f} msg/s  ({reference['backfill_s']:.2f}s)"
    )
    print(
        f"  events written            : {figures['events']:9.0f} (record.created, one per record)"
    )
    print(
        f"  with / without events     : {syncd_rate / plain_rate:9.3f}x wall (best of {args.rounds})"
    )
    print(
        f"  CPU with / without events : {reference_cpu / best_cpu:9.3f}x speed "
        f"({best_cpu:.2f}s / {reference_cpu:.2f}s of syncd's own CPU)"
    )
    share = figures["events_cpu_s"] / figures["backfill_cpu_s"]
    print(
        f"  events' CPU in that run    : {share:9.1%} of syncd's CPU "
        f"({figures['events_cpu_s']:.2f}s of {figures['backfill_cpu_s']:.2f}s)"
    )
    hooked_rate = processed / hooked["backfill_s"]
    print(
        f"  with a webhook delivering : {hooked_rate:9.0f} msg/s  ({hooked['backfill_s']:.2f}s; "
        f"{hooked['delivered']:.0f} of {hooked['events']:.0f} events delivered during it, "
        f"{bad} bad signatures)"
    )
    until_all = hooked["backfill_s"] + hooked["drain_s"]
    print(
        f"  backfill's events received: {hooked['drained']:.0f} of {hooked['events']:.0f}, "
        f"{hooked['drain_s']:.2f}s after the backfill ended: "
        f"{(hooked['drained'] - hooked['delivered']) / max(hooked['drain_s'], 1e-9):.0f} events/s "
        f"then, {hooked['drained'] / until_all:.0f} events/s from the backfill's start "
        f"(target >= 1,000/s)"
    )
    # The outbox is always on (it is the event feed); a webhook is what an admin adds.
    print(
        f"  webhook / without webhook : {hooked_rate / syncd_rate:9.3f}x wall (target >= 0.90x;"
        " both with the outbox's events)"
    )
    print(f"  webhook / without events  : {hooked_rate / plain_rate:9.3f}x wall")
    print(
        f"  CPU with a webhook        : {hooked['backfill_cpu_s']:9.2f}s of syncd's process "
        f"(capture and deliverer threads) vs {reference_cpu:.2f}s without events"
    )
    print(f"syncd peak RSS             : {figures['peak_rss_mb']:9.0f} MB")
    print(f"syncd re-sync, unchanged   : {figures['resync_s'] * 1000:9.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
