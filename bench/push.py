"""Push benchmark: N mailboxes in IMAP IDLE on one Dovecot, by the push hub and by a thread
per mailbox (the design the hub replaced, as the reference), measured in the same run.

    .venv/bin/python bench/push.py                    # quick: 200 mailboxes, 30 s idle window
    .venv/bin/python bench/push.py --mailboxes 2000 --window 60

Each side runs in its own process (so that its threads, RSS and CPU are its own, read from
/proc): it watches every mailbox and prints a line per wake.  Measured: the time until
every mailbox is in IDLE, threads, RSS, CPU over an idle window (as seconds per minute and
% of one core), then the latency from a Maildir delivery to the wake (p50/p95).
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
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.dovecot import Dovecot

TICK = os.sysconf("SC_CLK_TCK")


def _message(n: int) -> bytes:
    return (
        f"From: Wile <wile@acme.com>\r\nTo: Rep <rep@example.com>\r\nSubject: Push {n}\r\n"
        f"Message-ID: <push{n}-{time.time()}@acme.com>\r\n"
        "Date: Mon, 3 Jun 2024 09:00:00 +0000\r\n\r\nHello\r\n"
    ).encode()


# --- the two sides (child processes) ---------------------------------------------------------


def _own_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _run_hub(port: int, users: list[str], renew: float) -> None:
    import structlog

    from syncd.config import MailboxConfig
    from syncd.engine.imap.idle_hub import IdleHub

    structlog.configure(  # warnings and worse, on stderr: stdout is for the parent
        wrapper_class=structlog.make_filtering_bound_logger(30),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    hub = IdleHub(renew_every=renew)
    rss_before = _own_rss_mb()
    started = time.monotonic()
    for user in users:
        box = MailboxConfig(
            name=user, owner=f"{user}@example.com", host="127.0.0.1", port=port,
            security="plain", username=user, password=f"pw-{user}", timeout=30,
        )  # fmt: skip
        hub.watch(box, lambda name: _emit(event="wake", name=name, at=time.time()))
    while hub.open_count() < len(users):
        time.sleep(0.05)
    _emit(event="up", seconds=time.monotonic() - started, rss_before=rss_before)
    sys.stdin.read()  # until the parent closes our stdin
    hub.close(2)


def _run_threads(port: int, users: list[str], renew: float) -> None:
    """The reference: what one thread per mailbox does (the old IdleWatcher's loop)."""
    import imapclient

    up = threading.Semaphore(0)
    stop = threading.Event()
    rss_before = _own_rss_mb()

    def watch(user: str) -> None:
        first = True
        while not stop.is_set():
            try:
                client = imapclient.IMAPClient("127.0.0.1", port, ssl=False, timeout=30)
                client.login(user, f"pw-{user}")
                client.select_folder("INBOX", readonly=True)
                client.idle()
                if first:
                    up.release()
                    first = False
                waited = 0.0
                while not stop.is_set():
                    responses = client.idle_check(timeout=5.0)
                    if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                        _emit(event="wake", name=user, at=time.time())
                    waited += 5.0
                    if waited >= renew:
                        client.idle_done()
                        client.noop()
                        client.idle()
                        waited = 0.0
            except Exception:
                time.sleep(random.uniform(0, 2))

    started = time.monotonic()
    for user in users:
        threading.Thread(target=watch, args=(user,), daemon=True).start()
    for _ in users:
        up.acquire()
    _emit(event="up", seconds=time.monotonic() - started, rss_before=rss_before)
    sys.stdin.read()
    stop.set()


# --- the parent: measuring ---------------------------------------------------------------------


def _proc(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "threads": float(fields["Threads"].strip()),
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "cpu_s": (int(stat[11]) + int(stat[12])) / TICK,
    }


class Side:
    def __init__(self, role: str, port: int, users: list[str], renew: float) -> None:
        self.role = role
        self.wakes: dict[str, list[float]] = {}
        self.up: dict[str, Any] | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", role, "--port", str(port),
             "--renew", str(renew), "--users", ",".join(users)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event["event"] == "up":
                self.up = event
                self._ready.set()
            elif event["event"] == "wake":
                self.wakes.setdefault(event["name"], []).append(event["at"])

    def wait_up(self, timeout: float) -> None:
        if not self._ready.wait(timeout):
            raise SystemExit(f"{self.role}: not every mailbox in IDLE after {timeout:.0f} s")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(
    role: str, server: Dovecot, users: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    side = Side(role, server.port, users, args.renew)
    try:
        side.wait_up(args.mailboxes / 5 + 120)
        assert side.up is not None
        time.sleep(2.0)  # the last logins settle
        before = _proc(side.proc.pid)
        time.sleep(args.window)
        after = _proc(side.proc.pid)
        cpu = after["cpu_s"] - before["cpu_s"]
        latencies = []
        rng = random.Random(7)
        for n in range(args.deliveries):
            user = rng.choice(users)
            seen = len(side.wakes.get(user, []))
            sent = time.time()
            server.deliver(user, _message(n))
            deadline = time.monotonic() + 30
            while len(side.wakes.get(user, [])) <= seen and time.monotonic() < deadline:
                time.sleep(0.01)
            if len(side.wakes.get(user, [])) > seen:
                latencies.append(side.wakes[user][seen] - sent)
            time.sleep(0.1)
        latencies.sort()
        return {
            "up_s": side.up["seconds"],
            "threads": after["threads"],
            "rss_mb": after["rss_mb"],
            "kb_per_mailbox": 1024 * (after["rss_mb"] - side.up["rss_before"]) / len(users),
            "cpu_s_per_min": cpu * 60 / args.window,
            "cpu_pct": 100 * cpu / args.window,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p95": latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
            "woken": f"{len(latencies)}/{args.deliveries}",
        }
    finally:
        side.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=200)
    parser.add_argument("--window", type=float, default=30.0, help="idle seconds measured")
    parser.add_argument("--deliveries", type=int, default=40)
    parser.add_argument("--renew", type=float, default=300.0, help="seconds between renewals")
    parser.add_argument("--child", choices=["hub", "threads"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--users")
    args = parser.parse_args()
    if args.child:
        run = _run_hub if args.child == "hub" else _run_threads
        run(args.port, args.users.split(","), args.renew)
        return

    root = Path(tempfile.mkdtemp(prefix="syncd-bench-push-"))
    users = [f"u{n}" for n in range(args.mailboxes)]
    server = Dovecot(
        root, {u: f"pw-{u}" for u in users}, max_connections=args.mailboxes + 200
    ).start()
    try:
        results = {role: measure(role, server, users, args) for role in ("hub", "threads")}
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{args.mailboxes} mailboxes in IDLE on one Dovecot, idle window {args.window:.0f} s, "
        f"{args.deliveries} deliveries, renewal every {args.renew:.0f} s"
    )
    rows = [
        ("time until all in IDLE (s)", "up_s", "{:.1f}"),
        ("threads in the process", "threads", "{:.0f}"),
        ("RSS (MB)", "rss_mb", "{:.0f}"),
        ("RSS per mailbox (KB)", "kb_per_mailbox", "{:.0f}"),
        ("idle CPU (s per minute)", "cpu_s_per_min", "{:.2f}"),
        ("idle CPU (% of one core)", "cpu_pct", "{:.2f}"),
        ("delivery -> wake p50 (s)", "p50", "{:.2f}"),
        ("delivery -> wake p95 (s)", "p95", "{:.2f}"),
        ("deliveries woken", "woken", "{}"),
    ]
    hub, ref = results["hub"], results["threads"]
    print(f"{'':30} {'push hub':>12} {'thread each':>12} {'hub / ref':>10}")
    for label, key, fmt in rows:
        ratio = ""
        if isinstance(hub[key], float) and isinstance(ref[key], float) and ref[key]:
            ratio = f"{hub[key] / ref[key]:.2f}"
        print(f"{label:30} {fmt.format(hub[key]):>12} {fmt.format(ref[key]):>12} {ratio:>10}")


if __name__ == "__main__":
    main()
