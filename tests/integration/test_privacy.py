"""`syncd forget` leaves no trace and suppresses the address: real Dovecot, Radicale, SQLite
and PostgreSQL.  The database is read back table by table, column by column, and on SQLite
byte by byte."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import create_engine, inspect, select, table, text

from tests.conftest import World
from tests.mail import make_message
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = [pytest.mark.dovecot, pytest.mark.radicale]

ADDRESS = "zora.quill@quillworks.io"
NAME = "Zora Quill"
MON_9 = datetime(2026, 3, 2, 8, tzinfo=UTC)  # Monday 09:00 in Berlin
LATER = MON_9 + timedelta(days=2)


def _tasks(world: World) -> list[dict[str, Any]]:
    return json.loads(world.cli("tasks", "list", "--json").stdout)  # type: ignore[no-any-return]


def _from_zora(message_id: str, subject: str) -> bytes:
    return make_message(
        sender=f"{NAME} <{ADDRESS}>", subject=subject, message_id=message_id, date=MON_9,
        body="Could we talk about the renewal?\r\n",
    )  # fmt: skip


def _wile_copying_zora(message_id: str, subject: str, body: str) -> bytes:
    return make_message(
        sender="Wile Coyote <wile@acme.com>", to="Alice Rep <alice@example.com>",
        cc=f"{NAME} <{ADDRESS}>", subject=subject, message_id=message_id, date=MON_9,
        body=body,
    )  # fmt: skip


_MEETING = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:demo-1\r\n"
    "DTSTAMP:20260101T000000Z\r\nDTSTART:20260302T130000Z\r\nDTEND:20260302T140000Z\r\n"
    f"SUMMARY:Renewal demo\r\nORGANIZER;CN={NAME}:mailto:{ADDRESS}\r\n"
    "ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n"
    "ATTENDEE;PARTSTAT=ACCEPTED:mailto:wile@acme.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def _traces(db_url: str, tmp: Path) -> list[str]:
    """Every place in the database that still names the address or the display name."""
    needles = (ADDRESS.lower(), NAME.lower())
    found: list[str] = []
    engine = create_engine(db_url)
    with engine.connect() as conn:
        for name in inspect(conn).get_table_names():
            columns = [c["name"] for c in inspect(conn).get_columns(name)]
            query = select(*(text(f'"{c}"') for c in columns)).select_from(table(name))
            for row in conn.execute(query):
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, str) and any(n in value.lower() for n in needles):
                        found.append(f"{name}.{column}: {value[:120]!r}")
    engine.dispose()
    if db_url.startswith("sqlite"):
        for path in tmp.glob("syncd.db*"):  # the file, its WAL and shared memory
            data = path.read_bytes().lower()
            found += [f"{path.name} bytes" for n in needles if n.encode() in data]
    return found


_FORGOTTEN_EVENT = f"events.data: {json.dumps({'address': ADDRESS}, separators=(',', ':'))!r}"


def _traces_but_the_forgotten_event(db_url: str, tmp: Path) -> list[str]:
    """``_traces`` except the contact.forgotten event, which carries the address to the
    consumers until they all have it (and the SQLite file's bytes of that one row)."""
    found = _traces(db_url, tmp)
    assert found.count(_FORGOTTEN_EVENT) == 1, found
    return [t for t in found if t != _FORGOTTEN_EVENT and not t.endswith(" bytes")]


def test_forget_leaves_no_trace_and_the_address_is_never_captured_again(
    world: World, radicale: Radicale, db_url: str
) -> None:
    login = world.rep("alice")
    cal = world.cal_rep("alice", radicale)
    world.customers(CUSTOMERS_CSV)
    world.write_config(
        mailbox={
            "alice": {"folders": ["INBOX", "Sent"]},
            "alice-cal": {"tasks_calendar": "Follow-ups"},
        },
        capture='store = "full"\npast_days = 3650\nfuture_days = 3650',
    )
    # Zora alone (a record that goes), and Wile naming her (a record that stays).
    world.deliver("alice", _from_zora("<z1@mail.test>", f"Renewal, from {NAME}"))
    world.deliver(
        "alice",
        _wile_copying_zora(
            "<w1@acme.com>", f"Re: Renewal, from {NAME}",
            f"As {NAME} <{ADDRESS}> wrote, we want 40 seats.\r\n",
        ),
    )  # fmt: skip
    world.put_event("alice", "demo.ics", _MEETING)
    with time_machine.travel(MON_9 + timedelta(hours=1), tick=False):
        world.cli("sync")
        world.cli("reconcile", "assign", ADDRESS, "--customer", "Acme Corp")  # an audit row
    with time_machine.travel(LATER, tick=False):
        world.cli("sync")  # tasks made and pushed to the rep's task list
    titles = {t["title"] for t in _tasks(world)}
    assert f"Reply to {NAME}: Renewal, from {NAME}" in titles
    folder = radicale.calendar_dir(cal, "follow-ups")
    assert any(NAME in p.read_text() for p in folder.glob("syncd-task-*.ics"))
    before = {t.split(":")[0] for t in _traces(world.db_url, world.tmp)}
    # What the scan must find before the forget: the test sees what it looks for.
    assert {
        "records.organizer", "records.subject", "records.body", "tasks.title",
        "audit_log.target", "participants.address", "contacts.name", "events.data",
    } <= before, before  # fmt: skip

    out = world.cli("forget", ADDRESS, "--yes").stdout
    assert _traces_but_the_forgotten_event(world.db_url, world.tmp) == []
    assert "1 record(s)" in out and "will not be captured" in out
    audit = json.loads(world.cli("audit", "--json").stdout)
    label = next(a["target"] for a in audit if a["action"] == "forget")
    assert [a["action"] for a in audit if a["target"] == label] == ["forget", "assign"]

    # The next task sync takes the VTODOs about her out of the rep's list or rewrites them.
    with time_machine.travel(LATER + timedelta(hours=1), tick=False):
        world.cli("sync")
    for todo in folder.glob("*.ics"):
        assert NAME.lower() not in todo.read_text().lower(), todo.name
    assert all(NAME not in t["title"] for t in _tasks(world))
    assert all(t["record_id"] is not None for t in _tasks(world) if t["status"] == "open")

    # She writes again, copies Wile again, and the folder's UIDVALIDITY is reset: the
    # whole INBOX is read anew.  Nothing of hers may come back.
    world.deliver("alice", _from_zora("<z2@mail.test>", "Still there?"))
    world.deliver(
        "alice",
        _wile_copying_zora("<w2@acme.com>", f"Seats for {NAME}", f"{NAME} <{ADDRESS}> agrees.\r\n"),
    )
    world.dovecot.reset_uidvalidity(login)
    # And she invites again: with Wile (kept, without her), and alone (not kept at all).
    world.put_event("alice", "demo2.ics", _MEETING.replace("demo-1", "demo-2"))
    alone = _MEETING.replace("demo-1", "demo-3").replace("Renewal demo", "Private chat")
    world.put_event(
        "alice", "demo3.ics", alone.replace("mailto:wile@acme.com", "mailto:alice@example.com")
    )
    with time_machine.travel(LATER + timedelta(hours=2), tick=False):
        world.cli("sync")
    kept = {r["message_id"] or r["subject"]: r for r in world.records()}
    assert [r["subject"] for r in world.records() if r["kind"] == "meeting"] == ["Renewal demo"] * 2
    assert "z1@mail.test" not in kept and "z2@mail.test" not in kept
    assert {"w1@acme.com", "w2@acme.com"} <= set(kept)
    assert all(p["address"] != ADDRESS for r in kept.values() for p in r["participants"])
    queue = json.loads(world.cli("reconcile", "list", "--json").stdout)
    assert all(e["address"] != ADDRESS for e in queue)

    assert _traces_but_the_forgotten_event(world.db_url, world.tmp) == []
    again = world.cli("forget", ADDRESS, "--yes").stdout  # idempotent
    assert "removed 0 contact(s), 0 participant row(s), 0 record(s)" in again
    assert "already suppressed" in again
    assert _traces_but_the_forgotten_event(world.db_url, world.tmp) == []
    # With no [[webhook]], the feed keeps contact.forgotten for [events] keep_forgotten (7
    # days) for its pull consumers; the sync after that deletes it, from the file too.
    with time_machine.travel(datetime.now(UTC) + timedelta(days=8), tick=False):
        world.cli("sync")
    assert _traces(world.db_url, world.tmp) == []


def test_the_fingerprint_is_keyed_and_the_key_never_shown(world: World) -> None:
    world.rep("alice")
    world.deliver("alice", _from_zora("<z1@mail.test>", "Hello"))
    world.cli("sync")
    world.cli("forget", ADDRESS, "--yes")
    audit = json.loads(world.cli("audit", "--json").stdout)
    target = next(a["target"] for a in audit if a["action"] == "forget")
    assert target.startswith("hmac:")
    assert hashlib.sha256(ADDRESS.encode()).hexdigest()[:16] not in target  # not guessable
    engine = create_engine(world.db_url)
    with engine.connect() as conn:
        secret = conn.scalar(text("SELECT value FROM settings WHERE name = 'installation_secret'"))
    engine.dispose()
    assert secret and len(secret) == 64
    shown = "".join(
        world.cli(*args, expect=None).output
        for args in (("audit",), ("audit", "--json"), ("reconcile", "list"), ("status",))
    )
    assert secret not in shown
