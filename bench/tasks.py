"""Follow-up rules benchmark: evaluating the rules over recent mail, from one run.

    .venv/bin/python bench/tasks.py --messages 20000

Seeds two reps' mailboxes with N messages from the last days, captures them, then times:
reading the facts the rules need (the reference: the queries alone), the first evaluation
(creates the tasks), and a repeated evaluation (creates nothing: idempotent).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The test servers and sample data are not installed: they live in the checkout's
# tests/servers/, so the checkout's root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncd.config_file import parse_config
from syncd.engine.followups import evaluate_followups
from syncd.engine.imap.mail_sync import MailSync
from syncd.store import tasks as store
from syncd.store.database import open_database
from syncd.store.directory import ensure_contact, ensure_customer
from tests.servers.dovecot import Dovecot
from tests.servers.sample import CUSTOMERS_CSV, REPS, generate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-tasks-", dir="/tmp"))
    work.chmod(0o755)
    passwords = {rep: f"pw-{n}" for n, rep in enumerate(REPS)}
    server = Dovecot(work / "dovecot", passwords).start()
    try:
        # N messages 7 minutes apart, ending now: the last 14 days hold up to 2,880 of them.
        span = timedelta(minutes=7 * args.messages)
        mail = generate(args.messages, start=datetime.now(UTC) - span)
        by_box: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        for item in mail:
            by_box[(item.owner, item.folder)].append(item.raw)
        for (owner, folder), raws in by_box.items():
            server.deliver_many(owner, raws, folder=folder)
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{work / 'tasks.db'}"},
                "organization": {"internal_domains": ["example.com"]},
                "tasks": {"lookback_days": 365},  # every message counts: the worst case
                "mailbox": [
                    {
                        "name": rep.split("@")[0], "owner": rep, "host": "127.0.0.1",
                        "port": server.port, "security": "plain", "username": rep,
                        "password": passwords[rep], "folders": ["INBOX", "Sent"],
                    }
                    for rep in REPS
                ],
            }
        )  # fmt: skip
        engine = open_database(config.database.url)
        with engine.begin() as conn:
            for row in csv.DictReader(CUSTOMERS_CSV.splitlines()):
                customer_id, _ = ensure_customer(conn, row["customer"], row["domains"].split(";"))
                if row["contact_email"]:
                    ensure_contact(
                        conn,
                        row["contact_email"],
                        customer_id=customer_id,
                        name=row["contact_name"],
                    )
        MailSync(engine, config).run_once()
        owners = {box.name: box.owner for box in config.mailbox}
        since = datetime.now(UTC) - timedelta(days=365)
        t = time.perf_counter()
        with engine.connect() as conn:
            emails, meetings = store.facts(conn, since, owners)
        facts_s = time.perf_counter() - t
        t = time.perf_counter()
        first = evaluate_followups(engine, config)
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        again = evaluate_followups(engine, config)
        again_s = time.perf_counter() - t
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{len(emails)} captured emails, {len(meetings)} meetings in the window")
    print(f"read the facts (reference)      : {facts_s * 1000:7.0f} ms")
    print(
        f"first evaluation                : {first_s * 1000:7.0f} ms  ({first['created']} tasks created, {first['closed']} closed)"
    )
    print(
        f"repeated evaluation             : {again_s * 1000:7.0f} ms  ({again['created']} created, {again['closed']} closed)"
    )
    print(f"repeated evaluation / facts     : {again_s / facts_s:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
