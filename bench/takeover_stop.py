"""SIGTERM right after a takeover: how long the daemon that took over takes to exit.

    .venv/bin/python bench/takeover_stop.py --mailboxes 1000      # b takes ~500 over

Two daemons share ``--mailboxes`` mailboxes of one Dovecot on one PostgreSQL; once both
watch their share, ``a`` is killed (-9), and as soon as ``b`` has claimed a's mailboxes
(its watches logging in, its polls waiting on them) ``b`` gets SIGTERM.  With ``--pause``
the Dovecot is paused (SIGSTOP) before the kill, so every login of the takeover hangs.
Target (issue 19): exit within 10 s.  Reference in the same run: b's exit when it holds
its share and nothing is in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from sqlalchemy import create_engine, func, select

from syncd.schema.tables import daemons, source_health
from syncd.store.database import open_database
from tests.servers.dovecot import Dovecot
from tests.servers.postgres import admin_url, scratch_database

SYNCD = str(Path(sys.executable).parent / "syncd")


def config_text(db_url: str, server: Dovecot) -> str:
    boxes = "".join(
        f'[[mailbox]]\nname = "{u}"\nowner = "{u}@example.com"\nhost = "127.0.0.1"\n'
        f'port = {server.port}\nsecurity = "plain"\nusername = "{u}"\npassword = "{p}"\n'
        'folders = ["INBOX"]\n\n'
        for u, p in server.users.items()
    )
    return (
        f'[database]\nurl = "{db_url}"\n[organization]\ninternal_domains = ["example.com"]\n'
        f"[sync]\ninterval = 600\nconcurrency = 8\n\n{boxes}"
    )


def wait(predicate: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def held(engine: object, pid: int) -> int:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(
            conn.scalar(
                select(func.count())
                .select_from(source_health)
                .join(daemons, daemons.c.id == source_health.c.daemon_id)
                .where(daemons.c.pid == pid)
            )
            or 0
        )


def stop_steps(log: Path) -> str:
    """From b's log: seconds from SIGTERM to each event of its stop."""
    events = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    starts = [e["timestamp"] for e in events if e.get("event") == "daemon.stopping"]
    start = starts[-1] if starts else None
    if start is None:
        return "no daemon.stopping in the log"
    t0 = datetime.fromisoformat(start)
    steps = [
        f"{e['event']} +{(datetime.fromisoformat(e['timestamp']) - t0).total_seconds():.1f}s"
        for e in events
        if e.get("timestamp", "") >= start and e.get("event") != "idle.stopped"
    ]
    return ", ".join(steps[:12])


def stop_time(proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return float("inf")
    return time.monotonic() - started


def run_once(
    work: Path, db_url: str, server: Dovecot, n: int, *, pause: bool, takeover: bool
) -> float:
    config = work / "syncd.toml"
    config.write_text(config_text(db_url, server))
    open_database(db_url).dispose()  # migrated before the daemons race to it
    engine = create_engine(db_url)
    procs = []
    try:
        for name in ("a", "b"):
            with (work / f"{name}.log").open("ab") as out:
                procs.append(
                    subprocess.Popen(
                        [SYNCD, "--config", str(config), "run"], stdout=out, stderr=out
                    )
                )
        a, b = procs
        wait(
            lambda: (
                held(engine, a.pid) >= 0.4 * n and held(engine, a.pid) + held(engine, b.pid) == n
            ),
            300,
            "both hold their share",
        )
        wait(lambda: server.connections() >= n, 300, "every mailbox watched")
        if not takeover:
            took = stop_time(b)
            print(f"  b's stop: {stop_steps(work / 'b.log')}")
            return took
        master = int((server.root / "run" / "master.pid").read_text().strip())
        if pause:
            os.killpg(master, signal.SIGSTOP)
        share = held(engine, a.pid)
        a.kill()
        a.wait()
        wait(lambda: held(engine, b.pid) == n, 120, "b took a's mailboxes over")
        time.sleep(0.5)  # b's main loop starts the watches of what it gained
        took = stop_time(b)
        print(f"  b took over {share} mailboxes; b's stop: {stop_steps(work / 'b.log')}")
        if pause:
            os.killpg(master, signal.SIGCONT)
        return took
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--pause", action="store_true", help="pause Dovecot before the kill")
    args = parser.parse_args()
    n = args.mailboxes
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-stop-", dir="/tmp"))
    work.chmod(0o755)
    server = Dovecot(
        work / "dovecot", {f"rep{i}": f"pw-rep{i}" for i in range(n)}, max_connections=3 * n
    )
    server.start()
    try:
        with admin_url(work / "pg") as admin:
            with scratch_database(admin) as db_url:
                ref = run_once(work, db_url, server, n, pause=False, takeover=False)
            print(f"reference: SIGTERM of a daemon holding its share of {n}: {ref:.1f} s")
            with scratch_database(admin) as db_url:
                took = run_once(work, db_url, server, n, pause=args.pause, takeover=True)
            print(
                f"SIGTERM right after the takeover{' (Dovecot paused)' if args.pause else ''}: "
                f"{took:.1f} s ({took / ref:.1f}x the reference; target <= 10 s)"
            )
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int((server.root / "run" / "master.pid").read_text().strip()), signal.SIGCONT)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
