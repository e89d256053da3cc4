"""Poll benchmark: what idle polls cost with kept IMAP sessions and with a login per poll.

    .venv/bin/python bench/polls.py --mailboxes 200 --interval 10 --window 60

`syncd run` (a real subprocess, IDLE off so that only polls talk to the server) polls N
mailboxes with nothing arriving, first with `[sync] keep_connections = 0` (today's login
per poll: the reference), then with kept sessions, on the same Dovecot in the same run.
For each: logins per minute (Dovecot's log), polls done (the daemon's metrics), and the
CPU of the daemon and of Dovecot (all its processes) per round of polls over every mailbox.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select

import tests.servers.dovecot as dovecot_module
from bench.daemon import TICK, count, cpu_seconds, wait
from syncd.schema.tables import source_states
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port

SYNCD = str(Path(sys.executable).parent / "syncd")
# Dovecot allows 100 imap processes by default; kept sessions hold one per mailbox.
LIMITS = """
default_process_limit = 2000
default_client_limit = 4000
service imap {{
  process_limit = 2000
}}
"""  # braces doubled: the server's config is a str.format template


@dataclass
class Figures:
    logins_per_minute: float
    polls: int
    rounds: float
    daemon_cpu_per_round: float  # seconds
    dovecot_cpu_per_round: float  # seconds


def config_text(
    db: Path, port: int, metrics: int, users: list[str], args: argparse.Namespace, keep: int
) -> str:
    boxes = "".join(
        f'[[mailbox]]\nname = "{u}"\nowner = "{u}@example.com"\nhost = "127.0.0.1"\nport = {port}\n'
        f'security = "plain"\nusername = "{u}"\npassword = "pw-{u}"\nfolders = ["INBOX", "Sent"]\n\n'
        for u in users
    )
    return (
        f'[database]\nurl = "sqlite:///{db}"\n[organization]\ninternal_domains = ["example.com"]\n'
        f"[sync]\ninterval = {args.interval}\njitter = 0.1\nconcurrency = 8\nidle = false\n"
        f"keep_connections = {keep}\n"
        f'[metrics]\nlisten = "127.0.0.1:{metrics}"\n\n{boxes}'
    )


def polls_done(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(
        sum(
            float(v)
            for v in re.findall(r"^syncd_sync_duration_seconds_count\{[^}]*\} (\S+)$", text, re.M)
        )
    )


def dovecot_cpu_seconds(server: Dovecot) -> float:
    """CPU of this bench's Dovecot only (other Dovecots may run on the machine): its master,
    the children it reaped (logins that ended) and the children alive now."""
    master = int((server.root / "run" / "master.pid").read_text())
    fields = Path(f"/proc/{master}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / TICK
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:  # the parent pid
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def logins(server: Dovecot) -> int:
    return (server.root / "dovecot.log").read_text().count("imap-login: Info: Login:")


def measure(
    server: Dovecot, work: Path, users: list[str], args: argparse.Namespace, keep: int
) -> Figures:
    name = f"keep{keep}"
    db, port = work / f"{name}.db", free_port()
    config = work / f"{name}.toml"
    config.write_text(config_text(db, server.port, port, users, args, keep))
    with (work / f"{name}.log").open("wb") as out:
        daemon = subprocess.Popen([SYNCD, "--config", str(config), "run"], stdout=out, stderr=out)
    try:
        done = (
            select(func.count())
            .select_from(source_states)
            .where(source_states.c.place == "", source_states.c.last_success_at.is_not(None))
        )
        wait(lambda: count(db, done) == len(users), 300)
        time.sleep(args.interval * 1.5)  # every mailbox past its first (examining) poll
        polls0, logins0 = polls_done(port), logins(server)
        cpu0, dov0, t0 = cpu_seconds(daemon.pid), dovecot_cpu_seconds(server), time.perf_counter()
        time.sleep(args.window)
        elapsed = time.perf_counter() - t0
        cpu1, dov1 = cpu_seconds(daemon.pid), dovecot_cpu_seconds(server)
        polls1, logins1 = polls_done(port), logins(server)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    polls = polls1 - polls0
    rounds = polls / len(users)
    return Figures(
        logins_per_minute=(logins1 - logins0) * 60 / elapsed,
        polls=polls,
        rounds=rounds,
        daemon_cpu_per_round=(cpu1 - cpu0) / rounds,
        dovecot_cpu_per_round=(dov1 - dov0) / rounds,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between polls")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured per mode")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-polls-", dir="/tmp"))
    work.chmod(0o755)
    users = [f"rep{n}" for n in range(args.mailboxes)]
    dovecot_module._CONFIG += LIMITS  # the bench's own server: more processes
    server = Dovecot(work / "dovecot", {u: f"pw-{u}" for u in users}).start()
    try:
        for n, user in enumerate(users):  # a little mail, as in any real mailbox
            server.deliver(
                user,
                f"From: a@acme.com\r\nTo: {user}@example.com\r\nSubject: {n}\r\n"
                f"Message-ID: <m{n}@acme.com>\r\n\r\nHi\r\n".encode(),
            )
        fresh = measure(server, work, users, args, keep=0)
        kept = measure(server, work, users, args, keep=1000)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{args.mailboxes} idle mailboxes (INBOX + Sent), polled every {args.interval:.0f} s, "
        f"{args.window:.0f} s measured per mode"
    )
    print(f"  {'':34} {'login per poll':>15} {'kept sessions':>15} {'ratio':>8}")
    rows = [
        ("polls in the window", fresh.polls, kept.polls, "{:15.0f}"),
        ("logins per minute", fresh.logins_per_minute, kept.logins_per_minute, "{:15.1f}"),
        (
            "daemon CPU per round (ms)",
            fresh.daemon_cpu_per_round * 1000,
            kept.daemon_cpu_per_round * 1000,
            "{:15.0f}",
        ),
        (
            "Dovecot CPU per round (ms)",
            fresh.dovecot_cpu_per_round * 1000,
            kept.dovecot_cpu_per_round * 1000,
            "{:15.0f}",
        ),
    ]
    for label, a, b, fmt in rows:
        ratio = f"{a / b:7.1f}x" if b else "      -"
        print(f"  {label:34} {fmt.format(a)} {fmt.format(b)} {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
