"""Logged calls, visits and notes end to end: the CLI on SQLite and PostgreSQL, with real mail
through Dovecot where the rules need it, and controlled time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine

from syncd.schema.tables import records as records_table
from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV
from tests.servers.webhook import Receiver, new_secret

pytestmark = pytest.mark.dovecot

MON_9 = datetime(2026, 3, 2, 8, tzinfo=UTC)  # Monday 09:00 in Berlin (the tests' org zone)
HEADER = (
    "kind,occurred_at,owner,customer,contact_email,direction,duration_seconds,outcome,"
    "location,subject,body,external_id\n"
)


def setup(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})


def log(world: World, *args: str, expect: int = 0) -> dict[str, Any]:
    result = world.cli("records", "add", *args, "--json", expect=expect)
    return json.loads(result.stdout) if expect == 0 else {"output": result.output}  # type: ignore[no-any-return]


def events(world: World) -> list[dict[str, Any]]:
    return json.loads(world.cli("events", "list", "--json").stdout)  # type: ignore[no-any-return]


def audit(world: World) -> list[dict[str, Any]]:
    return json.loads(world.cli("audit", "--json").stdout)  # type: ignore[no-any-return]


def tasks(world: World, *args: str) -> list[dict[str, Any]]:
    return json.loads(world.cli("tasks", "list", "--json", *args).stdout)  # type: ignore[no-any-return]


def record_count(world: World) -> int:
    engine = sa.create_engine(world.db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(records_table)) or 0)
    finally:
        engine.dispose()


def test_a_logged_call_links_as_mail_does_and_is_announced_edited_and_deleted(
    world: World,
) -> None:
    setup(world)
    call = log(
        world, "--kind", "call", "--owner", "Alice@Example.com", "--contact", "wile@acme.com",
        "--at", "2026-03-02T10:00:00+01:00", "--duration", "15m", "--direction", "in",
        "--outcome", "connected", "--subject", "Price for 40 seats", "--body", "Wants 10 % off",
        "--external-id", "pbx-0001",
    )  # fmt: skip
    assert {k: call[k] for k in ("kind", "direction", "subject", "body", "occurred_at")} == {
        "kind": "call", "direction": "inbound", "subject": "Price for 40 seats",
        "body": "Wants 10 % off", "occurred_at": "2026-03-02T09:00:00Z",
    }  # fmt: skip
    assert {k: call[k] for k in ("owner", "origin", "external_id", "duration_seconds",
                                 "outcome", "location")} == {
        "owner": "alice@example.com", "origin": "cli", "external_id": "pbx-0001",
        "duration_seconds": 900, "outcome": "connected", "location": None,
    }  # fmt: skip
    # The contact's customer is linked as for mail; the rep is our side.
    assert call["customers"] == [{"id": call["customers"][0]["id"], "name": "Acme Corp",
                                  "link": "contact"}]  # fmt: skip
    assert [(p["address"], p["role"], p["name"]) for p in call["participants"]] == [
        ("alice@example.com", "owner", ""), ("wile@acme.com", "contact", "Wile Coyote"),
    ]  # fmt: skip
    (listed,) = world.records("--kind", "call")
    assert listed == call
    assert world.records("--customer", "Acme Corp") == [call]
    explained = json.loads(world.cli("records", "explain", str(call["id"]), "--json").stdout)
    assert [(p["address"], p["reason"]) for p in explained["participants"]] == [
        ("alice@example.com", "internal"), ("wile@acme.com", "contact"),
    ]  # fmt: skip
    # A visit linked by hand; captured kinds keep the new keys as null.
    visit = log(world, "--kind", "visit", "--owner", "alice@example.com", "--customer", "Globex",
                "--location", "Springfield plant", "--duration", "2h", "--subject", "Plant tour")  # fmt: skip
    assert visit["customers"][0]["link"] == "manual" and visit["location"] == "Springfield plant"
    assert (visit["duration_seconds"], visit["outcome"], visit["external_id"]) == (7200, None, None)
    (created, created_visit) = [e for e in events(world) if e["type"] == "record.created"]
    assert created["data"] == call and created_visit["data"] == visit

    edited = json.loads(
        world.cli("records", "edit", str(call["id"]), "--outcome", "voicemail",
                  "--contact", "road.runner@acme.com", "--json").stdout
    )  # fmt: skip
    assert edited["outcome"] == "voicemail" and edited["duration_seconds"] == 900
    assert [p["address"] for p in edited["participants"]] == [
        "alice@example.com", "road.runner@acme.com",
    ]  # fmt: skip
    same = world.cli("records", "edit", str(call["id"]), "--outcome", "voicemail")
    assert f"record {call['id']}: unchanged" in same.stdout
    updates = [e for e in events(world) if e["type"] == "record.updated"]
    assert [e["data"] for e in updates] == [edited]  # an edit that changes nothing says nothing
    # A kind that takes no outcome drops it; giving it one is an error.
    note = json.loads(world.cli("records", "edit", str(call["id"]), "--kind", "note",
                                "--json").stdout)  # fmt: skip
    assert (note["kind"], note["direction"], note["outcome"], note["duration_seconds"]) == (
        "note", "internal", None, None,
    )  # fmt: skip
    bad = world.cli("records", "edit", str(call["id"]), "--outcome", "busy", expect=2)
    assert "a note has no outcome" in bad.output and "Traceback" not in bad.output

    world.cli("records", "delete", str(visit["id"]), expect=1)  # asks; no answer: aborted
    world.cli("records", "delete", str(visit["id"]), "--yes")
    assert [r["id"] for r in world.records()] == [call["id"]]
    deleted = [e for e in events(world) if e["type"] == "record.deleted"]
    assert [e["data"] for e in deleted] == [{"id": visit["id"], "kind": "visit"}]
    actions = [(a["action"], a["target"]) for a in audit(world)]
    assert ("log-record", f"record {call['id']}") in actions
    assert ("edit-record", f"record {call['id']}") in actions
    assert ("delete-record", f"record {visit['id']}") in actions
    timeline = world.cli("timeline", "Acme Corp").stdout
    assert "note" in timeline and "Road Runner" in timeline and "Wants 10 % off" in timeline


def test_a_captured_email_belongs_to_its_mailbox(world: World) -> None:
    setup(world)
    world.deliver("alice", make_message(message_id="<ask@acme.com>", date=MON_9))
    world.cli("sync")
    (email,) = world.records()
    for args in (["edit", str(email["id"]), "--subject", "mine now"],
                 ["delete", str(email["id"]), "--yes"]):  # fmt: skip
        refused = world.cli("records", *args, expect=2)
        assert f"record {email['id']} is a captured email: it belongs to its mailbox" in (
            refused.output
        )
        assert "Traceback" not in refused.output
    assert world.records() == [email]
    missing = world.cli("records", "delete", "999", "--yes", expect=2)
    assert "no record 999" in missing.output


def test_bad_values_are_refused_whole_and_every_value_fits_the_schema(world: World) -> None:
    setup(world)
    base = ["--owner", "alice@example.com", "--subject", "Call"]
    cases = {
        "give a customer or a contact": ["--kind", "call", *base],
        "a visit has no outcome": ["--kind", "visit", "--customer", "Globex", "--outcome",
                                   "busy", *base],
        "a call has no location": ["--kind", "call", "--customer", "Globex", "--location", "x",
                                   *base],
        "is not a length of time": ["--kind", "call", "--customer", "Globex", "--duration",
                                    "forever", *base],
        "longer than 7 days": ["--kind", "call", "--customer", "Globex", "--duration", "8d",
                               *base],
        "the subject is longer than 2000": ["--kind", "note", "--customer", "Globex", "--owner",
                                            "alice@example.com", "--subject", "x" * 2001],
        "the external id is longer than 300": ["--kind", "note", "--customer", "Globex",
                                               "--external-id", "e" * 301, *base],
        "the location is longer than 500": ["--kind", "visit", "--customer", "Globex",
                                            "--location", "l" * 501, *base],
        "the body is longer than 65536": ["--kind", "note", "--customer", "Globex", "--body",
                                          "b" * 65537, *base],
        "the subject holds control characters": ["--kind", "note", "--customer", "Globex",
                                                 "--owner", "alice@example.com", "--subject",
                                                 "a\x1b[2Jb"],
        "owner 'alice' is not an email address": ["--kind", "note", "--customer", "Globex",
                                                  "--owner", "alice", "--subject", "x"],
        "one of our own addresses": ["--kind", "call", "--contact", "bob@example.com", *base],
        "no customer 'Nope Inc'": ["--kind", "call", "--customer", "Nope Inc", *base],
        "not a date": ["--kind", "call", "--customer", "Globex", "--at", "someday", *base],
    }  # fmt: skip
    for expected, args in cases.items():
        refused = world.cli("records", "add", *args, expect=2)
        assert expected in refused.output, (expected, refused.output)
        assert "Traceback" not in refused.output
    assert world.records() == []
    # The longest values that fit are stored whole, on both databases.
    fits = log(world, "--kind", "visit", "--customer", "Globex", "--owner", "alice@example.com",
               "--subject", "s" * 2000, "--body", "b" * 65536, "--location", "ł" * 500,
               "--external-id", "é" * 300, "--duration", "7d")  # fmt: skip
    assert (len(fits["subject"]), len(fits["body"]), len(fits["location"])) == (2000, 65536, 500)
    assert fits["external_id"] == "é" * 300 and fits["duration_seconds"] == 7 * 86400
    taken = world.cli("records", "add", "--kind", "note", "--customer", "Globex",
                      "--external-id", "é" * 300, *base, expect=2)  # fmt: skip
    assert f"record {fits['id']} already has the external id" in taken.output
    # A forgotten person is never stored again, not even by hand.
    world.cli("forget", "hank@globex.co.uk", "--yes")
    forgotten = world.cli("records", "add", "--kind", "call", "--contact", "Hank@Globex.co.uk",
                          *base, expect=2)  # fmt: skip
    assert "was forgotten" in forgotten.output


def test_import_is_idempotent_and_a_file_with_bad_rows_imports_nothing(world: World) -> None:
    setup(world)
    good = world.tmp / "calls.csv"
    good.write_text(
        HEADER + "call,2026-03-02T09:00:00Z,alice@example.com,,wile@acme.com,out,300,connected,,"
        'Called about price,"Line one\nline two",pbx-1\n'
        + "call,2026-03-02T10:00:00Z,alice@example.com,Acme Corp,,in,5m,no_answer,,Missed,,\n"
        + "visit,2026-03-03,bob@example.com,Globex,hank@globex.co.uk;Road.Runner@acme.com,,2h,,"
        "Springfield,Plant tour,,crm-7\n"
        + "note,2026-03-04T12:00:00+01:00,alice@example.com,Initech,,,,,,Budget freeze,,\n"
    )
    dry = json.loads(world.cli("records", "import", str(good), "--dry-run", "--json").stdout)
    assert dry == {
        "dry_run": True, "rows": 4, "added": 4, "updated": 0, "unchanged": 0, "skipped": 0,
    }  # fmt: skip
    assert world.records() == []
    first = json.loads(world.cli("records", "import", str(good), "--json").stdout)
    assert first == {
        "dry_run": False, "rows": 4, "added": 4, "updated": 0, "unchanged": 0, "skipped": 0,
    }  # fmt: skip
    again = json.loads(world.cli("records", "import", str(good), "--json").stdout)
    assert again == {
        "dry_run": False, "rows": 4, "added": 0, "updated": 0, "unchanged": 4, "skipped": 0,
    }  # fmt: skip
    shown = {r["subject"]: r for r in world.records()}
    assert shown["Called about price"]["external_id"] == "pbx-1"
    assert shown["Called about price"]["body"] == "Line one\nline two"
    assert shown["Called about price"]["origin"] == "import"
    assert shown["Missed"]["external_id"] is None and shown["Missed"]["duration_seconds"] == 300
    tour = shown["Plant tour"]
    assert sorted(c["name"] for c in tour["customers"]) == ["Acme Corp", "Globex"]
    assert [p["address"] for p in tour["participants"]][1:] == [
        "hank@globex.co.uk", "road.runner@acme.com",
    ]  # fmt: skip
    assert shown["Budget freeze"]["occurred_at"] == "2026-03-04T11:00:00Z"
    created = [e for e in events(world) if e["type"] == "record.created"]
    assert len(created) == 4
    # The phone system corrected a call: the row with its id updates that record.
    good.write_text(good.read_text().replace("300,connected", "360,connected"))
    fixed = json.loads(world.cli("records", "import", str(good), "--json").stdout)
    assert (fixed["added"], fixed["updated"], fixed["unchanged"]) == (0, 1, 3)
    assert {r["subject"]: r["duration_seconds"] for r in world.records()}[
        "Called about price"
    ] == 360

    before = record_count(world)
    bad = world.tmp / "bad.csv"
    bad.write_text(
        HEADER
        + "call,2026-03-05T09:00:00Z,alice@example.com,Globex,,out,60,connected,,Fine row,,new-1\n"
        + "call,2026-03-05T09:00:00Z,alice@example.com,,wile@acme.com,out,60,maybe,,Bad outcome,,\n"
        + "meeting,yesterday,alice,,,,,,,,,\n"
        + "visit,2026-03-05,alice@example.com,Nobody Inc,,,,,,Visit,,\n"
        + 'note,2026-03-05,alice@example.com,Globex,,,,,,"unclosed\n'
    )
    refused = world.cli("records", "import", str(bad), expect=2)
    assert "nothing imported, 4 bad row(s)" in refused.output, refused.output
    for line, reason in [
        (3, "outcome 'maybe' is not one of"),
        (4, "occurred_at 'yesterday' is not an ISO 8601 time; kind 'meeting' is not one of"),
        (5, "no customer 'Nobody Inc'"),
        (6, "unexpected end of data"),
    ]:
        assert f"line {line}: {reason}" in refused.output, (line, refused.output)
    assert record_count(world) == before
    header = world.tmp / "header.csv"
    header.write_text("kind,when\ncall,2026-03-05\n")
    wrong = world.cli("records", "import", str(header), expect=2)
    assert "the first line must be: kind,occurred_at" in wrong.output


def test_a_logged_call_settles_no_response_and_a_visit_settles_gone_quiet(world: World) -> None:
    setup(world)
    pitch = make_message(
        sender="Alice Rep <alice@example.com>", to="Hank Scorpio <hank@globex.co.uk>",
        subject="Our proposal", message_id="<pitch@example.com>", date=MON_9,
    )  # fmt: skip
    world.deliver("alice", pitch, folder="Sent")
    with time_machine.travel(MON_9 + timedelta(days=3, hours=1), tick=False):  # Thursday 10:00
        world.cli("sync")
        (task,) = tasks(world)
    assert (task["rule"], task["type"], task["priority"]) == ("no_response", "call", "normal")
    assert tasks(world, "--type", "call") == [task] and tasks(world, "--type", "email") == []
    # A note about Globex is no answer; a call with another customer is none either.
    with time_machine.travel(MON_9 + timedelta(days=3, hours=2), tick=False):
        log(world, "--kind", "note", "--owner", "alice@example.com", "--customer", "Globex",
            "--subject", "Hank is on holiday")  # fmt: skip
        log(world, "--kind", "call", "--owner", "alice@example.com", "--contact",
            "wile@acme.com", "--subject", "Acme call")  # fmt: skip
        world.cli("sync")
        assert tasks(world)[0]["status"] == "open"
        call = log(world, "--kind", "call", "--owner", "alice@example.com", "--direction", "in",
                   "--contact", "hank@globex.co.uk", "--subject", "Hank called back")  # fmt: skip
        world.cli("sync")
    (task,) = tasks(world)
    assert (task["status"], task["closed_by_record_id"]) == ("done", call["id"])

    # Initech: three emails in February, then silence; a note changes nothing, a visit does.
    for n, day in enumerate([2, 9, 16]):
        world.deliver("alice", make_message(sender="Peter <peter@initech.io>",
                                            message_id=f"<f{n}@initech.io>", subject=f"Q{n}",
                                            date=datetime(2026, 2, day, 9, tzinfo=UTC)))  # fmt: skip
    quiet_at = datetime(2026, 3, 19, 9, tzinfo=UTC)
    with time_machine.travel(quiet_at, tick=False):
        world.cli("sync")
        (quiet,) = [t for t in tasks(world) if t["rule"] == "gone_quiet"]
        assert (quiet["customer"], quiet["type"], quiet["status"]) == ("Initech", "call", "open")
        log(world, "--kind", "note", "--owner", "alice@example.com", "--customer", "Initech",
            "--subject", "Still quiet")  # fmt: skip
        world.cli("sync")
        assert [t["status"] for t in tasks(world) if t["rule"] == "gone_quiet"] == ["open"]
        visit = log(world, "--kind", "visit", "--owner", "alice@example.com", "--customer",
                    "Initech", "--subject", "Dropped by")  # fmt: skip
        world.cli("sync")
    (quiet,) = [t for t in tasks(world) if t["rule"] == "gone_quiet"]
    assert (quiet["status"], quiet["closed_by_record_id"]) == ("done", visit["id"])
    # Quiet again after the visit: its rep (the visit's owner) is asked, about the visit.
    with time_machine.travel(quiet_at + timedelta(days=32), tick=False):
        world.cli("sync")
    again = [t for t in tasks(world) if t["rule"] == "gone_quiet" and t["status"] == "open"]
    assert [(t["owner"], t["record_id"]) for t in again] == [("alice@example.com", visit["id"])]


def test_customers_list_and_the_weekly_report_count_calls_and_visits(world: World) -> None:
    setup(world)
    now = MON_9 + timedelta(days=2)
    with time_machine.travel(now, tick=False):
        for kind, days in (("call", 1), ("call", 2), ("visit", 3)):
            log(world, "--kind", kind, "--owner", "alice@example.com", "--customer", "Globex",
                "--at", (MON_9 - timedelta(days=days)).isoformat(), "--subject", kind)  # fmt: skip
        log(world, "--kind", "call", "--owner", "alice@example.com", "--customer", "Globex",
            "--at", (now - timedelta(days=200)).isoformat(), "--subject", "long ago")  # fmt: skip
        log(world, "--kind", "note", "--owner", "alice@example.com", "--customer", "Globex",
            "--subject", "a note is no contact")  # fmt: skip
        listed = {c["name"]: c for c in json.loads(
            world.cli("customers", "list", "--json").stdout)}  # fmt: skip
        globex = listed["Globex"]
        assert (globex["calls"], globex["visits"], globex["emails"]) == (2, 1, 0)
        assert globex["last_contact_at"] == "2026-03-01T08:00:00Z"  # the latest call
        assert globex["last_outbound_at"] == "2026-03-01T08:00:00Z"
        assert (listed["Acme Corp"]["calls"], listed["Acme Corp"]["visits"]) == (0, 0)
        by_calls = json.loads(world.cli("customers", "list", "--sort", "calls", "--json").stdout)
        assert by_calls[0]["name"] == "Globex"
        weeks = json.loads(
            world.cli("report", "activity", "Globex", "--weeks", "2", "--json").stdout
        )
        assert weeks == [
            {"week": "2026-02-23", "emails_in": 0, "emails_out": 0, "meetings": 0, "calls": 2},
            {"week": "2026-03-02", "emails_in": 0, "emails_out": 0, "meetings": 0, "calls": 0},
        ]
        assert "calls" in world.cli("report", "activity", "Globex", "--weeks", "2").stdout


def test_tasks_have_a_type_and_priority_and_done_can_log_the_call(world: World) -> None:
    setup(world)
    world.cli("tasks", "add", "--customer", "Globex", "--owner", "alice@example.com", "--title",
              "Call Hank", "--due", "2026-03-03", "--type", "call", "--priority", "high")  # fmt: skip
    world.cli("tasks", "add", "--customer", "Globex", "--owner", "alice@example.com", "--title",
              "Paperwork", "--due", "2026-03-04")  # fmt: skip
    call_task, todo = tasks(world)
    assert (call_task["type"], call_task["priority"]) == ("call", "high")
    assert (todo["type"], todo["priority"]) == ("todo", "normal")
    assert tasks(world, "--type", "call") == [call_task]
    assert "call!" in world.cli("tasks", "list").stdout  # high priority is marked
    refused = world.cli("tasks", "done", str(todo["id"]), "--log", "Done", expect=2)
    assert f"task {todo['id']} is a todo task: --log logs a call or visit" in refused.output
    bad = world.cli("tasks", "done", str(call_task["id"]), "--log", "x", "--duration", "ages",
                    expect=2)  # fmt: skip
    assert "is not a length of time" in bad.output
    assert tasks(world, "--type", "call")[0]["status"] == "open"
    done = world.cli("tasks", "done", str(call_task["id"]), "--log", "Agreed on the price",
                     "--duration", "10m", "--outcome", "connected")  # fmt: skip
    (logged,) = world.records("--kind", "call")
    assert f"logged as record {logged['id']}" in done.stdout
    assert (logged["subject"], logged["owner"], logged["duration_seconds"], logged["outcome"],
            logged["origin"]) == ("Agreed on the price", "alice@example.com", 600, "connected",
                                  "task")  # fmt: skip
    assert [c["name"] for c in logged["customers"]] == ["Globex"]
    (closed,) = tasks(world, "--type", "call")
    assert (closed["status"], closed["closed_by_record_id"]) == ("done", logged["id"])
    task_events = [e["data"] for e in events(world) if e["type"] == "task.updated"]
    assert task_events[-1]["status"] == "done" and task_events[-1]["type"] == "call"


def test_a_rule_task_logged_as_done_names_the_contact_of_its_record(world: World) -> None:
    setup(world)
    pitch = make_message(
        sender="Alice Rep <alice@example.com>", to="Hank Scorpio <hank@globex.co.uk>",
        subject="Our proposal", message_id="<pitch@example.com>", date=MON_9,
    )  # fmt: skip
    world.deliver("alice", pitch, folder="Sent")
    with time_machine.travel(MON_9 + timedelta(days=3, hours=1), tick=False):
        world.cli("sync")
        (task,) = tasks(world)
        world.cli("tasks", "done", str(task["id"]), "--log", "Hank says yes")
    (logged,) = world.records("--kind", "call")
    assert [(p["address"], p["role"]) for p in logged["participants"]] == [
        ("alice@example.com", "owner"), ("hank@globex.co.uk", "contact"),
    ]  # fmt: skip


def test_forget_erases_the_calls_only_they_took_part_in_and_redacts_the_rest(
    world: World,
) -> None:
    setup(world)
    alone = log(world, "--kind", "call", "--owner", "alice@example.com", "--contact",
                "wile@acme.com", "--subject", "Wile about the order")  # fmt: skip
    shared = log(world, "--kind", "visit", "--owner", "alice@example.com", "--contact",
                 "wile@acme.com", "--contact", "road.runner@acme.com", "--location",
                 "Wile Coyote's office", "--subject", "Visit",
                 "--body", "Met wile@acme.com and Road Runner")  # fmt: skip
    world.cli("forget", "wile@acme.com", "--yes")
    (kept,) = world.records()
    assert kept["id"] == shared["id"]
    assert [p["address"] for p in kept["participants"]] == [
        "alice@example.com", "road.runner@acme.com",
    ]  # fmt: skip
    assert "wile@acme.com" not in json.dumps(kept) and "Wile Coyote" not in json.dumps(kept)
    deleted = [e["data"] for e in events(world) if e["type"] == "record.deleted"]
    assert deleted == [{"id": alone["id"], "kind": "call"}]
    assert "wile@acme.com" not in json.dumps(
        [e for e in events(world) if e["type"] != "contact.forgotten"]
    )


def test_calls_reach_a_webhook_receiver_created_updated_deleted(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    secret = new_secret()
    (world.tmp / "crm.secret").write_text(secret + "\n")
    receiver = Receiver(secret).start()
    try:
        world.write_config(
            extra=f'[[webhook]]\nname = "crm"\nurl = "{receiver.url}"\n'
            f'secret_file = "{world.tmp / "crm.secret"}"\ntimeout = 2\n'
        )
        call = log(world, "--kind", "call", "--owner", "alice@example.com", "--contact",
                   "wile@acme.com", "--subject", "Price", "--external-id", "pbx-9")  # fmt: skip
        world.cli("records", "edit", str(call["id"]), "--outcome", "busy")
        world.cli("records", "delete", str(call["id"]), "--yes")
        world.cli("sync")  # delivers what is pending before it exits
        got = sorted(receiver.accepted(), key=lambda a: int(a.webhook_id))
        assert receiver.bad_signatures == 0
        assert [a.event["type"] for a in got] == [
            "record.created", "record.updated", "record.deleted",
        ]  # fmt: skip
        assert got[0].event["data"] == call
        assert got[1].event["data"]["outcome"] == "busy"
        assert got[2].event["data"] == {"id": call["id"], "kind": "call"}
    finally:
        receiver.stop()


def test_an_import_leaves_a_forgotten_person_out(world: World) -> None:
    setup(world)
    world.cli("forget", "wile@acme.com", "--yes")
    calls = world.tmp / "calls.csv"
    calls.write_text(
        HEADER
        + "call,2026-03-02T09:00:00Z,alice@example.com,,Wile@Acme.com,out,60,,,Only Wile,,p-1\n"
        + "call,2026-03-02T10:00:00Z,alice@example.com,,wile@acme.com;road.runner@acme.com,"
        "out,60,,,Wile and Road Runner,,p-2\n"
    )
    for _ in range(2):  # and again: the same, nothing changes
        done = json.loads(world.cli("records", "import", str(calls), "--json").stdout)
        assert (done["skipped"], done["added"] + done["unchanged"]) == (1, 1)
    (kept,) = world.records()
    assert kept["subject"] == "Wile and Road Runner"
    assert [p["address"] for p in kept["participants"]] == [
        "alice@example.com", "road.runner@acme.com",
    ]  # fmt: skip
