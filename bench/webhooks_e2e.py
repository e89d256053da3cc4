"""Mail to webhook, end to end: a real Dovecot, `syncd run` waiting in IMAP IDLE, one
[[webhook]] to the verifying receiver (tests/servers/webhook.py, in its own process).

    .venv/bin/python bench/webhooks_e2e.py --messages 40

Messages are written into the Maildir one by one (as Dovecot's delivery agent would); for
each, the time from the write to the receiver's first 2xx answer.  Prints p50/p95/max of:
  delivered   Maildir write -> webhook received          (target: p95 <= 2 s)
  outbox      records.created_at -> webhook received    (target: p95 <= 1 s)
The receiver records its wall clock (time.time()); both processes share this machine's clock.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

# The test servers are not installed: they live in the checkout's tests/servers/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import String, cast, literal, select

from bench.webhooks import ReceiverProcess, _drain_notifications
from syncd.schema.tables import events, records
from syncd.store.database import open_database
from tests.daemon import DaemonProcess
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port
from tests.servers.webhook import new_secret

USER, PASSWORD = "bench", "bench-password"


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:7.0f} ms  p95 {p95 * 1000:7.0f} ms  "
        f"max {ordered[-1] * 1000:7.0f} ms"
    )


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="syncd-bench-e2e-"))
    work.chmod(0o755)  # Dovecot's unprivileged processes must reach its folder inside
    dovecot = Dovecot(work / "dovecot", {USER: PASSWORD}).start()
    secret = new_secret()
    receiver = ReceiverProcess(free_port(), secret).start()
    db_url = f"sqlite:///{work / 'syncd.db'}"
    (work / "bench.pass").write_text(PASSWORD)
    config = work / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n\n[organization]\ninternal_domains = ["example.com"]\n\n'
        "[capture]\npast_days = 3650\n\n"
        f'[[mailbox]]\nname = "bench"\nowner = "alice@example.com"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.port}\nsecurity = "plain"\nusername = "{USER}"\n'
        f'password_file = "{work / "bench.pass"}"\n\n'
        f'[[webhook]]\nname = "crm"\nurl = "http://127.0.0.1:{receiver.port}/hooks"\n'
        f'secret = "{secret}"\n'
    )
    daemon = DaemonProcess(config, work / "daemon.log")
    written: dict[str, float] = {}  # message-id -> when its file was written
    arrived: dict[str, float] = {}  # message-id -> the receiver's first 2xx answer
    created: dict[str, datetime] = {}  # message-id -> records.created_at
    try:
        daemon.start()
        # Its systemd notifications read as systemd does: a full socket blocks its main loop.
        threading.Thread(target=_drain_notifications, args=(daemon,), daemon=True).start()
        time.sleep(2.0)  # the first (empty) sync done, the IDLE session up
        for n in range(1, args.messages + 1):
            mid = f"e2e-{n}@acme.com"
            raw = make_message(
                message_id=f"<{mid}>",
                subject=f"Quote {n}",
                date=datetime.now(UTC).replace(microsecond=0),
            )
            written[mid] = time.time()
            dovecot.deliver(USER, raw)
            deadline = time.monotonic() + 90
            while receiver.stats()["unique"] < n:
                if time.monotonic() > deadline:
                    raise SystemExit(f"message {n}: no webhook within 90 s; see {work}")
                time.sleep(0.01)
        bad = receiver.stats()["bad_signatures"]
        daemon.stop()
        engine = open_database(db_url)
        with engine.connect() as conn:
            query = select(events.c.id, records.c.message_id, records.c.created_at).join(
                records, events.c.subject == literal("record:") + cast(records.c.id, String)
            )
            for event_id, mid, at in conn.execute(query.where(events.c.type == "record.created")):
                created[mid] = at if at.tzinfo else at.replace(tzinfo=UTC)
                arrived[mid] = receiver.stats(event_id)["at"]
        engine.dispose()
    finally:
        daemon.close()
        receiver.stop()
        dovecot.stop()
    log = (work / "dovecot" / "dovecot.log").read_text()
    # Without inotify Dovecot's IDLE looks every mailbox_idle_check_interval (1 s here).
    inotify = "no: the machine's inotify instances ran out" if "Inotify" in log else "yes"
    delivered = [arrived[n] - written[n] for n in written]

    outbox = [arrived[n] - created[n].timestamp() for n in written]
    shutil.rmtree(work, ignore_errors=True)
    print(f"messages: {len(written)}, each written alone, syncd run in IDLE; bad signatures: {bad}")
    print(f"Dovecot IDLE woken by inotify: {inotify}")
    print(f"Maildir write -> webhook received : {quantiles(delivered)}  (target p95 <= 2000 ms)")
    print(f"captured -> webhook received      : {quantiles(outbox)}  (target p95 <= 1000 ms)")
    print(f"p95 / target                      : {p95(delivered) / 2.0:.2f}x and {p95(outbox):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
