"""Crashes, replays and schema: nothing lost, nothing twice, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from syncd.config_file import load_config, parse_config
from syncd.connectors.imap import ImapSession
from syncd.engine.imap import mail_sync
from syncd.engine.imap.mail_sync import MailSync
from syncd.schema.tables import metadata, participants, provenance, records, unmatched_addresses
from syncd.store import database
from syncd.store.capture import save_batch
from syncd.store.search_index import is_index_object
from tests.conftest import World
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.sample import CUSTOMERS_CSV, generate

pytestmark = pytest.mark.dovecot


class Crash(Exception):
    pass


def _counts(world: World) -> dict[str, Any]:
    engine = database.open_database(world.db_url)
    with engine.connect() as conn:
        out = {
            t.name: conn.scalar(select(func.count()).select_from(t))
            for t in (records, participants, provenance, unmatched_addresses)
        }
        out["unmatched_total"] = conn.scalar(select(func.sum(unmatched_addresses.c.count)))
        out["keys"] = sorted(conn.scalars(select(records.c.key)))
    engine.dispose()
    return out


def test_crash_mid_backfill_then_restart_equals_uninterrupted_run(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.rep("alice")
    world.rep("bob")
    world.customers(CUSTOMERS_CSV)
    for item in generate(120, seed=3):
        world.deliver(
            "alice" if item.owner.startswith("alice") else "bob", item.raw, folder=item.folder
        )
    world.write_config(capture="batch_size = 7")
    config = load_config(world.config_path)
    engine = database.open_database(config.database.url)

    calls = {"n": 0}

    def crashing_save(conn: Any, batch: Any) -> int:
        calls["n"] += 1
        added = save_batch(conn, batch)
        if calls["n"] == 5:
            raise Crash("killed after writing, before commit")
        return added

    monkeypatch.setattr(mail_sync, "save_batch", crashing_save)
    with pytest.raises(Crash):
        MailSync(engine, config).run_once()
    monkeypatch.setattr(mail_sync, "save_batch", save_batch)
    partial = _counts(world)
    assert 0 < partial["records"] < 100
    MailSync(engine, config).run_once()
    MailSync(engine, config).run_once()
    engine.dispose()
    crashed = _counts(world)

    # The same mail into a fresh database, without a crash.
    clean_world = World(
        world.dovecot, world.tmp / "clean", world.db_url.replace("syncd.db", "clean.db")
    )
    if not world.db_url.startswith("sqlite"):
        return  # one reference run is enough; PostgreSQL is checked against the invariants below
    (world.tmp / "clean").mkdir()
    clean_world.logins = dict(world.logins)
    clean_world.passwords = dict(world.passwords)
    for name, pw in world.passwords.items():
        (world.tmp / "clean" / f"{name}.pass").write_text(pw)
    clean_world.customers(CUSTOMERS_CSV)
    clean_world.cli("sync")
    assert _counts(clean_world) == crashed


def test_replaying_a_committed_batch_changes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a second daemon, or a retry after an ambiguous commit, would do."""
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    for item in generate(30, seed=5):
        if item.owner.startswith("alice"):
            world.deliver("alice", item.raw, folder=item.folder)
    config = load_config(world.write_config())
    engine = database.open_database(config.database.url)
    batches: list[Any] = []

    def recording_save(conn: Any, batch: Any) -> int:
        batches.append(batch)
        return save_batch(conn, batch)

    monkeypatch.setattr(mail_sync, "save_batch", recording_save)
    MailSync(engine, config).run_once()
    before = _counts(world)
    with engine.begin() as conn:
        for batch in batches:
            save_batch(conn, batch)
    after = _counts(world)
    engine.dispose()
    assert after == before
    assert before["records"] > 0


def test_migrations_match_the_tables(db_url: str) -> None:
    engine = database.open_database(db_url)
    assert database.current_revision(engine) == database.head_revision()
    with engine.connect() as conn:
        # The search index's objects differ per engine (FTS5's own tables on SQLite) and
        # are made by store/search_index.py, not schema/tables.py.
        context = MigrationContext.configure(
            conn, opts={"include_name": lambda name, *_: not is_index_object(name)}
        )
        diff = compare_metadata(context, metadata)
    database.upgrade(engine)  # a second upgrade is a no-op
    engine.dispose()
    assert diff == []


def test_server_restart_mid_backfill_is_resumed_from_the_cursor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The IMAP server goes away between two batches and comes back: the pass reconnects,
    resumes from the committed cursor, and ends with every message exactly once."""
    server = Dovecot(Path(tempfile.mkdtemp(prefix="syncd-test-restart-")), {"rep": "pw"}).start()
    try:
        server.deliver_many(
            "rep", [make_message(message_id=f"<r{n}@acme.com>", subject=f"m{n}") for n in range(60)]
        )
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'restart.db'}"},
                "organization": {"internal_domains": ["example.com"]},
                "capture": {"batch_size": 10},
                "mailbox": [
                    {
                        "name": "rep", "owner": "alice@example.com", "host": "127.0.0.1",
                        "port": server.port, "security": "plain", "username": "rep",
                        "password": "pw", "folders": ["INBOX"],
                    }
                ],
            }
        )  # fmt: skip
        engine = database.open_database(config.database.url)
        fetches = {"n": 0}
        real_fetch = ImapSession.fetch

        def fetch_then_outage(self: ImapSession, uids: list[int]) -> Any:
            fetches["n"] += 1
            if fetches["n"] == 3:  # two batches are committed; the server restarts now
                server.stop()
                server.start()
            return real_fetch(self, uids)

        monkeypatch.setattr(ImapSession, "fetch", fetch_then_outage)
        (result,) = MailSync(engine, config).run_once()
        assert result.ok, result.error
        with engine.connect() as conn:
            keys = list(conn.scalars(select(records.c.key)))
            source_count = conn.scalar(select(func.count()).select_from(provenance))
        engine.dispose()
        assert len(keys) == len(set(keys)) == 60 and source_count == 60
        assert fetches["n"] > 6  # the interrupted batch was fetched again after reconnecting
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
