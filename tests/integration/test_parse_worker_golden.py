"""`syncd sync` parses a backlog in a forked child (engine/imap/parse_worker.py): what it
stores is what the in-process pass stores, table for table and row for row, for the
hostile corpus mixed with ordinary mail, a forgotten person and the full body kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import syncd.engine.imap.parse_worker as parse_worker
import syncd.engine.sources as engine_sources
from syncd.config_file import parse_config
from syncd.connectors.imap import ImapSession
from syncd.engine.imap.mail_sync import MailSync
from syncd.engine.imap.parse_worker import ParseWorker
from syncd.engine.sources import Source, configured_sources
from syncd.errors import TransientError
from syncd.store import database
from syncd.store.state import get_cursor
from tests.conftest import World
from tests.servers.dovecot import Dovecot
from tests.servers.sample import CUSTOMERS_CSV, generate

CORPUS = Path(__file__).parent.parent / "corpus" / "mail"
# Times a run stamps (when it wrote a row, not what it read): they differ between any two runs.
_WHEN_WRITTEN = {"created_at", "last_attempt_at", "last_success_at", "last_error_at"}


def _tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db)
    try:
        out: dict[str, list[tuple[Any, ...]]] = {}
        names = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        for (table,) in names:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info('{table}')")]
            kept = [
                c for c in columns if c not in _WHEN_WRITTEN and (table, c) != ("audit_log", "at")
            ]
            if kept:
                listed = ", ".join(f'"{c}"' for c in kept)
                rows = conn.execute(f'SELECT {listed} FROM "{table}"').fetchall()
                out[table] = sorted(rows, key=repr)
        return out
    finally:
        conn.close()


def _in_process_sources(*args: Any, **kwargs: Any) -> list[Source]:
    return configured_sources(*args, **{**kwargs, "parse_worker": False})


class _Counted(ParseWorker):
    made: list[_Counted] = []  # noqa: RUF012 - this test's record of the workers it saw

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        _Counted.made.append(self)


def test_a_backlog_parsed_in_the_worker_is_stored_as_the_in_process_pass_stores_it(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: dict[str, Path] = {}
    raws = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    raws += [m.raw for m in generate(120, seed=11)]
    raws.append(b"Subject: no address at all\r\n\r\nbody\r\n")
    world = World(dovecot, tmp_path, "")
    world.rep("alice")
    dovecot.deliver_many(world.logins["alice"], raws)
    (tmp_path / "customers.csv").write_text(CUSTOMERS_CSV)
    for how in ("in-process", "worker"):
        db = tmp_path / f"{how}.db"
        world.db_url = f"sqlite:///{db}"
        world.write_config(capture='batch_size = 9\nstore = "full"')
        world.cli("customers", "import", str(tmp_path / "customers.csv"))
        world.cli("forget", "road.runner@acme.com", "--yes")
        _Counted.made.clear()
        with monkeypatch.context() as patch:
            patch.setattr(parse_worker, "ParseWorker", _Counted)
            if how == "in-process":
                # cmd_sync imports it when its full pass runs (after the first look).
                patch.setattr(engine_sources, "configured_sources", _in_process_sources)
            out = world.cli("sync").stdout
        assert "quarantined" in out
        if how == "worker":
            assert len(_Counted.made) == 1
            (used,) = _Counted.made
            assert not used.lost and used.exitcode == 0  # it parsed every batch, then left
        else:
            assert _Counted.made == []
        runs[how] = db
    before, after = _tables(runs["in-process"]), _tables(runs["worker"])
    assert sorted(before) == sorted(after)
    # A database's own random key (settings) and what is keyed with it (the forgotten
    # address's hash in suppressions, in the audit line of `forget` and in its event's
    # subject): never equal between two databases.
    for tables in (before, after):
        assert len(tables["suppressions"]) == 1
        forgotten = [row for row in tables["events"] if row[1] == "contact.forgotten"]
        assert len(forgotten) == 1
        tables["events"] = [row for row in tables["events"] if row[1] != "contact.forgotten"]
    differ = [t for t in before if before[t] != after[t]]
    assert set(differ) <= {"settings", "suppressions", "audit_log"}, differ
    assert len([row for row in before["events"] if row[1] == "record.created"]) > 50
    records = before["records"]
    assert len(records) > 50
    assert before["quarantine"] and before["record_search_terms"] and before["skipped_messages"]


def test_a_fetch_that_fails_after_a_parsed_batch_leaves_that_batch_saved(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker path hands a parsed batch to the save before the next FETCH can fail: its
    cursor ends where the in-process pass's does, not a batch behind."""
    world = World(dovecot, tmp_path, "")
    login = world.rep("alice")
    dovecot.deliver_many(login, [m.raw for m in generate(60, seed=5)])
    real_fetch = ImapSession.fetch
    cursors: dict[str, int] = {}
    calls = {"n": 0}

    def failing_from_the_third(self: ImapSession, uids: list[int]) -> Any:
        calls["n"] += 1
        if calls["n"] >= 3:
            raise TransientError("the connection dropped mid-FETCH")
        return real_fetch(self, uids)

    for how in ("in-process", "worker"):
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{tmp_path / f'{how}.db'}"},
                "organization": {"internal_domains": ["example.com"]},
                "capture": {"batch_size": 9},
                "mailbox": [
                    {
                        "name": "alice", "owner": "alice@example.com", "host": "127.0.0.1",
                        "port": dovecot.port, "security": "plain", "username": login,
                        "password": dovecot.users[login], "folders": ["INBOX"],
                    }
                ],
            }
        )  # fmt: skip
        calls["n"] = 0
        engine = database.open_database(config.database.url)
        _Counted.made.clear()
        with monkeypatch.context() as patch:
            patch.setattr(ImapSession, "fetch", failing_from_the_third)
            patch.setattr(parse_worker, "ParseWorker", _Counted)
            (result,) = MailSync(engine, config, parse_worker=how == "worker").run_once()
        assert not result.ok
        assert bool(_Counted.made) == (how == "worker")  # one a try: the pass retries
        with engine.connect() as conn:
            cursor = get_cursor(conn, "alice", "INBOX")
        engine.dispose()
        assert cursor is not None
        cursors[how] = cursor.last_uid
    assert cursors["in-process"] == 18  # two batches fetched, parsed and saved
    assert cursors["worker"] == cursors["in-process"]
