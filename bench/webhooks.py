"""Webhook delivery benchmark: `syncd run` delivering the outbox to a local receiver, one run.

    .venv/bin/python bench/webhooks.py --events 20000 --outage 300

The receiver (tests/servers/webhook.py, in its own process) verifies every signature with
the standardwebhooks library.  Prints:
  reference   the receiver's raw rate: pre-signed requests from a plain keep-alive client
              with as many connections as syncd uses per endpoint
  throughput  N events emitted in one transaction, delivered by `syncd run`: events/s, and
              the ratio to the reference
  latency     single events emitted while the daemon idles: emitted-to-received p50/p95
  outage      the receiver down for --outage seconds while events keep coming: the time
              from its return until the backlog is empty (target: under 60 s)
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The test servers are not installed: they live in the checkout's tests/servers/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from standardwebhooks import Webhook

from syncd.store.database import open_database
from syncd.store.events import Event, emit_many
from syncd.webhooks import queue
from syncd.webhooks.deliverer import SENDERS
from tests.daemon import DaemonProcess
from tests.servers.ports import free_port, wait_listening
from tests.servers.webhook import new_secret


def serve(port: int, secret: str) -> None:
    """The receiver, in this (child) process, until SIGTERM."""
    from tests.servers.webhook import Receiver

    Receiver(secret, port=port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()


class ReceiverProcess:
    def __init__(self, port: int, secret: str) -> None:
        self.port, self.secret = port, secret
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ReceiverProcess:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), self.secret]
        )
        wait_listening(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        wait_listening(self.port, up=False)

    def stats(self, event_id: int | None = None) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/_stats" + (f"?id={event_id}" if event_id is not None else ""))
        data = json.loads(conn.getresponse().read())
        conn.close()
        return data  # type: ignore[no-any-return]


def payload(n: int) -> dict[str, Any]:
    """About the size of a `records list --json` object."""
    return {
        "id": n,
        "kind": "email",
        "subject": f"Re: Quote {n} for the new order",
        "occurred_at": "2026-03-01T09:30:00Z",
        "owner": "alice@example.com",
        "customers": [{"id": 3, "name": "Acme Corp"}],
        "participants": [
            {"address": "wile@acme.com", "role": "from", "name": "Wile E. Coyote"},
            {"address": "alice@example.com", "role": "to", "name": "Alice"},
        ],
        "folder": "INBOX",
        "mailbox": "alice",
    }


def reference_rate(port: int, secret: str, count: int) -> float:
    """Pre-signed requests from plain keep-alive clients, SENDERS at a time."""
    signer = Webhook(secret)
    now = datetime.now(UTC)
    bodies = []
    for n in range(count):
        body = json.dumps({"id": f"ref{n}", "type": "record.created", "data": payload(n)})
        headers = {
            "Content-Type": "application/json",
            "webhook-id": f"ref{n}",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(f"ref{n}", now, body),
        }
        bodies.append((body.encode(), headers))

    def client(part: list[tuple[bytes, dict[str, str]]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for body, headers in part:
            conn.request("POST", "/hooks", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
        conn.close()

    threads = [threading.Thread(target=client, args=(bodies[i::SENDERS],)) for i in range(SENDERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count / (time.monotonic() - started)


def _drain_notifications(daemon: DaemonProcess) -> None:
    sock = daemon._sock  # the harness's notify socket, read as systemd does
    sock.settimeout(None)
    while True:
        try:
            sock.recv(4096)
        except OSError:
            return


def backlog(engine: Any) -> int:
    with engine.connect() as conn:
        config = next(iter(CONFIGS))
        return queue.pending_count(conn, "crm") + queue.untaken(conn, config)


CONFIGS: list[Any] = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--outage", type=float, default=300.0, help="seconds the receiver is down")
    parser.add_argument("--outage-rate", type=float, default=20.0, help="events/s during it")
    parser.add_argument("--verbose", type=int, default=0, help="the daemon's -v count")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: a SQLite file)")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "SECRET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return 0

    from syncd.config_file import load_config

    work = Path(tempfile.mkdtemp(prefix="syncd-bench-webhooks-", dir="/tmp"))
    secret = new_secret()
    (work / "crm.secret").write_text(secret)
    port = free_port()
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    config_path = work / "syncd.toml"
    config_path.write_text(
        f'[database]\nurl = "{url}"\n\n[[webhook]]\nname = "crm"\n'
        f'url = "http://127.0.0.1:{port}/hooks"\nsecret_file = "{work / "crm.secret"}"\n'
    )
    CONFIGS.extend(load_config(config_path).webhook)
    engine = open_database(url)
    receiver = ReceiverProcess(port, secret).start()
    daemon = DaemonProcess(config_path, work / "daemon.log")
    try:
        ref = reference_rate(port, secret, args.events)
        print(f"reference   plain client, {SENDERS} keep-alive connections: {ref:,.0f} req/s")

        daemon.start(verbose=args.verbose)
        # Read its systemd notifications as systemd would: a full notify socket would
        # block the daemon's main loop (and its SIGTERM handling) in sendto().
        threading.Thread(target=_drain_notifications, args=(daemon,), daemon=True).start()
        before = receiver.stats()["unique"]
        with engine.begin() as conn:
            emit_many(
                conn,
                [Event("record.created", f"record:{n}", payload(n)) for n in range(args.events)],
            )
        started = time.monotonic()
        while receiver.stats()["unique"] - before < args.events:
            time.sleep(0.1)
        took = time.monotonic() - started
        rate = args.events / took
        print(
            f"throughput  {args.events:,} events delivered by `syncd run` in {took:.1f} s: "
            f"{rate:,.0f} events/s ({rate / ref:.0%} of the reference; target >= 1,000/s)"
        )

        latencies = []
        for n in range(40):
            with engine.begin() as conn:
                emit_many(conn, [Event("record.updated", f"record:{n}", payload(n))])
            emitted = time.time()
            with engine.connect() as conn:
                event_id = queue.outbox_head(conn)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                arrived = receiver.stats(event_id)["at"]
                if arrived is not None:
                    latencies.append(arrived - emitted)
                    break
                time.sleep(0.02)
            time.sleep(0.1)
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        print(
            f"latency     emitted to received, {len(latencies)} single events: "
            f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms (target p95 <= 1 s)"
        )

        receiver.stop()
        outage_started = time.monotonic()
        n = 0
        while time.monotonic() - outage_started < args.outage:
            with engine.begin() as conn:
                emit_many(conn, [Event("record.updated", f"record:{n % 5000}", payload(n % 5000))])
            n += 1
            time.sleep(1 / args.outage_rate)
        waiting = backlog(engine)
        receiver.start()
        back = time.monotonic()
        while backlog(engine):
            time.sleep(0.05)
        drained = time.monotonic() - back
        print(
            f"outage      receiver down {args.outage:.0f} s, {n:,} events emitted meanwhile "
            f"({waiting:,} waiting): backlog empty {drained:.1f} s after its return "
            f"(target <= 60 s; {drained / 60:.0%} of it)"
        )
        stats = receiver.stats()
        print(f"receiver    bad signatures: {stats['bad_signatures']}")
        try:
            code, stop_took = daemon.stop()
            print(f"stop        SIGTERM to exit {stop_took:.1f} s (exit {code})")
        except subprocess.TimeoutExpired:
            print("stop        SIGTERM: still running after 15 s; the log ends with:")
            print("\n".join((work / "daemon.log").read_text().splitlines()[-15:]))
    finally:
        daemon.close()
        receiver.stop()
        engine.dispose()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
