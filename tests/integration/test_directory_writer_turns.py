"""A mirror that changes every contact writes for seconds: another writer of the same SQLite
file (a daemon committing what it captured) must still get the lock within a second, with
SQLite's ordinary busy timeout (directory_apply.py ``Applier.in_turns``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine

from syncd.domain.directory_file import RowReader, text_stream
from syncd.store.database import open_database
from syncd.store.directory_apply import HOLD
from syncd.store.directory_mirror import mirror_directory

HEADER = "customer,domains,contact_name,contact_email\n"
CONTACTS = 20_000

# Another process: a write transaction every 50 ms until its stdin closes; prints "ready"
# after its first commit, then the longest time one took to get the lock and commit.
PROBE = """
import sqlite3, sys, threading, time
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS probe (at REAL)")
longest, count = 0.0, 0
while not done.is_set():
    began = time.monotonic()
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO probe VALUES (?)", (began,))
    db.execute("COMMIT")
    took = time.monotonic() - began
    if count == 0:
        print("ready", flush=True)
    longest, count = max(longest, took), count + 1
    done.wait(0.05)
print(longest, count, flush=True)
"""


def _export(suffix: str) -> bytes:
    rows = (
        f"Cust {i % 500},c{i % 500}.com,Person {i}{suffix},p{i}@c{i % 500}.com\n"
        for i in range(CONTACTS)
    )
    return (HEADER + "".join(rows)).encode()


def _mirror(engine: Engine, data: bytes) -> dict[str, dict[str, int]]:
    done = mirror_directory(
        engine, RowReader(text_stream(data), "crm.csv"), mirror=True, source="test"
    )
    assert done is not None
    return done.counts


def test_a_mass_rename_leaves_another_writer_a_turn(tmp_path: Path) -> None:
    database = tmp_path / "syncd.db"
    engine = open_database(f"sqlite:///{database}")
    try:
        assert _mirror(engine, _export(""))["contacts"]["added"] == CONTACTS
        probe = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(database)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert probe.stdout is not None and probe.stdin is not None
            assert probe.stdout.readline().strip() == "ready"
            assert _mirror(engine, _export(" Jr"))["contacts"]["updated"] == CONTACTS
            probe.stdin.close()
            longest, count = probe.stdout.read().split()
        finally:
            probe.wait(timeout=30)
    finally:
        engine.dispose()
    print(f"longest wait {float(longest):.3f} s over {count} commits")
    # About a transaction's hold, plus the busy handler's sleep: a second is five holds.
    assert float(longest) < 5 * HOLD, longest
