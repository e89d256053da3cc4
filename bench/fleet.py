"""Fleet benchmark: N mailboxes over K `syncd run` daemons on one Dovecot and one PostgreSQL.

    .venv/bin/python bench/fleet.py --mailboxes 200 --daemons 2          # quick
    .venv/bin/python bench/fleet.py --mailboxes 2000 --daemons 2         # the issue's targets
    .venv/bin/python bench/fleet.py --mailboxes 10000 --daemons 4 --interval 60 --window 120

Every mailbox starts with ``--messages`` messages (files written into the Maildirs).  In one
run it measures:

1. capture: from the daemons' start until every message is a record;
2. idle, per daemon, once every source is held and watched: CPU (share of one core), RSS,
   threads; IMAP connections established to Dovecot in all; logins during the window;
3. SIGTERM of one daemon: mail delivered to (up to) 100 of its mailboxes right after,
   until all of it is captured by the others;
4. kill -9 of one daemon (after a replacement joined and took its share): the same;
5. 4 daemons: the largest share;
6. SIGTERM of a daemon in the middle of a takeover (one of the four stopped a second before):
   how long until it exits (target 10 s), and the mail of both captured by the others.
Every SIGTERM's exit time (signal to exit) is printed, the last ones of a daemon at rest.
No message may be captured twice: records and distinct keys are counted at the end.
Reference in the same run: Dovecot's own CPU over the idle window.

Past about 2,000 mailboxes the machine's PostgreSQL (max_connections 100) cannot take the
daemons' pools: the bench then starts a private cluster with room for them (the machine's
server is never reconfigured); ``--private-postgres`` asks for one at any size.  Dovecot
serves ``--clients-per-process`` connections an imap process (see tests/servers/dovecot.py).

``--verify-interval`` brings each daemon's verify waves into the failovers: a daemon's first
verify of every mailbox it holds comes at once, ``min(verify_interval, 600)`` s after its
start (at 10,000 mailboxes the capture alone takes that long, so the first wave falls in
the failovers anyway).

``--sent`` captures INBOX and Sent (default: INBOX alone); ``--compare-notify`` runs it all
twice, on a Dovecot that offers IMAP NOTIFY (Sent covered by the watch: no STATUS per poll)
and then on one that does not (a STATUS of Sent per poll), for the same-run ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

# The test servers are not installed: they live in the checkout's tests/servers/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, select, text

from syncd.domain.assignment import assign, source_key
from syncd.schema.tables import daemons, records, source_health
from tests.servers.dovecot import WITHOUT_NOTIFY, Dovecot
from tests.servers.ports import free_port
from tests.servers.postgres import admin_url, private_cluster, scratch_database

SYNCD = str(Path(sys.executable).parent / "syncd")
TICK = os.sysconf("SC_CLK_TCK")


def message(tag: str, n: int) -> bytes:
    return (
        f"From: Wile <wile@acme.com>\r\nTo: Rep <rep@example.com>\r\nSubject: Fleet {tag} {n}\r\n"
        f"Message-ID: <{tag}-{n}@acme.com>\r\nDate: Mon, 3 Jun 2024 09:00:00 +0000\r\n\r\n"
        "Hello\r\n"
    ).encode()


def config_text(
    db_url: str,
    port: int,
    users: list[str],
    concurrency: int,
    interval: int = 600,
    folders: str = '["INBOX"]',
    verify_interval: int | None = None,
) -> str:
    boxes = "".join(
        f'[[mailbox]]\nname = "{u}"\nowner = "{u}@example.com"\nhost = "127.0.0.1"\n'
        f'port = {port}\nsecurity = "plain"\nusername = "{u}"\npassword = "pw-{u}"\n'
        f"folders = {folders}\n\n"
        for u in users
    )
    # Polls every 10 minutes by default: push and lease handovers are what is measured.
    return (
        f'[database]\nurl = "{db_url}"\n[organization]\ninternal_domains = ["example.com"]\n'
        f"[sync]\ninterval = {interval}\nconcurrency = {concurrency}\n"
        + ("" if verify_interval is None else f"verify_interval = {verify_interval}\n")
        + f"\n{boxes}"
    )


class Daemon:
    def __init__(self, work: Path, base_config: str, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.config = work / f"{name}.toml"
        self.config.write_text(base_config + f'\n[metrics]\nlisten = "127.0.0.1:{self.port}"\n')
        self.log = work / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [SYNCD, "--config", str(self.config), "run"], stdout=out, stderr=out
            )
        self.exited_after: float | None = None  # seconds from the last signal to the exit

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig``; a thread notes how long the daemon takes to exit (a wall clock)."""
        started = time.perf_counter()

        def clock() -> None:
            self.proc.wait()
            self.exited_after = time.perf_counter() - started

        self.proc.send_signal(sig)
        threading.Thread(target=clock, daemon=True).start()

    def exit_time(self, timeout: float = 60) -> str:
        """The exit time of the last signal, waiting up to ``timeout`` for it."""
        deadline = time.perf_counter() + timeout
        while self.exited_after is None and time.perf_counter() < deadline:
            time.sleep(0.05)
        return "still running" if self.exited_after is None else f"{self.exited_after:.1f}s"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metric(self, name: str) -> float:
        """The metric's value, summed over its labels (logins count per outcome)."""
        return self.metrics(name)[0]

    def metrics(self, *names: str) -> list[float]:
        """Several metrics from one scrape: at 500 sources a scrape costs the daemon about
        0.1 s of CPU, which a reading inside the idle window counts."""
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                lines = response.read().decode().splitlines()
        except OSError:
            return [float("nan")] * len(names)
        out = []
        for name in names:
            found = [
                float(line.rsplit(" ", 1)[1])
                for line in lines
                if line.startswith((name + " ", name + "{"))
            ]
            out.append(sum(found) if found else 0.0)
        return out

    def stat(self) -> tuple[float, float, int]:
        """CPU seconds so far, RSS in MB, threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{self.pid}/status").read_text().splitlines()
        )
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        return cpu, int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"])

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.alive():
            self.send(sig)
            self.exit_time(30)


def dovecot_cpu_seconds(server: Dovecot) -> float:
    """CPU of this Dovecot so far: its master with the children it reaped, plus the
    children still running (other Dovecots on the machine are not counted)."""
    master = int((server.root / "run" / "master.pid").read_text().strip())
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == master:
            total += sum(int(f) for f in fields[11:15]) / TICK
        elif int(fields[1]) == master:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def dovecot_memory(server: Dovecot) -> tuple[float, int, int]:
    """This Dovecot's proportional memory (PSS: shared pages split between the processes
    sharing them, so the sum is what it takes) in MB, its processes, and its imap ones."""
    master = int((server.root / "run" / "master.pid").read_text().strip())
    pss_kb, processes, imap = 0, 0, 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(entry.name) != master and int(fields[1]) != master:
                continue
            rollup = (entry / "smaps_rollup").read_text().splitlines()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        processes += 1
        imap += name == "imap"
        pss_kb += sum(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
    return pss_kb / 1024, processes, imap


def wait(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> float:
    """``every``: seconds between looks; at 10,000 mailboxes a look (a query of every lease,
    the rendezvous of every source) costs the bench a fraction of a core at 0.2 s."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if predicate():
            return time.perf_counter() - started
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


class Database:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def records(self) -> tuple[int, int]:
        try:
            with self.engine.connect() as conn:
                total = conn.scalar(select(func.count()).select_from(records)) or 0
                distinct = conn.scalar(select(func.count(func.distinct(records.c.key)))) or 0
        except Exception:  # the first daemon has not created the schema yet
            return 0, 0
        return int(total), int(distinct)

    def held(self) -> dict[int, list[str]]:
        """Mailboxes by the pid of the live daemon holding them."""
        out: dict[int, list[str]] = {}
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(daemons.c.pid, source_health.c.name)
                    .join(daemons, daemons.c.id == source_health.c.daemon_id)
                    .where(daemons.c.stopped_at.is_(None))
                ).all()
        except Exception:
            return {}
        for pid, name in rows:
            out.setdefault(int(pid), []).append(str(name))
        return out

    def sessions(self) -> int:
        """PostgreSQL connections to this database, the bench's own one included."""
        with self.engine.connect() as conn:
            return int(
                conn.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                )
                or 0
            )


def settled(db: Database, fleet: list[Daemon], n: int) -> bool:
    """Every mailbox held by the daemon of ``fleet`` that rendezvous hashing names, each
    daemon watching exactly what it holds."""
    held = db.held()
    with db.engine.connect() as conn:
        ids = dict(conn.execute(select(daemons.c.pid, daemons.c.id)).all())
    if any(d.pid not in ids for d in fleet):
        return False
    fleet_ids = [str(ids[d.pid]) for d in fleet]
    if sum(len(held.get(d.pid, [])) for d in fleet) != n:
        return False
    want = assign([source_key("mailbox", f"rep{i}") for i in range(n)], fleet_ids)
    for d, daemon_id in zip(fleet, fleet_ids, strict=True):
        mine = sorted(f"mailbox:{box}" for box in held.get(d.pid, []))
        if mine != sorted(want[daemon_id]) or d.metric("syncd_watchers_open") != len(mine):
            return False
    return True


def verifies(fleet: list[Daemon]) -> str:
    """Verifies done so far by ``fleet`` (its logs' verify.done lines): whether a failover
    fell in a verify wave."""
    done = 0
    for d in fleet:
        with contextlib.suppress(OSError), d.log.open("rb") as log:
            done += sum(line.count(b"verify.done") for line in log)
    return f"verifies done so far {done}"


def stop_steps(d: Daemon) -> str:
    """What its last stop spent where (its log's daemon.stopped line, after the exit)."""
    with contextlib.suppress(OSError), d.log.open("rb") as log:
        for line in reversed(log.readlines()[-200:]):
            if b"daemon.stop_overran" in line:  # left at the hard limit: the steps done
                with contextlib.suppress(ValueError):
                    return f"overran; stop steps done {json.loads(line).get('took')}"
            if b"daemon.stopped" in line:
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    return f"stop steps {event.get('took')}, dropped {event.get('dropped')} queued"
    return "no daemon.stopped line"


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def handover(
    server: Dovecot,
    db: Database,
    victim: Daemon,
    sig: signal.Signals,
    tag: str,
    limit: int,
    timeout: float,
) -> tuple[float, int]:
    """Signal ``victim``, deliver to up to ``limit`` of its mailboxes, time until captured."""
    boxes = sorted(db.held().get(victim.pid, []))[:limit]
    before = db.records()[0]
    victim.send(sig)
    started = time.perf_counter()
    for n, box in enumerate(boxes):
        server.deliver(box, message(tag, n))
    wait(lambda: db.records()[0] >= before + len(boxes), timeout, f"mail after {tag}")
    took = time.perf_counter() - started
    victim.exit_time(30)
    return took, len(boxes)


def term_in_takeover(
    server: Dovecot, db: Database, fleet: list[Daemon], timeout: float
) -> tuple[Daemon, Daemon]:
    """SIGTERM ``fleet[0]``; once ``fleet[1]`` has claimed some of its mailboxes (its watches
    logging in, their polls queued), SIGTERM that one too: its exit time is the figure.  New
    mail in 100 mailboxes of each must still be captured by the rest."""
    first, second = fleet[0], fleet[1]
    held = db.held()
    boxes = sorted(held.get(first.pid, []))[:100] + sorted(held.get(second.pid, []))[:100]
    had = len(held.get(second.pid, []))
    before = db.records()[0]
    first.send(signal.SIGTERM)
    started = time.perf_counter()
    wait(lambda: len(db.held().get(second.pid, [])) > had, 60, "a claim of the first's share")
    time.sleep(0.5)  # its main loop starts the watches of what it gained
    gained = len(db.held().get(second.pid, [])) - had
    second.send(signal.SIGTERM)
    for n, box in enumerate(boxes):
        server.deliver(box, message("takeover-term", n))
    wait(lambda: db.records()[0] >= before + len(boxes), timeout, "mail after both SIGTERMs")
    took = time.perf_counter() - started
    print(
        f"SIGTERM in a takeover: {second.name} (holding {had}, had claimed {gained} of"
        f" {first.name}'s) exited {second.exit_time()} after its SIGTERM (target <= 10 s;"
        f" {stop_steps(second)});"
        f" {first.name} exited {first.exit_time()}; new mail in {len(boxes)} of their"
        f" mailboxes captured by the other {len(fleet) - 2} {took:.1f}s after the first"
        f" SIGTERM ({load()}; {verifies(fleet)})"
    )
    return first, second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=200)
    parser.add_argument("--daemons", type=int, default=2)
    parser.add_argument("--messages", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--window", type=float, default=30.0, help="idle seconds measured")
    parser.add_argument(
        "--interval", type=int, default=600, help="[sync] interval: polls in the idle window"
    )
    parser.add_argument(
        "--verify-interval",
        type=int,
        default=None,
        help="[sync] verify_interval (default: the daemon's, a day; the first verify of each"
        " mailbox comes this long after start, at most 600 s): verifies due during the failovers",
    )
    parser.add_argument("--no-failover", action="store_true", help="skip SIGTERM/kill -9/4 daemons")
    parser.add_argument("--keep", action="store_true", help="keep the daemons' logs and configs")
    parser.add_argument("--sent", action="store_true", help="capture Sent too, not INBOX alone")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds settled before the idle window"
    )
    parser.add_argument(
        "--compare-notify", action="store_true", help="run with IMAP NOTIFY, then without"
    )
    parser.add_argument(
        "--postgres",
        choices=["auto", "system", "private"],
        default="auto",
        help="auto: the machine's server up to 2,000 mailboxes, a private cluster above",
    )
    parser.add_argument(
        "--clients-per-process",
        type=int,
        default=0,
        help="IMAP connections an imap process serves (default: 50, 100 above 5,000 mailboxes)",
    )
    args = parser.parse_args()
    if not args.compare_notify:
        return fleet(args, None)
    print("=== with NOTIFY ===")
    fleet(args, None)
    print("=== without NOTIFY ===")
    return fleet(args, WITHOUT_NOTIFY)


def fleet(args: argparse.Namespace, capabilities: str | None) -> int:
    """One whole run; ``capabilities``: Dovecot's after login, instead of its own."""
    n, k = args.mailboxes, args.daemons
    # Waits grow with the fleet: 10,000 first syncs take minutes on a shared 2-core machine.
    capture_timeout, settle_timeout, mail_timeout = max(600, n * 0.15), max(300, n * 0.06), 300
    every = 0.2 if n <= 2000 else 1.0
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-fleet-", dir="/tmp"))
    work.chmod(0o755)
    users = [f"rep{i}" for i in range(n)]
    per_process = args.clients_per_process or (100 if n > 5000 else 50)
    seeding = time.perf_counter()
    server = Dovecot(
        work / "dovecot",
        {u: f"pw-{u}" for u in users},
        max_connections=2 * n,
        capabilities=capabilities,
        clients_per_process=per_process,
    )
    server.start()
    fleet: list[Daemon] = []
    private = args.postgres == "private" or (args.postgres == "auto" and n > 2000)
    try:
        for i, user in enumerate(users):
            server.deliver_many(user, [message(f"seed{i}", m) for m in range(args.messages)])
        print(f"seeded {n} mailboxes x {args.messages} messages (Dovecot started, {per_process}"
              f" connections an imap process): {time.perf_counter() - seeding:.1f}s")  # fmt: skip
        with contextlib.ExitStack() as stack:
            if private:
                # Room for every pool: a daemon's grows to 2 x (concurrency + 4), and up to
                # five daemons run at once (a newcomer joins before the next stop).
                root = Path(tempfile.mkdtemp(prefix="syncd-bench-pg-", dir="/tmp"))
                root.chmod(0o755)
                stack.callback(shutil.rmtree, root, ignore_errors=True)
                # fsync as the machine's server has it, for figures comparable with its runs.
                pg_settings = {"max_connections": "500", "shared_buffers": "512MB", "fsync": "on"}
                admin = stack.enter_context(private_cluster(root / "pg", pg_settings))
                print(f"PostgreSQL: a private cluster, {pg_settings}")
            else:
                admin = stack.enter_context(admin_url(work / "pg"))
            db_url = stack.enter_context(scratch_database(admin))
            db = Database(db_url)
            folders = '["INBOX", "Sent"]' if args.sent else '["INBOX"]'
            base = config_text(
                db_url, server.port, users, args.concurrency, args.interval, folders,
                args.verify_interval,
            )  # fmt: skip
            # --- 1. capture --------------------------------------------------------------
            started = time.perf_counter()
            dove_before = dovecot_cpu_seconds(server)
            fleet = [Daemon(work, base, f"d{i}") for i in range(k)]
            total = n * args.messages
            capture = wait(lambda: db.records()[0] >= total, capture_timeout, "the backlog", every)
            print(f"capture: {total} messages in {n} mailboxes over {k} daemons: {capture:.1f}s"
                  f" ({load()})")  # fmt: skip
            spent = sum(d.stat()[0] for d in fleet)
            print(f"  CPU during capture: daemons {spent:.1f}s,"
                  f" Dovecot {dovecot_cpu_seconds(server) - dove_before:.1f}s")  # fmt: skip
            print(f"  ({total / capture:.0f} messages/s; target for 2,000 x 2 over 2: <= 60 s)")
            wait(
                lambda: settled(db, fleet, n),
                settle_timeout,
                "every source held and watched",
                every,
            )
            print(f"settled (every mailbox held and watched) {time.perf_counter() - started:.1f}s")
            # --- 2. idle -----------------------------------------------------------------
            # The daily verify of every mailbox starts once the first syncs are done, each on
            # a connection of its own: at 10,000 mailboxes that wave lasts minutes.
            wait(lambda: server.connections() <= n + 5 * k, settle_timeout, "connections to settle")
            # A watch covers Sent by NOTIFY only from a poll that read it after NOTIFY began:
            # the first poll or two of each mailbox after settling still ask (warm-up).
            time.sleep(args.warmup)
            # One scrape a daemon in the window, as a Prometheus at its default 1 min interval.
            before = {d.name: d.stat() for d in fleet}
            read = {
                d.name: d.metrics(
                    "syncd_imap_logins_total",
                    "syncd_imap_sessions_reused_total",
                    "syncd_sync_duration_seconds_count",
                )
                for d in fleet
            }
            logins = {name: values[0] for name, values in read.items()}
            lent = {name: values[1] for name, values in read.items()}
            polls = {name: values[2] for name, values in read.items()}
            dove = dovecot_cpu_seconds(server)
            t0 = time.perf_counter()
            time.sleep(args.window)
            window = time.perf_counter() - t0
            # Every daemon's CPU first: a scrape of one (below) must not lengthen another's window.
            after = {d.name: d.stat() for d in fleet}
            dove_spent = dovecot_cpu_seconds(server) - dove
            connections = server.connections()
            sessions = db.sessions()
            dove_mb, dove_processes, dove_imap = dovecot_memory(server)
            held = db.held()
            for d in fleet:
                cpu, rss, threads = after[d.name]
                share = len(held.get(d.pid, []))
                # Every poll in the window finds its mailbox unchanged (no mail is delivered):
                # the daemon's CPU over them is an upper bound of one poll's (the heartbeat,
                # the IDLE hub and one metrics scrape are in it too).
                polled = d.metric("syncd_sync_duration_seconds_count") - polls[d.name]
                spent_ms = 1000 * (cpu - before[d.name][0])
                per_poll = f"{spent_ms / polled:.2f} ms" if polled else "n/a"
                print(
                    f"idle {d.name}: {polled:.0f} unchanged polls in {window:.0f}s,"
                    f" CPU per unchanged poll {per_poll} (all of the daemon's CPU / polls;"
                    " target <= 1 ms)"
                )
                print(
                    f"idle {d.name}: {share} held ({share / n:.0%}),"
                    f" watchers {d.metric('syncd_watchers_open'):.0f},"
                    f" CPU {100 * (cpu - before[d.name][0]) / window:.1f}% of a core,"
                    f" RSS {rss:.0f} MB, threads {threads},"
                    f" logins in window {d.metric('syncd_imap_logins_total') - logins[d.name]:.0f},"
                    " polls on a kept or borrowed connection"
                    f" {d.metric('syncd_imap_sessions_reused_total') - lent[d.name]:.0f}"
                )
            print(
                f"idle: IMAP connections {connections} for {n} mailboxes (target <= N + 20);"
                f" Dovecot CPU {100 * dove_spent / window:.1f}% of a core ({load()})"
            )
            print(
                f"idle: PostgreSQL connections {sessions} (the bench's 1 included);"
                f" Dovecot {dove_processes} processes ({dove_imap} imap), PSS {dove_mb:.0f} MB"
                f" ({1024 * dove_mb / max(connections, 1):.0f} KB an IMAP connection)"
            )
            print("  (targets per daemon: <= 5% CPU, <= 300 MB RSS, <= 64 threads)")
            if not args.no_failover and k >= 2:
                # --- 3. SIGTERM --------------------------------------------------------------
                victim = fleet.pop(0)
                took, boxes = handover(
                    server, db, victim, signal.SIGTERM, "term", 100, mail_timeout
                )
                print(f"SIGTERM handover: {boxes} mailboxes' new mail captured in {took:.1f}s"
                      f" (target <= 15 s); the daemon exited {victim.exit_time()} after SIGTERM"
                      f" ({stop_steps(victim)})"
                      f" ({load()}; {verifies(fleet)})")  # fmt: skip
                # --- 4. kill -9 (after a replacement took its share) --------------------------
                fleet.append(Daemon(work, base, "joined"))
                joined = wait(lambda: settled(db, fleet, n), settle_timeout, "the join", every)
                print(f"join: a new daemon took its share, all settled in {joined:.1f}s"
                      f" ({load()})")  # fmt: skip
                victim = fleet.pop(0)
                took, boxes = handover(
                    server, db, victim, signal.SIGKILL, "kill", 100, mail_timeout
                )
                print(f"kill -9 failover: {boxes} mailboxes' new mail captured in {took:.1f}s"
                      f" (target <= 60 s) ({load()}; {verifies(fleet)})")  # fmt: skip
                # --- 5. four daemons ---------------------------------------------------------
                while len(fleet) < 4:
                    fleet.append(Daemon(work, base, f"extra{len(fleet)}"))
                four = wait(lambda: settled(db, fleet, n), settle_timeout, "four settled", every)
                held = db.held()
                shares = sorted(len(held.get(d.pid, [])) for d in fleet)
                print(f"4 daemons: shares {shares}, max {max(shares) / n:.0%}"
                      f" (target <= 35%), settled in {four:.1f}s ({load()})")  # fmt: skip
                # --- 6. SIGTERM in the middle of a takeover ---------------------------------
                for gone in term_in_takeover(server, db, fleet, mail_timeout):
                    fleet.remove(gone)
                rest = wait(lambda: settled(db, fleet, n), settle_timeout, "the rest", every)
                print(f"  the other {len(fleet)} hold all {n}, settled {rest:.1f}s later")
            total_records, distinct = db.records()
            print(f"records {total_records}, distinct keys {distinct}: "
                  + ("no duplicates" if total_records == distinct else "DUPLICATES"))  # fmt: skip
            for d in fleet:
                d.stop()
                print(f"SIGTERM of {d.name} at rest: exited {d.exit_time()} ({stop_steps(d)})")
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db.engine.dispose()
    finally:
        for d in fleet:
            if d.alive():
                d.proc.kill()
        server.stop()
        if args.keep:
            print(f"logs and configs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
