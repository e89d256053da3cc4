"""The outbox end to end: real Dovecot and Radicale, the real CLI, SQLite and PostgreSQL.

Every change point emits its event in the change's own transaction, with the object that
`records list --json` / `tasks list --json` prints; the feed pages by id; forget leaves no
trace but the contact.forgotten event.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from syncd.cli.main import cli
from syncd.schema.tables import webhook_deliveries, webhook_endpoints
from syncd.store import database, reconcile
from syncd.store import events as outbox
from syncd.store import tasks as task_store
from tests.conftest import World
from tests.mail import make_message
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot

MON_9 = datetime(2026, 3, 2, 8, tzinfo=UTC)  # Monday 09:00 in Berlin


def feed(world: World, *args: str) -> list[dict[str, Any]]:
    return json.loads(world.cli("events", "list", "--json", *args).stdout)  # type: ignore[no-any-return]


def tasks(world: World) -> dict[int, dict[str, Any]]:
    found = json.loads(world.cli("tasks", "list", "--json").stdout)
    return {t["id"]: t for t in found}


def stored(world: World) -> list[outbox.StoredEvent]:
    engine = database.open_database(world.db_url)
    with engine.connect() as conn:
        found = outbox.read(conn)
    engine.dispose()
    return found


def test_mail_reconciliation_and_manual_links_emit_what_records_list_prints(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(capture='store = "metadata"')
    world.deliver("alice", make_message(message_id="<m1@acme.com>", subject="One"))
    world.deliver("alice", make_message(message_id="<m2@acme.com>", sender="peter@initech.io"))
    world.deliver(
        "alice", make_message(message_id="<m3@acme.com>", sender="Who <who@unknown-startup.com>")
    )
    world.cli("sync")
    created = feed(world)
    records = {r["id"]: r for r in world.records()}
    assert [e["type"] for e in created] == ["record.created"] * 3
    assert sorted(e["data"]["id"] for e in created) == sorted(records)
    for event in created:
        assert event["data"] == records[event["data"]["id"]]  # one parser for both
        assert event["id"].isdigit() and event["created_at"].endswith("Z")
        assert set(event) == {"id", "type", "created_at", "data"}
        # [capture] store = "metadata": no text of the message in the payload either.
        assert not event["data"]["snippet"] and event["data"]["body"] is None
    when = {e.subject: e.occurred_at for e in stored(world)}
    assert set(when.values()) == {datetime(2024, 6, 3, 9, tzinfo=UTC)}

    world.cli("sync")  # nothing new: nothing announced
    last = created[-1]["id"]
    assert feed(world, "--after", last) == []

    by_mid = {r["message_id"]: r["id"] for r in records.values()}
    world.cli("reconcile", "assign", "who@unknown-startup.com", "--customer", "Acme Corp")
    (assigned,) = feed(world, "--after", last)
    now = {r["id"]: r for r in world.records()}
    stranger = by_mid["m3@acme.com"]
    assert assigned["type"] == "record.updated" and assigned["data"] == now[stranger]
    assert [c["name"] for c in assigned["data"]["customers"]] == ["Acme Corp"]
    assert assigned["data"]["participants"][0]["contact_id"] is not None

    one = str(by_mid["m1@acme.com"])
    world.cli("records", "link", one, "--customer", "Initech")
    world.cli("records", "link", one, "--customer", "Initech")  # no change, no event
    world.cli("records", "unlink", one, "--customer", "Initech")
    world.cli("records", "unlink", one, "--customer", "Initech")
    linked, unlinked = feed(world, "--after", assigned["id"])
    assert {c["name"]: c["link"] for c in linked["data"]["customers"]} == {
        "Acme Corp": "contact",
        "Initech": "manual",
    }
    assert unlinked["data"] == {r["id"]: r for r in world.records()}[int(one)]
    assert [c["name"] for c in unlinked["data"]["customers"]] == ["Acme Corp"]

    # The feed: paging by id, filtering by type, newline-delimited JSON, a table.
    every = feed(world)
    assert [int(e["id"]) for e in every] == sorted(int(e["id"]) for e in every)
    first_two = feed(world, "--limit", "2")
    assert first_two == every[:2]
    assert feed(world, "--after", first_two[-1]["id"]) == every[2:]
    assert feed(world, "--type", "record.updated") == every[3:]
    both = feed(world, "--type", "record.updated", "--type", "record.created")
    assert both == every
    lines = world.cli("events", "list", "--nl", "--after", every[-3]["id"]).stdout.splitlines()
    assert [json.loads(x) for x in lines] == every[-2:]
    table = world.cli("events", "list").stdout
    assert "record.updated" in table and f"record:{one}" in table
    bad = world.cli("events", "list", "--type", "record.moved", expect=2)
    assert "record.moved" in bad.output and "Traceback" not in bad.output


@pytest.mark.radicale
def test_rules_people_and_the_task_app_emit_task_events(world: World, radicale: Radicale) -> None:
    world.rep("alice")
    login = world.cal_rep("alice", radicale)
    world.customers(CUSTOMERS_CSV)
    world.write_config(
        mailbox={
            "alice": {"folders": ["INBOX", "Sent"]},
            "alice-cal": {"tasks_calendar": "Follow-ups"},
        }
    )
    for n in range(4):
        world.deliver(
            "alice", make_message(message_id=f"<q{n}@acme.com>", subject=f"Q{n}", date=MON_9)
        )
    with time_machine.travel(MON_9 + timedelta(days=2), tick=False):
        world.cli("sync")
    made = feed(world, "--type", "task.created")
    now = tasks(world)
    assert len(made) == 4 and {e["data"]["id"]: e["data"] for e in made} == now
    ids = {t["title"][-2:]: t["id"] for t in now.values()}
    assert {e.occurred_at for e in stored(world) if e.type == "task.created"} == {MON_9}
    last = feed(world)[-1]["id"]

    # People: dismiss, snooze, add; a repeated "done" changes nothing and says nothing.
    with time_machine.travel(MON_9 + timedelta(days=2, minutes=5), tick=False):
        world.cli("tasks", "dismiss", str(ids["Q0"]))
        world.cli("tasks", "snooze", str(ids["Q1"]), "--until", "2026-03-06")
        world.cli("tasks", "done", str(ids["Q2"]))
        world.cli("tasks", "done", str(ids["Q2"]))
        world.cli(
            "tasks", "add", "--customer", "Initech", "--owner", "alice@example.com",
            "--title", "Send the contract", "--due", "2026-03-10",
        )  # fmt: skip
    changed = feed(world, "--after", last)
    now = tasks(world)
    assert [(e["type"], e["data"]["status"]) for e in changed] == [
        ("task.updated", "dismissed"),
        ("task.updated", "snoozed"),
        ("task.updated", "done"),
        ("task.created", "open"),
    ]
    assert all(e["data"] == now[e["data"]["id"]] for e in changed)
    assert changed[1]["data"]["snoozed_until"] == "2026-03-06T00:00:00+00:00"
    last = changed[-1]["id"]

    # The rep completes Q3 in the task app; the snoozed Q1 comes back on its day.
    folder = radicale.calendar_dir(login, "follow-ups")
    todo = (folder / f"syncd-task-{ids['Q3']}.ics").read_text()
    radicale.put(
        login, "follow-ups", f"syncd-task-{ids['Q3']}.ics",
        todo.replace("STATUS:NEEDS-ACTION", "STATUS:COMPLETED"),
    )  # fmt: skip
    with time_machine.travel(datetime(2026, 3, 6, 1, tzinfo=UTC), tick=False):
        world.cli("sync")
        world.cli("sync")
    later = feed(world, "--after", last)
    assert sorted((e["data"]["id"], e["data"]["status"]) for e in later) == sorted(
        [(ids["Q3"], "done"), (ids["Q1"], "open")]
    )

    # A reply closes Q1 by rule.
    reply = make_message(
        sender="Alice Rep <alice@example.com>", to="wile@acme.com", subject="Re: Q1",
        message_id="<a1@example.com>", in_reply_to="<q1@acme.com>",
        date=datetime(2026, 3, 6, 2, tzinfo=UTC),
    )  # fmt: skip
    world.deliver("alice", reply, folder="Sent")
    with time_machine.travel(datetime(2026, 3, 6, 3, tzinfo=UTC), tick=False):
        world.cli("sync")
    closed = [e for e in feed(world, "--after", later[-1]["id"]) if e["type"] == "task.updated"]
    replied = {r["message_id"]: r["id"] for r in world.records()}["a1@example.com"]
    assert [(e["data"]["id"], e["data"]["status"]) for e in closed] == [(ids["Q1"], "done")]
    assert closed[0]["data"]["closed_by_record_id"] == replied


def test_the_task_app_pass_writes_nothing_after_taking_the_outbox_lock(
    world: World, radicale: Radicale, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task-app pass emitted each task's event as it went, then wrote more task rows
    while holding the outbox lock (PostgreSQL): a follow-up pass holding one of those rows
    and waiting for the lock deadlocked with it.  Every transaction now writes nothing but
    its events once it has the lock."""
    from sqlalchemy import Engine, event

    world.rep("alice")
    login = world.cal_rep("alice", radicale)
    world.customers(CUSTOMERS_CSV)
    world.write_config(
        mailbox={
            "alice": {"folders": ["INBOX", "Sent"]},
            "alice-cal": {"tasks_calendar": "Follow-ups"},
        }
    )
    for n in range(2):
        world.deliver(
            "alice", make_message(message_id=f"<q{n}@acme.com>", subject=f"Q{n}", date=MON_9)
        )
    with time_machine.travel(MON_9 + timedelta(days=2), tick=False):
        world.cli("sync")
    ids = sorted(tasks(world))
    assert len(ids) == 2
    folder = radicale.calendar_dir(login, "follow-ups")
    for task_id in ids:  # the rep completes both in the task app
        name = f"syncd-task-{task_id}.ics"
        todo = (folder / name).read_text()
        radicale.put(
            login, "follow-ups", name, todo.replace("STATUS:NEEDS-ACTION", "STATUS:COMPLETED")
        )

    log: list[tuple[int, str]] = []
    real_lock = outbox.lock

    def lock(conn: Any) -> None:
        log.append((id(conn.connection.dbapi_connection), "LOCK"))
        real_lock(conn)

    def statement(conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        log.append((id(conn.connection.dbapi_connection), sql.strip().split("\n")[0][:60]))

    def commit(conn: Any) -> None:
        log.append((id(conn.connection.dbapi_connection), "COMMIT"))

    monkeypatch.setattr(outbox, "lock", lock)
    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "commit", commit)
    try:
        with time_machine.travel(MON_9 + timedelta(days=2, hours=1), tick=False):
            world.cli("sync")
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Engine, "commit", commit)
    assert {t["status"] for t in tasks(world).values()} == {"done"}
    assert any(what == "LOCK" for _, what in log)
    locked: set[int] = set()
    late = []
    for conn_id, what in log:
        if what == "LOCK":
            locked.add(conn_id)
        elif what == "COMMIT":
            locked.discard(conn_id)
        elif (
            conn_id in locked
            and what.split()[0].upper() in ("UPDATE", "DELETE", "INSERT")
            # announce_held takes the lock first, then moves its own settings row: no
            # other transaction writes that row.
            and not what.upper().startswith(("INSERT INTO EVENTS", "INSERT INTO SETTINGS"))
        ):
            late.append(what)
    assert late == []


def _ics(uid: str, start: datetime, *, extra: str = "", partstat: str = "ACCEPTED") -> str:
    stamp = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start.strftime(stamp)}\r\n"
        f"DTEND:{(start + timedelta(hours=1)).strftime(stamp)}\r\nSUMMARY:Review {uid}\r\n"
        "ORGANIZER:mailto:alice@example.com\r\n"
        f"ATTENDEE;PARTSTAT={partstat}:mailto:wile@acme.com\r\n{extra}"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@pytest.mark.radicale
def test_meetings_created_moved_cancelled_declined_and_held(
    world: World, radicale: Radicale
) -> None:
    world.cal_rep("alice", radicale)
    world.write_config()
    world.customers(CUSTOMERS_CSV)
    day = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
    for uid, offset in (("a", 0), ("b", 1), ("c", 2)):
        world.put_event("alice", f"{uid}.ics", _ics(uid, day + timedelta(days=offset)))
    world.cli("sync")
    made = feed(world)
    meetings = {r["id"]: r for r in world.records("--kind", "meeting")}
    assert [e["type"] for e in made] == ["record.created"] * 3
    assert all(e["data"] == meetings[e["data"]["id"]] for e in made)
    assert {e["data"]["status"] for e in made} == {"scheduled"}
    rid = {e["data"]["ical_uid"]: e["data"]["id"] for e in made}

    moved_to = day + timedelta(hours=4)
    world.put_event("alice", "a.ics", _ics("a", moved_to, extra="SEQUENCE:1\r\n"))
    world.put_event(
        "alice", "b.ics", _ics("b", day + timedelta(days=1), extra="STATUS:CANCELLED\r\n")
    )
    world.put_event("alice", "c.ics", _ics("c", day + timedelta(days=2), partstat="DECLINED"))
    world.cli("sync")
    changed = {e["data"]["id"]: e for e in feed(world, "--after", made[-1]["id"])}
    meetings = {r["id"]: r for r in world.records("--kind", "meeting")}
    assert set(changed) == set(rid.values())
    assert all(e["type"] == "record.updated" for e in changed.values())
    assert all(e["data"] == meetings[i] for i, e in changed.items())
    assert changed[rid["a"]]["data"]["starts_at"] == moved_to.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert changed[rid["b"]]["data"]["status"] == "cancelled"
    assert changed[rid["c"]]["data"]["status"] == "declined"
    last = max(int(e["id"]) for e in changed.values())

    # Held comes with time, not with a write: the sweep announces it once, after the end.
    with time_machine.travel(moved_to + timedelta(minutes=30), tick=False):
        world.cli("sync")  # still going on
    assert feed(world, "--after", str(last)) == []
    with time_machine.travel(moved_to + timedelta(hours=1, minutes=2), tick=False):
        world.cli("sync")
        world.cli("sync")
        # (The after_meeting rule makes its task now too: a task event.)
        (held,) = feed(world, "--after", str(last), "--type", "record.updated")
        assert held["data"] == {r["id"]: r for r in world.records("--kind", "meeting")}[rid["a"]]
    assert held["type"] == "record.updated" and held["data"]["status"] == "held"
    with time_machine.travel(day + timedelta(days=3), tick=False):
        world.cli("sync")  # the cancelled and the declined ones are never "held"
    assert feed(world, "--after", held["id"], "--type", "record.updated") == []


def test_a_record_seen_in_another_place_is_announced_once(world: World) -> None:
    # The same message in a second rep's mailbox adds a source to the record the first one
    # made: one record.updated with both sources; a sync that finds nothing new is silent.
    world.rep("alice")
    world.rep("bob")
    world.customers(CUSTOMERS_CSV)
    world.write_config()
    world.deliver("alice", make_message(message_id="<both@acme.com>", to="alice@example.com"))
    world.cli("sync")
    (created,) = feed(world)
    assert created["type"] == "record.created"
    assert [s["mailbox"] for s in created["data"]["sources"]] == ["alice"]
    world.deliver("bob", make_message(message_id="<both@acme.com>", to="alice@example.com"))
    world.cli("sync")
    (updated,) = feed(world, "--after", created["id"])
    (record,) = world.records()
    assert updated["type"] == "record.updated" and updated["data"] == record
    assert sorted(s["mailbox"] for s in updated["data"]["sources"]) == ["alice", "bob"]
    world.cli("sync")
    assert feed(world, "--after", updated["id"]) == []


@pytest.mark.radicale
def test_a_meeting_seen_in_another_calendar_is_announced_once(
    world: World, radicale: Radicale
) -> None:
    world.cal_rep("alice", radicale)
    world.customers(CUSTOMERS_CSV)
    world.write_config()
    day = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
    world.put_event("alice", "m.ics", _ics("shared", day))
    world.cli("sync")
    (created,) = feed(world)
    world.cal_rep("bob", radicale)
    world.write_config()
    world.put_event("bob", "copy.ics", _ics("shared", day))
    world.cli("sync")
    (updated,) = feed(world, "--after", created["id"])
    (meeting,) = world.records("--kind", "meeting")
    assert updated["type"] == "record.updated" and updated["data"] == meeting
    assert len(updated["data"]["sources"]) == 2 == len(created["data"]["sources"]) + 1
    world.cli("sync")
    assert feed(world, "--after", updated["id"]) == []


def test_a_rolled_back_change_leaves_no_event(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.deliver("alice", make_message(message_id="<r1@acme.com>"))

    class Crash(Exception):
        pass

    real = outbox.emit_many

    def emit_then_crash(conn: Any, batch: Any) -> None:
        real(conn, batch)  # the events are written, then the transaction fails
        raise Crash

    monkeypatch.setattr(outbox, "emit_many", emit_then_crash)
    world.runner.invoke(cli, ["--config", str(world.write_config()), "sync"])
    assert world.records() == []
    assert stored(world) == []
    monkeypatch.setattr(outbox, "emit_many", real)
    world.cli("sync")
    (record,) = world.records()
    assert [e["data"] for e in feed(world)] == [record]

    # A manual link and a task made in a transaction that rolls back: no event either.
    engine = database.open_database(world.db_url)
    with engine.connect() as conn:
        transaction = conn.begin()
        reconcile.set_link(conn, record["id"], 3, linked=True)
        task_store.add_task(conn, title="t", owner="alice@example.com", customer_id=3, due_at=MON_9)
        assert len(outbox.read(conn)) == 3  # seen inside the transaction
        transaction.rollback()
    engine.dispose()
    assert len(stored(world)) == 1


def test_forget_announces_the_erasure_and_leaves_no_trace_in_earlier_events(
    world: World,
) -> None:
    zora, name = "zora.quill@quillworks.io", "Zora Quill"
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(capture='store = "full"')
    world.deliver("alice", make_message(sender=f"{name} <{zora}>", message_id="<z1@q.io>"))
    world.deliver(
        "alice",
        make_message(
            cc=f"{name} <{zora}>", message_id="<w1@acme.com>", subject=f"Seats for {name}",
            body=f"As {name} <{zora}> said\r\n",
        ),
    )  # fmt: skip
    world.cli("sync")
    ids = {r["message_id"]: r["id"] for r in world.records()}
    before = feed(world)
    assert all(zora in json.dumps(e["data"]) for e in before)
    # A receiver that refused the kept record's event echoed it in its answer.
    echo = f'422 {{"error": "unknown contact {name}"}}'
    engine = database.open_database(world.db_url)
    with engine.begin() as conn:
        conn.execute(webhook_endpoints.insert().values(name="crm", last_error=echo))
        conn.execute(
            webhook_deliveries.insert().values(
                endpoint="crm", event_id=before[-1]["id"], subject=f"record:{ids['w1@acme.com']}",
                state="failed", queued_at=MON_9, next_attempt_at=MON_9, last_error=echo,
            )
        )  # fmt: skip

    world.cli("forget", zora, "--yes")
    with engine.connect() as conn:
        errors = [*conn.scalars(select(webhook_endpoints.c.last_error))]
        errors += conn.scalars(select(webhook_deliveries.c.last_error))
    engine.dispose()
    assert len(errors) == 2 and not any(name in e for e in errors), errors
    after = feed(world, "--after", before[-1]["id"])
    kept = {r["id"]: r for r in world.records()}
    assert [(e["type"], e["data"].get("id")) for e in after] == [
        ("record.deleted", ids["z1@q.io"]),
        ("record.updated", ids["w1@acme.com"]),
        ("contact.forgotten", None),
    ]
    assert after[0]["data"] == {"id": ids["z1@q.io"], "kind": "email"}
    assert after[1]["data"] == kept[ids["w1@acme.com"]]
    assert after[2]["data"] == {"address": zora}
    every = feed(world)
    for event in every:
        if event["type"] != "contact.forgotten":
            text = json.dumps(event["data"], ensure_ascii=False).lower()
            assert zora not in text and name.lower() not in text, event
    # The created event of the erased record keeps its id and kind only.
    assert every[0]["data"] == {"id": ids["z1@q.io"], "kind": "email"} or every[1]["data"] == {
        "id": ids["z1@q.io"],
        "kind": "email",
    }
    world.cli("forget", zora, "--yes")  # idempotent: nothing more to say
    assert feed(world, "--after", after[-1]["id"]) == []


def test_events_config_is_checked() -> None:
    from syncd.config_file import parse_config
    from syncd.errors import ConfigError

    assert parse_config({"events": {"keep": "90d"}}).events.keep == "90d"
    with pytest.raises(ConfigError) as err:
        parse_config({"events": {"keep": "ninety days", "keep_forgotten": "0d"}})
    assert "events.keep" in str(err.value) and "events.keep_forgotten" in str(err.value)
