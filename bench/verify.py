"""`syncd verify` benchmark on one large folder, next to the raw UID SEARCH it cannot beat.

    .venv/bin/python bench/verify.py --messages 20000

Seeds one Dovecot mailbox with N sample messages (as bench/capture.py does), captures it with
syncd on SQLite, then measures in the same run:
  - reference: a bare imapclient login, EXAMINE and `UID SEARCH ALL` (the least any verify can do);
  - verify, first run (lists every UID and accounts for each from the store);
  - verify, unchanged re-run (one EXAMINE and three counts: the listing is skipped);
  - verify after one new message (the folder changed: listed again; the new UID is pending);
  - verify of a database captured before skips were recorded per UID (the skipped messages
    are read again and decided by the same rules: a one-time cost);
  - verify with one source row lost (the missing UID is found).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
# The test servers and sample data are not installed: they live in the checkout's
# tests/servers/, so the checkout's root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capture import PASSWORD, USER, _login, seed
from sqlalchemy import delete, func, select

from syncd.config_file import parse_config
from syncd.engine.imap.mail_sync import MailSync
from syncd.engine.verify import SourceReport, Verifier
from syncd.schema.tables import provenance, skipped_messages, verify_states
from syncd.store.database import open_database
from syncd.store.directory import ensure_contact, ensure_customer
from tests.servers.dovecot import Dovecot
from tests.servers.sample import CUSTOMERS_CSV, generate


def _timed(
    action: Callable[[], Any], repeat: int = 3, before: Callable[[], Any] = lambda: None
) -> tuple[Any, float]:
    """The result of the last run and the best time of ``repeat`` runs (seconds); ``before``
    puts the state back before each run, untimed."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
    return result, best


def reference_search(dovecot: Dovecot, *, search: bool = True) -> int:
    client = _login(dovecot)
    info = client.select_folder("INBOX", readonly=True)
    found = len(client.search("ALL")) if search else int(info[b"EXISTS"])
    client.logout()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-verify-"))
    work.chmod(0o755)  # Dovecot's unprivileged processes must reach its folder inside
    dovecot = Dovecot(work / "dovecot", {USER: PASSWORD}).start()
    try:
        seed(dovecot, args.messages)
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{work / 'bench.db'}"},
                "organization": {"internal_domains": ["example.com"]},
                "mailbox": [
                    {
                        "name": "bench",
                        "owner": "alice@example.com",
                        "host": "127.0.0.1",
                        "port": dovecot.port,
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
        (synced,), backfill_s = _timed(lambda: MailSync(engine, config).run_once(), repeat=1)
        assert synced.ok, synced
        box = config.mailbox[0]

        def verify() -> SourceReport:
            return Verifier(engine, config).verify_mailbox(box)

        def reset_marks() -> None:
            with engine.begin() as conn:
                conn.execute(delete(verify_states))

        reference_count, reference_s = _timed(lambda: reference_search(dovecot), repeat=5)
        _, examine_s = _timed(lambda: reference_search(dovecot, search=False), repeat=5)
        first, first_s = _timed(verify, before=reset_marks)
        assert first.missing == 0 and not first.failed, first.as_json()
        unchanged, unchanged_s = _timed(verify, repeat=5)
        assert unchanged.places[0].unchanged

        dovecot.deliver(USER, generate(1, seed=10**6)[0].raw)
        # Dovecot rescans a Maildir's new/ on every read-only EXAMINE: the reference pays it too.
        _, reference_after_s = _timed(lambda: reference_search(dovecot), repeat=5)
        changed, changed_s = _timed(verify, before=reset_marks)
        assert changed.places[0].tally.pending == 1 and changed.missing == 0

        with engine.connect() as conn:
            skips = conn.scalar(select(func.count()).select_from(skipped_messages))

        def as_before_skip_rows() -> None:
            reset_marks()
            with engine.begin() as conn:
                conn.execute(delete(skipped_messages))

        legacy, legacy_s = _timed(verify, before=as_before_skip_rows)
        assert legacy.missing == 0, legacy.as_json()

        with engine.begin() as conn:
            lost = conn.scalar(select(func.max(provenance.c.uid)))
            conn.execute(delete(provenance).where(provenance.c.uid == lost))
        missing, missing_s = _timed(verify)
        assert missing.places[0].missing == [lost], missing.as_json()
    finally:
        dovecot.stop()
        shutil.rmtree(work, ignore_errors=True)

    counts = first.places[0].counts()
    print(
        f"\nfolder: {reference_count} messages ({counts['recorded']} recorded, "
        f"{counts['skipped']} skipped by rule {counts['skipped_by_rule']}, "
        f"{counts['quarantined']} quarantined); backfill {backfill_s:.1f}s"
    )
    rows = [
        ("reference: login + EXAMINE + UID SEARCH ALL", reference_s),
        ("reference: login + EXAMINE only", examine_s),
        ("verify, first run", first_s),
        ("verify, unchanged re-run", unchanged_s),
        ("reference after one new message arrived", reference_after_s),
        ("verify, one new message (pending)", changed_s),
        (f"verify, {skips} skips decided again (legacy db)", legacy_s),
        ("verify, one source row lost (found)", missing_s),
    ]
    for label, seconds in rows:
        print(f"{label:<48}: {seconds * 1000:9.1f} ms  ({seconds / reference_s:5.2f}x reference)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
