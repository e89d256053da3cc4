"""Migration 0011 on a database written by the code before it: nothing lost, nothing fetched again.

tests/fixtures/syncd-0010.db was made by syncd at revision 0010 (see tests/migration_scenario.py
for how): two syncs of a mailbox with three captured messages, a skipped and a quarantined
one and a folder that does not exist, a mailbox whose login fails, a calendar with two
meetings (one quarantined for its crowd of attendees) and a calendar account whose login
fails.  Here the same server data is laid out on fresh servers, the old database is pointed at
them (the two values a fresh server picks for itself: the folder's UIDVALIDITY and Radicale's
port), upgraded, compared row by row, and synced again: no message or calendar object is
downloaded twice.  On PostgreSQL the old rows are the fixture's, inserted into a schema
migrated to 0010.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import imapclient
import pytest
from alembic import command
from sqlalchemy import Connection, Engine, Integer, MetaData, create_engine, inspect, text

from syncd.connectors.dav import CalDavSession, Changes
from syncd.connectors.imap import ImapSession
from syncd.store import database
from tests.conftest import World
from tests.migration_scenario import CAL_USERS, USERS, lay_out
from tests.servers.dovecot import Dovecot
from tests.servers.radicale import Radicale

pytestmark = [pytest.mark.dovecot, pytest.mark.radicale]

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "syncd-0010.db"
UNCHANGED = ("records", "sources", "skipped_messages", "calendar_objects", "meeting_sources")
RENAMED = {"sources": "provenance"}  # its name at head (migration 0030), same rows


@pytest.fixture
def servers() -> Iterator[tuple[Dovecot, Radicale]]:
    """Fresh servers with the fixture's logins (its calendar hrefs name them)."""
    root = Path(tempfile.mkdtemp(prefix="syncd-test-0011-"))
    root.chmod(0o755)  # Dovecot's own users read below it
    dovecot = Dovecot(root / "dovecot", USERS, tls=True).start()
    radicale = Radicale(root / "radicale", CAL_USERS).start()
    yield dovecot, radicale
    dovecot.stop()
    radicale.stop()
    shutil.rmtree(root, ignore_errors=True)


def _rows(conn: Connection, sql: str) -> set[tuple[Any, ...]]:
    return {tuple(row) for row in conn.execute(text(sql))}


def _old_database(db_url: str) -> None:
    """The fixture as the database at db_url: the file itself on SQLite; on PostgreSQL a
    schema migrated to 0010 holding the fixture's rows."""
    if db_url.startswith("sqlite"):
        with sqlite3.connect(FIXTURE) as source, sqlite3.connect(db_url.split("///", 1)[1]) as out:
            source.backup(out)
        return
    engine = database.make_engine(db_url)
    cfg = database._alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0010")
    old, new = MetaData(), MetaData()
    fixture = create_engine(f"sqlite:///{FIXTURE}")
    old.reflect(fixture)
    new.reflect(engine)
    with fixture.connect() as source, engine.begin() as conn:
        for table in old.sorted_tables:
            if table.name == "alembic_version":
                continue
            rows = [
                {k: _utc(v) for k, v in row.items()}
                for row in source.execute(table.select()).mappings()
            ]
            if rows:
                conn.execute(new.tables[table.name].insert(), rows)
            ids = new.tables[table.name].c.get("id")
            if ids is not None and isinstance(ids.type, Integer):  # the next insert: a new id
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"
                    )
                )
    fixture.dispose()
    engine.dispose()


def _utc(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value


def _point_at(engine: Engine, uidvalidity: int, calendar_url: str) -> None:
    """Give the old rows the fresh servers' UIDVALIDITY and calendar URL."""
    with engine.begin() as conn:
        old_url = conn.scalar(text("SELECT url FROM calendar_states WHERE url <> ''"))
        for table in ("folder_states", "quarantine", "sources", "skipped_messages"):
            conn.execute(
                text(f"UPDATE {table} SET uidvalidity = :v WHERE uidvalidity IS NOT NULL"),
                {"v": uidvalidity},
            )
        for table in ("calendar_states", "calendar_objects", "meeting_sources"):
            conn.execute(
                text(f"UPDATE {table} SET url = :new WHERE url = :old"),
                {"new": calendar_url, "old": old_url},
            )
        conn.execute(
            text("UPDATE calendar_quarantine SET url = :new WHERE url = :old"),
            {"new": calendar_url, "old": old_url},
        )


def _old_columns(conn: Connection) -> dict[str, str]:
    """The 0010 columns of each unchanged table: later migrations may add columns of their own."""
    return {
        name: ", ".join(column["name"] for column in inspect(conn).get_columns(name))
        for name in UNCHANGED
    }


def _before(conn: Connection) -> dict[str, set[tuple[Any, ...]]]:
    """The 0010 rows, and what each must become."""
    out = {name: _rows(conn, f"SELECT * FROM {name}") for name in UNCHANGED}
    out["source_states"] = (
        _rows(
            conn,
            "SELECT 'mailbox', mailbox, '', last_attempt_at, last_success_at, last_error, "
            "last_error_kind, last_error_at, 0, 0 FROM mailbox_states",
        )
        | _rows(
            conn,
            "SELECT 'mailbox', mailbox, folder, NULL, last_success_at, last_error, NULL, "
            "last_error_at, messages_captured, messages_skipped FROM folder_states",
        )
        | _rows(
            conn,
            "SELECT 'calendar', calendar, url, NULL, last_success_at, last_error, "
            "CASE WHEN last_error IS NULL THEN NULL ELSE 'config' END, last_error_at, "
            "meetings_captured, 0 FROM calendar_states",
        )
    )
    out["folder_cursors"] = _rows(
        conn, "SELECT mailbox, folder, uidvalidity, last_uid, highestmodseq FROM folder_states"
    )
    out["calendar_cursors"] = _rows(
        conn,
        "SELECT calendar, url, display_name, sync_token, discovered_at FROM calendar_states "
        "WHERE url <> ''",
    )
    out["quarantine"] = {
        ("mailbox", m, f, str(u), str(v), r, at)
        for m, f, v, u, r, at in _rows(
            conn, "SELECT mailbox, folder, uidvalidity, uid, reason, created_at FROM quarantine"
        )
    } | _rows(
        conn,
        "SELECT 'calendar', calendar, url, href, etag, reason, created_at FROM calendar_quarantine",
    )
    return out


def _after(conn: Connection, columns: dict[str, str]) -> dict[str, set[tuple[Any, ...]]]:
    out = {
        name: _rows(conn, f"SELECT {columns[name]} FROM {RENAMED.get(name, name)}")
        for name in UNCHANGED
    }
    out["source_states"] = _rows(
        conn,
        "SELECT kind, source, place, last_attempt_at, last_success_at, last_error, "
        "last_error_kind, last_error_at, captured, skipped FROM source_states",
    )
    out["folder_cursors"] = _rows(
        conn, "SELECT mailbox, folder, uidvalidity, last_uid, highestmodseq FROM folder_cursors"
    )
    out["calendar_cursors"] = _rows(
        conn, "SELECT calendar, url, display_name, sync_token, discovered_at FROM calendar_cursors"
    )
    out["quarantine"] = _rows(
        conn,
        "SELECT kind, source, place, item, version, reason, created_at FROM quarantine",
    )
    return out


def test_an_upgraded_0010_database_keeps_every_row_and_fetches_nothing_again(
    servers: tuple[Dovecot, Radicale],
    tmp_path: Path,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dovecot, radicale = servers
    world = World(dovecot, tmp_path, db_url)
    lay_out(world, dovecot, radicale)
    imap = imapclient.IMAPClient("127.0.0.1", port=dovecot.port, ssl=False)
    imap.login("user0", USERS["user0"])
    uidvalidity = int(imap.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"])
    assert imap.search("ALL") == [1, 2, 3, 4, 5]
    imap.logout()

    _old_database(db_url)
    engine = database.make_engine(db_url)
    assert database.current_revision(engine) == "0010"
    _point_at(engine, uidvalidity, f"{radicale.url}cal0/work/")
    with engine.connect() as conn:
        expected = _before(conn)
        columns = _old_columns(conn)
    database.upgrade(engine)
    assert database.current_revision(engine) == database.head_revision()
    with engine.connect() as conn:
        found = _after(conn, columns)
    gone = {"mailbox_states", "folder_states", "calendar_states", "calendar_quarantine"}
    assert not gone & set(inspect(engine).get_table_names())
    assert found == expected
    figures = {name: len(rows) for name, rows in found.items()}
    assert figures == {
        "records": 5,  # 3 messages, 2 meetings
        "sources": 3,
        "skipped_messages": 1,
        "calendar_objects": 2,
        "meeting_sources": 2,
        # alice, INBOX, Missing, bob; alice-cal, its calendar, bob-cal
        "source_states": 7,
        "folder_cursors": 2,
        "calendar_cursors": 1,
        "quarantine": 2,  # UID 4 (no sender), the crowded meeting
    }, figures
    states = {(k, s, p): (e, kind) for k, s, p, _, _, e, kind, *_ in found["source_states"]}
    assert states[("mailbox", "bob", "")][1] == "credentials"
    assert states[("calendar", "bob-cal", "")][1] == "config"  # still "failing", as 0010 said
    assert states[("mailbox", "alice", "Missing")][0] is not None

    # The next sync reads nothing it had read: counted at the connectors.
    downloads: list[str] = []
    imap_fetch, imap_ids, dav_changes, dav_fetch = (
        ImapSession.fetch,
        ImapSession.fetch_message_ids,
        CalDavSession.changes,
        CalDavSession.fetch,
    )

    def fetch(self: ImapSession, uids: list[int]) -> Any:
        downloads.extend(f"FETCH {u}" for u in uids)
        return imap_fetch(self, uids)

    def fetch_ids(self: ImapSession, uids: list[int]) -> Any:
        downloads.extend(f"FETCH-ID {u}" for u in uids)
        return imap_ids(self, uids)

    def changes(self: CalDavSession, *args: Any, **kwargs: Any) -> Changes:
        got = dav_changes(self, *args, **kwargs)
        downloads.extend(f"GET {o.href}" for o in got.changed)
        return got

    def dav_get(self: CalDavSession, url: str, hrefs: list[str]) -> Any:
        downloads.extend(f"GET {h}" for h in hrefs)
        return dav_fetch(self, url, hrefs)

    monkeypatch.setattr(ImapSession, "fetch", fetch)
    monkeypatch.setattr(ImapSession, "fetch_message_ids", fetch_ids)
    monkeypatch.setattr(CalDavSession, "changes", changes)
    monkeypatch.setattr(CalDavSession, "fetch", dav_get)
    out = world.cli("sync", expect=1).stdout
    assert downloads == [], downloads
    assert "alice: 0 captured, 0 skipped, 0 quarantined" in out, out
    assert "alice-cal: 0 meetings new, 0 updated, 0 cancelled, 0 quarantined" in out, out
    with engine.connect() as conn:
        again = _after(conn, columns)
    for name in (*UNCHANGED, "folder_cursors", "quarantine"):
        assert again[name] == found[name], name
    assert len(again["source_states"]) == 7
    shown = json.loads(world.cli("status", "--json", expect=3).stdout)["sources"]
    status = {s.get("mailbox") or s.get("calendar"): s for s in shown}
    assert {n: s["state"] for n, s in status.items()} == {
        "alice": "degraded",  # the folder that does not exist
        "bob": "failing",
        "alice-cal": "ok",
        "bob-cal": "failing",
    }
    assert status["alice"]["quarantined"][0]["uid"] == 4
    assert status["alice"]["folders"][0]["last_uid"] == 5
    assert status["alice-cal"]["calendars"][0]["meetings_captured"] == 2
    assert [q["href"] for q in status["alice-cal"]["quarantined"]] == ["/cal0/work/crowd-1.ics"]
    engine.dispose()


_OLD_ROWS = {
    "mailbox_states": "*",
    "folder_states": "mailbox, folder, uidvalidity, last_uid, highestmodseq, messages_captured, "
    "messages_skipped, last_success_at, last_error, last_error_at",
    "calendar_states": "calendar, url, display_name, sync_token, discovered_at, last_success_at, "
    "last_error, last_error_at, meetings_captured",
    "quarantine": "mailbox, folder, uidvalidity, uid, reason, created_at",
    "calendar_quarantine": "calendar, url, href, etag, reason, created_at",
}


def test_0011_downgrades_to_the_rows_it_upgraded(db_url: str) -> None:
    _old_database(db_url)
    engine = database.make_engine(db_url)
    with engine.connect() as conn:
        before = {t: _rows(conn, f"SELECT {cols} FROM {t}") for t, cols in _OLD_ROWS.items()}
    database.upgrade(engine)
    cfg = database._alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")
    assert database.current_revision(engine) == "0010"
    with engine.connect() as conn:
        after = {t: _rows(conn, f"SELECT {cols} FROM {t}") for t, cols in _OLD_ROWS.items()}
    assert after == before
    assert sum(len(rows) for rows in after.values()) == 2 + 2 + 3 + 1 + 1
    database.upgrade(engine)  # and up again, as an operator who went back and forth would
    assert database.current_revision(engine) == database.head_revision()
    engine.dispose()
