"""`syncd sync`'s first look (issue #20, engine/first_look.py): an unchanged mailbox is
synced through the DB-API driver, without SQLAlchemy, writing the rows the full pass
writes; anything with work to do (new mail, a rule falling due, data or configuration the
rules have not seen, a schema behind the code) takes the full pass.  Real Dovecot, SQLite
and PostgreSQL (where the full pass always runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import create_engine, select

from syncd.engine import first_look
from syncd.schema.tables import metadata
from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot

MON_9 = datetime(2026, 3, 2, 8, tzinfo=UTC)  # Monday 09:00 in Berlin (the tests' org zone)

Rows = dict[str, dict[tuple[Any, ...], dict[str, Any]]]
# The first look is SQLite's (PostgreSQL always takes the full pass): these run there alone.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many passes the first look wrote (one item each)."""
    done: list[int] = []
    real = first_look._record

    def spy(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        done.append(1)

    monkeypatch.setattr(first_look, "_record", spy)
    yield done


def _snapshot(url: str) -> Rows:
    """Every row of every table, by primary key."""
    engine = create_engine(url)
    out: Rows = {}
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                key = [c.name for c in table.primary_key.columns]
                out[table.name] = {
                    tuple(row[k] for k in key): dict(row)
                    for row in conn.execute(select(table)).mappings()
                }
    finally:
        engine.dispose()
    return out


def _changes(before: Rows, after: Rows) -> set[tuple[str, tuple[Any, ...], str]]:
    """(table, key, column) of every value a pass changed; a row added or removed is
    column "+" or "-"."""
    out: set[tuple[str, tuple[Any, ...], str]] = set()
    for name, rows in after.items():
        old = before[name]
        out |= {(name, key, "+") for key in rows.keys() - old.keys()}
        out |= {(name, key, "-") for key in old.keys() - rows.keys()}
        for key in rows.keys() & old.keys():
            out |= {(name, key, c) for c, v in rows[key].items() if old[key][c] != v}
    return out


def _setup(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})


def test_an_unchanged_pass_writes_what_the_full_pass_writes(
    world: World, looks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(world)
    now = datetime.now(UTC)
    # A customer's question: its task falls due a business day from now, not before.
    world.deliver("alice", make_message(message_id="<ask@acme.com>", date=now))
    assert "alice: 1 captured" in world.cli("sync").output

    monkeypatch.setenv(first_look.DISABLE_ENV, "1")
    before = _snapshot(world.db_url)
    full = world.cli("sync")
    after_full = _snapshot(world.db_url)
    monkeypatch.delenv(first_look.DISABLE_ENV)
    looked = world.cli("sync")
    after_look = _snapshot(world.db_url)

    assert looks == ([1] if world.db_url.startswith("sqlite") else [])
    assert (looked.output, looked.exit_code) == (full.output, full.exit_code)
    assert looked.output == "alice: 0 captured, 0 skipped, 0 quarantined\n"
    written = _changes(before, after_full)
    assert _changes(after_full, after_look) == written
    # The account's attempt and success, each folder's success, the held-meetings mark.
    assert {(t, c) for t, _k, c in written} >= {
        ("source_states", "last_attempt_at"),
        ("source_states", "last_success_at"),
    }
    assert {k for t, k, c in written if t == "source_states"} == {
        k for k, row in after_look["source_states"].items() if row["source"] == "alice"
    }
    for table, key, column in written:  # the same kind of value, a later time
        full_value, look_value = after_full[table][key][column], after_look[table][key][column]
        assert type(full_value) is type(look_value)
        assert look_value >= full_value, (table, key, column)
    # What neither pass changed is the same, row for row.
    unchanged = {
        name: {k: {c: v for c, v in row.items() if (name, k, c) not in written}
               for k, row in rows.items()}
        for name, rows in after_look.items()
    }  # fmt: skip
    assert unchanged == {
        name: {k: {c: v for c, v in row.items() if (name, k, c) not in written}
               for k, row in rows.items()}
        for name, rows in after_full.items()
    }  # fmt: skip


def test_an_unchanged_pass_imports_no_sqlalchemy(world: World) -> None:
    _setup(world)
    world.deliver("alice", make_message(message_id="<ask@acme.com>", date=datetime.now(UTC)))
    watched = ("sqlalchemy", "syncd.schema.tables", "syncd.engine.imap.mail_sync", "alembic")
    probe = (
        "import json, sys\n"
        "from syncd.cli.main import cli\n"
        f"try:\n    cli.main(['--config', {str(world.config_path)!r}, 'sync'], prog_name='syncd')\n"
        "except SystemExit as done:\n    assert not done.code, done.code\n"
        f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))\n"
    )
    runs = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        )
        *lines, loaded = done.stdout.splitlines()
        runs.append((lines, json.loads(loaded)))
    assert runs[0][0] == ["alice: 1 captured, 0 skipped, 0 quarantined"]
    assert "sqlalchemy" in runs[0][1]  # the probe sees what a full pass loads
    for lines, loaded in runs[1:]:
        assert lines == ["alice: 0 captured, 0 skipped, 0 quarantined"]
        if world.db_url.startswith("sqlite"):
            assert loaded == []
        else:  # PostgreSQL: always the full pass
            assert "sqlalchemy" in loaded


def test_new_mail_takes_the_full_pass(world: World, looks: list[int]) -> None:
    _setup(world)
    world.deliver("alice", make_message(message_id="<one@acme.com>", date=datetime.now(UTC)))
    world.cli("sync")
    world.cli("sync")
    looked = len(looks)
    world.deliver("alice", make_message(message_id="<two@acme.com>", date=datetime.now(UTC)))
    assert "alice: 1 captured" in world.cli("sync").output
    assert len(looks) == looked
    assert {r["message_id"] for r in world.records()} == {"one@acme.com", "two@acme.com"}


def _tasks(world: World) -> list[dict[str, Any]]:
    return json.loads(world.cli("tasks", "list", "--json").stdout)  # type: ignore[no-any-return]


def test_a_rule_falling_due_takes_the_full_pass(world: World, looks: list[int]) -> None:
    _setup(world)
    world.deliver("alice", make_message(message_id="<ask@acme.com>", subject="Quote?", date=MON_9))
    sqlite = world.db_url.startswith("sqlite")
    with time_machine.travel(MON_9 + timedelta(hours=20), tick=False):  # not due yet
        world.cli("sync")
    with time_machine.travel(MON_9 + timedelta(hours=22), tick=False):  # still not
        world.cli("sync")
        assert looks == ([1] if sqlite else [])
        assert _tasks(world) == []
    # Due Tuesday 09:00 in Berlin (08:00 UTC): the first sync after it evaluates.
    with time_machine.travel(MON_9 + timedelta(days=1, seconds=1), tick=False):
        assert world.cli("sync").output == "alice: 0 captured, 0 skipped, 0 quarantined\n"
        assert looks == ([1] if sqlite else [])
        (task,) = _tasks(world)
    assert (task["rule"], task["title"]) == ("unanswered_inbound", "Reply to Wile Coyote: Quote?")
    with time_machine.travel(MON_9 + timedelta(days=1, hours=1), tick=False):
        world.cli("sync")  # the task the last pass made: its mark was not written then
        world.cli("sync")
    assert looks == ([1, 1] if sqlite else [])
    assert len(_tasks(world)) == 1


def test_data_or_configuration_the_rules_have_not_seen_takes_the_full_pass(
    world: World, looks: list[int]
) -> None:
    _setup(world)
    world.deliver("alice", make_message(message_id="<ask@acme.com>", date=datetime.now(UTC)))
    world.cli("sync")
    world.cli("sync")
    counted = len(looks)
    world.customers("customer,domains,contact_name,contact_email\nHooli,hooli.xyz,,\n")
    world.cli("sync")  # a customer more: the rules read the directory
    assert len(looks) == counted
    world.cli("sync")
    counted = len(looks)
    assert counted == (2 if world.db_url.startswith("sqlite") else 0)
    world.write_config(
        mailbox={"alice": {"folders": ["INBOX", "Sent"]}},
        extra='[[followup]]\nrule = "unanswered_inbound"\nafter = "2 business days"',
    )
    world.cli("sync")
    assert len(looks) == counted


def test_a_schema_behind_the_code_takes_the_full_pass(
    world: World, looks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(world)
    world.cli("sync")
    world.cli("sync")
    counted = len(looks)
    monkeypatch.setattr(first_look, "code_head", lambda: "a-newer-revision")
    assert world.cli("sync").output == "alice: 0 captured, 0 skipped, 0 quarantined\n"
    assert len(looks) == counted


@SQLITE_ONLY
def test_data_changed_while_the_server_answers_takes_the_full_pass(
    world: World, looks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stamp is asked again inside the write lock: a change committed between the
    look's reading and its writing (another command, here a contact renamed) leaves the
    run to the full pass rather than recording the rules' mark over data they never saw."""
    import sqlite3

    _setup(world)
    world.cli("sync")
    world.cli("sync")  # the mark
    world.cli("sync")
    assert looks, "an unchanged sync is the first look's"
    before = len(looks)
    real = first_look._unchanged_box
    path = world.db_url.removeprefix("sqlite:///")

    seen: list[Any] = []

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        with sqlite3.connect(path) as other:
            other.execute("UPDATE contacts SET name = name || ' Jr'")
            seen.append(
                other.execute("SELECT value FROM settings WHERE name = 'data_changes'").fetchall()
            )
        other.close()
        return found

    monkeypatch.setattr(first_look, "_unchanged_box", meanwhile)
    world.cli("sync")
    assert seen, "the look asked the server"
    assert len(looks) == before, seen  # the full pass ran


# Cases an adversarial review found where the first look skipped what the full pass does, or
# did it twice: each runs both ways ("full": the full pass alone, as before the first look).


def _tasks_in(world: World, status: str = "open") -> list[dict[str, Any]]:
    out = world.cli("tasks", "list", "--json", "--status", status).stdout
    return json.loads(out)  # type: ignore[no-any-return]


@SQLITE_ONLY
@pytest.mark.parametrize("full", [False, True], ids=["first_look", "full_pass"])
def test_a_contact_moved_to_another_customer_closes_no_response(
    world: World, looks: list[int], monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    """`syncd contacts add ADDRESS --customer OTHER` moves a contact in place (no new row,
    no event, no audit row): the data stamp does not move, yet the rules' answer does (the
    reply now comes from the customer the rep wrote to, which settles no_response)."""
    if full:
        monkeypatch.setenv(first_look.DISABLE_ENV, "1")
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})
    world.deliver(
        "alice",
        make_message(
            sender="Alice Rep <alice@example.com>",
            to="Wile Coyote <wile@acme.com>",
            subject="Quote",
            message_id="<out@example.com>",
            date=MON_9,
        ),
        folder="Sent",
    )
    # The answer comes from a contact of another customer (Umbrella's Albert).
    world.deliver(
        "alice",
        make_message(
            sender="Albert Wesker <albert.wesker@gmail.com>",
            subject="Re: Quote",
            message_id="<re@gmail.com>",
            in_reply_to="<out@example.com>",
            date=MON_9 + timedelta(hours=1),
        ),
    )
    with time_machine.travel(MON_9 + timedelta(days=4), tick=False):  # Friday: 3 business days
        world.cli("sync")
        world.cli("sync")  # nothing changed: the mark is written
        world.cli("sync")
        (task,) = [t for t in _tasks_in(world) if t["rule"] == "no_response"]
        assert task["status"] == "open"
        out = world.cli("contacts", "add", "albert.wesker@gmail.com", "--customer", "Acme Corp")
        assert "saved" in out.output
        world.cli("sync")
        still_open = [t for t in _tasks_in(world) if t["rule"] == "no_response"]
        done = [t for t in _tasks_in(world, "done") if t["rule"] == "no_response"]
    # The full pass closes it: the reply came from Acme now.
    assert (len(still_open), len(done)) == (0, 1), (still_open, looks)


@SQLITE_ONLY
@pytest.mark.parametrize("full", [False, True], ids=["first_look", "full_pass"])
def test_a_refused_login_is_tried_once_per_run(
    world: World, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    """A wrong password: the first look swallows the refusal and the full pass logs in
    again, so every cron run makes two failed logins per mailbox instead of one (an
    account lockout policy, fail2ban, Dovecot's auth_failure_delay: twice as soon)."""
    from syncd.connectors.imap import ImapSession

    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})
    world.cli("sync")
    world.cli("sync")  # the mark
    (world.tmp / "alice.pass").write_text("not-the-password\n")
    if full:
        monkeypatch.setenv(first_look.DISABLE_ENV, "1")
    opened: list[str] = []
    real = ImapSession.open.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ImapSession], box: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(box.name)
        return real(cls, box, *args, **kwargs)

    monkeypatch.setattr(ImapSession, "open", classmethod(counting))
    result = world.cli("sync", expect=1)
    assert "not-the-password" not in result.output
    assert opened == ["alice"], result.output


@SQLITE_ONLY
@pytest.mark.parametrize("full", [False, True], ids=["first_look", "full_pass"])
def test_a_server_that_never_answers_is_waited_for_once(
    world: World, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    """A server that accepts and never greets: the first look waits out the timeout, then
    the full pass waits it out again (and retries as before): one connection (and one
    [mailbox] timeout) more per mailbox per run than main."""
    import socket
    import threading
    import time

    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})
    world.cli("sync")
    world.cli("sync")  # the mark
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        mute.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(mute.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    world.write_config(
        mailbox={
            "alice": {"folders": ["INBOX", "Sent"], "port": mute.getsockname()[1], "timeout": "1s"}
        }
    )
    if full:
        monkeypatch.setenv(first_look.DISABLE_ENV, "1")
    try:
        began = time.monotonic()
        world.cli("sync", expect=1)
        took = time.monotonic() - began
    finally:
        stop.set()
        thread.join()
        for s in accepted:
            s.close()
        mute.close()
    print(f"connections {len(accepted)}, {took:.1f} s")
    # main's full pass, measured with SYNCD_NO_FIRST_LOOK: its connections (see the output)
    assert len(accepted) == MAIN_CONNECTIONS, (len(accepted), took)


# main's full pass (SYNCD_NO_FIRST_LOOK, run 2026-12-07): 6 connections, 8.0 s with a 1 s
# timeout; h-look: 9 connections, 12.2 s (the first look's own open retries too).
MAIN_CONNECTIONS = 6
