"""Daemon benchmark: IDLE push latency, and the cost of many idle mailboxes, from one run.

    .venv/bin/python bench/daemon.py --deliveries 20 --mailboxes 200 --window 90

1. Latency: `syncd run` (a real subprocess, polls every 10 minutes, so only IDLE explains a
   quick record) watches one mailbox; messages are delivered one at a time and the time
   from delivery to the committed record is measured.  Reference, in the same run: a bare
   imapclient connection in IDLE on the same server, from delivery to its EXISTS.
2. Idle load: the daemon serves N mailboxes with nothing arriving; after every first sync,
   its CPU (of one core) and RSS are read from /proc over a window, beside Dovecot's own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The test servers and sample data are not installed: they live in the checkout's
# tests/servers/, so the checkout's root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imapclient
from sqlalchemy import create_engine, func, select

from syncd.schema.tables import mailbox_states, records
from tests.servers.dovecot import Dovecot

SYNCD = str(Path(sys.executable).parent / "syncd")
TICK = os.sysconf("SC_CLK_TCK")


def message(n: int) -> bytes:
    return (
        f"From: Wile <wile@acme.com>\r\nTo: Rep <rep0@example.com>\r\nSubject: Push {n}\r\n"
        f"Message-ID: <push{n}@acme.com>\r\nDate: Mon, 3 Jun 2024 09:00:00 +0000\r\n\r\nHello\r\n"
    ).encode()


def config_text(db: Path, port: int, users: list[str], interval: int) -> str:
    boxes = "".join(
        f'[[mailbox]]\nname = "{u}"\nowner = "{u}@example.com"\nhost = "127.0.0.1"\nport = {port}\n'
        f'security = "plain"\nusername = "{u}"\npassword = "pw-{u}"\nfolders = ["INBOX"]\n\n'
        for u in users
    )
    return (
        f'[database]\nurl = "sqlite:///{db}"\n[organization]\ninternal_domains = ["example.com"]\n'
        f"[sync]\ninterval = {interval}\nconcurrency = 8\n\n{boxes}"
    )


def count(db: Path, query: object) -> int:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return int(conn.scalar(query) or 0)  # type: ignore[call-overload]
    except Exception:
        return 0
    finally:
        engine.dispose()


def wait(predicate: object, timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.perf_counter() - started
        time.sleep(0.01)
    raise SystemExit(f"timed out after {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> tuple[float, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def dovecot_cpu_seconds() -> float:
    """CPU of every Dovecot process so far: the master's own and its reaped children's, plus
    the children still running (IMAP processes come and go with each poll's login)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if comm == "dovecot":
            total += sum(int(f) for f in fields[11:15]) / TICK
        elif comm in ("imap", "imap-login", "auth", "anvil", "log", "config", "stats"):
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([SYNCD, "--config", str(config), "run"], stdout=out, stderr=out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=20)
    parser.add_argument("--mailboxes", type=int, default=200)
    parser.add_argument(
        "--window",
        type=float,
        default=90.0,
        help="seconds measured; over 60 covers a round of polls",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-daemon-", dir="/tmp"))
    work.chmod(0o755)
    users = [f"rep{n}" for n in range(args.mailboxes)]
    server = Dovecot(work / "dovecot", {u: f"pw-{u}" for u in users}).start()
    try:
        # --- 1. latency -------------------------------------------------------------------
        db = work / "latency.db"
        (work / "latency.toml").write_text(config_text(db, server.port, users[:1], 600))
        daemon = start_daemon(work / "latency.toml", work / "latency.log")
        wait(lambda: count(db, select(func.count()).select_from(mailbox_states)) == 1, 30)
        time.sleep(1.0)  # the watcher logs in and enters IDLE
        watcher = imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False)
        watcher.login("rep0", "pw-rep0")
        watcher.select_folder("INBOX", readonly=True)
        raw, ours = [], []
        for n in range(args.deliveries):
            watcher.idle()
            before = count(db, select(func.count()).select_from(records))
            t = time.perf_counter()
            server.deliver("rep0", message(n))
            while not any(r[1:2] == (b"EXISTS",) for r in watcher.idle_check(timeout=5)):
                pass
            raw.append(time.perf_counter() - t)
            watcher.idle_done()
            wait(lambda b=before: count(db, select(func.count()).select_from(records)) > b, 30)
            ours.append(time.perf_counter() - t)  # from the same delivery instant
        watcher.logout()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)

        # --- 2. idle load -------------------------------------------------------------------
        db = work / "idle.db"
        (work / "idle.toml").write_text(config_text(db, server.port, users, 60))
        t = time.perf_counter()
        daemon = start_daemon(work / "idle.toml", work / "idle.log")
        done = (
            select(func.count())
            .select_from(mailbox_states)
            .where(mailbox_states.c.last_success_at.is_not(None))
        )
        wait(lambda: count(db, done) == len(users), 300)
        first_pass = time.perf_counter() - t
        time.sleep(3)  # IDLE watchers settle
        cpu0, dov0 = cpu_seconds(daemon.pid), dovecot_cpu_seconds()
        t0 = time.perf_counter()
        time.sleep(args.window)
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_seconds(daemon.pid)
        dov1 = dovecot_cpu_seconds()
        rss, peak = rss_mb(daemon.pid)
        threads = len(list(Path(f"/proc/{daemon.pid}/task").iterdir()))
        daemon.send_signal(signal.SIGTERM)
        t = time.perf_counter()
        daemon.wait(15)
        stop_s = time.perf_counter() - t
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    def p95(values: list[float]) -> float:
        return sorted(values)[max(0, round(0.95 * len(values)) - 1)]

    print(f"\nIDLE push, {args.deliveries} deliveries, one at a time")
    print(
        f"  bare IDLE client sees EXISTS   : p50 {statistics.median(raw) * 1000:6.0f} ms   p95 {p95(raw) * 1000:6.0f} ms"
    )
    print(
        f"  syncd delivered -> record      : p50 {statistics.median(ours) * 1000:6.0f} ms   p95 {p95(ours) * 1000:6.0f} ms   max {max(ours) * 1000:.0f} ms"
    )
    print(f"  syncd / bare IDLE (p95)        : {p95(ours) / p95(raw):6.1f}x")
    print(f"\n{args.mailboxes} idle mailboxes on one Dovecot (IDLE + polls every 60 s)")
    print(f"  first pass over all mailboxes  : {first_pass:6.1f} s")
    print(
        f"  syncd CPU over {elapsed:.0f} s          : {100 * (cpu1 - cpu0) / elapsed:6.2f} % of one core"
    )
    print(f"  Dovecot CPU, same window       : {100 * (dov1 - dov0) / elapsed:6.2f} % of one core")
    print(f"  syncd RSS now / peak           : {rss:6.0f} MB / {peak:.0f} MB   ({threads} threads)")
    print(f"  SIGTERM -> exit                : {stop_s:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
