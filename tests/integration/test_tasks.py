"""Follow-up tasks end to end: real Dovecot and Radicale, SQLite and PostgreSQL, controlled time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from tests.conftest import World
from tests.mail import make_message
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot

MON_9 = datetime(2026, 3, 2, 8, tzinfo=UTC)  # Monday 09:00 in Berlin (the tests' org zone)


def tasks(world: World, *args: str) -> list[dict[str, Any]]:
    return json.loads(world.cli("tasks", "list", "--json", *args).stdout)  # type: ignore[no-any-return]


def setup_alice(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})


def test_an_unanswered_customer_email_becomes_a_task_and_the_reply_closes_it(world: World) -> None:
    setup_alice(world)
    world.deliver("alice", make_message(message_id="<ask@acme.com>", subject="Quote?", date=MON_9))
    with time_machine.travel(MON_9 + timedelta(hours=20), tick=False):  # Monday night: not yet due
        world.cli("sync")
        assert tasks(world) == []
    with time_machine.travel(MON_9 + timedelta(days=1, hours=2), tick=False):  # Tuesday 11:00
        for _ in range(3):  # after every sync, however often: one task
            world.cli("sync")
        (task,) = tasks(world)
    assert task["title"] == "Reply to Wile Coyote: Quote?"
    assert (task["owner"], task["customer"], task["status"], task["rule"]) == (
        "alice@example.com", "Acme Corp", "open", "unanswered_inbound",
    )  # fmt: skip
    assert task["due_at"] == (MON_9 + timedelta(days=1)).isoformat()
    asked = {r["message_id"]: r["id"] for r in world.records()}["ask@acme.com"]
    assert task["record_id"] == asked and task["closed_by_record_id"] is None

    reply = make_message(
        sender="Alice Rep <alice@example.com>", to="Wile Coyote <wile@acme.com>",
        subject="Re: Quote?", message_id="<reply@example.com>", in_reply_to="<ask@acme.com>",
        references="<ask@acme.com>", date=MON_9 + timedelta(days=1, hours=3),
    )  # fmt: skip
    world.deliver("alice", reply, folder="Sent")
    with time_machine.travel(MON_9 + timedelta(days=1, hours=4), tick=False):
        world.cli("sync")
    (task,) = tasks(world)
    replied = {r["message_id"]: r["id"] for r in world.records()}["reply@example.com"]
    assert task["status"] == "done" and task["closed_by_record_id"] == replied


def test_people_decide_dismissed_stays_dismissed_and_snoozed_comes_back(world: World) -> None:
    setup_alice(world)
    world.deliver("alice", make_message(message_id="<a@acme.com>", subject="One", date=MON_9))
    world.deliver("alice", make_message(message_id="<b@acme.com>", subject="Two", date=MON_9))
    with time_machine.travel(MON_9 + timedelta(days=2), tick=False):
        world.cli("sync")
        one, two = sorted(tasks(world), key=lambda t: t["title"])
        world.cli("tasks", "dismiss", str(one["id"]))
        world.cli("tasks", "snooze", str(two["id"]), "--until", "2026-03-06")
        world.cli("sync")
        assert {t["title"]: t["status"] for t in tasks(world)} == {
            "Reply to Wile Coyote: One": "dismissed",
            "Reply to Wile Coyote: Two": "snoozed",
        }
        assert tasks(world, "--status", "open") == []
    with time_machine.travel(datetime(2026, 3, 6, 1, tzinfo=UTC), tick=False):
        world.cli("sync")
        assert {t["title"]: t["status"] for t in tasks(world)} == {
            "Reply to Wile Coyote: One": "dismissed",
            "Reply to Wile Coyote: Two": "open",
        }


def test_the_lookback_keeps_a_backfill_from_burying_reps_in_stale_tasks(world: World) -> None:
    setup_alice(world)
    for n in range(20):
        old = MON_9 - timedelta(days=30 + n)
        world.deliver("alice", make_message(message_id=f"<old{n}@acme.com>", date=old))
    world.deliver("alice", make_message(message_id="<recent@acme.com>", date=MON_9))
    with time_machine.travel(MON_9 + timedelta(days=3), tick=False):
        world.cli("sync")
        assert len(world.records()) == 21
        assert [t["record_id"] for t in tasks(world)] == [
            {r["message_id"]: r["id"] for r in world.records()}["recent@acme.com"]
        ]


def test_tasks_by_hand_filters_and_clean_errors(world: World) -> None:
    setup_alice(world)
    world.cli("tasks", "add", "--customer", "Globex", "--owner", "Bob@Example.com",
              "--title", "Send the contract", "--due", "2026-04-01")  # fmt: skip
    world.cli("tasks", "add", "--customer", "Acme Corp", "--owner", "alice@example.com",
              "--title", "Call back", "--due", "2026-03-01")  # fmt: skip
    assert [t["title"] for t in tasks(world, "--owner", "bob@example.com")] == ["Send the contract"]
    assert [t["title"] for t in tasks(world, "--customer", "Acme Corp")] == ["Call back"]
    assert [t["title"] for t in tasks(world, "--due-before", "2026-03-15")] == ["Call back"]
    assert tasks(world, "--status", "open")[0]["rule"] is None
    table = world.cli("tasks", "list").stdout
    assert "contract" in table and "Globex" in table  # the title wraps in a narrow table
    missing = world.cli("tasks", "done", "999", expect=2)
    assert "no task 999" in missing.output and "Traceback" not in missing.output
    bad = world.cli("tasks", "add", "--customer", "Nope Inc", "--owner", "a@example.com",
                    "--title", "x", "--due", "2026-03-01", expect=2)  # fmt: skip
    assert "Traceback" not in bad.output
    bad_date = world.cli("tasks", "snooze", "1", "--until", "someday", expect=2)
    assert "not a date" in bad_date.output


@pytest.mark.radicale
def test_a_held_meeting_asks_for_a_follow_up_until_the_attendees_get_an_email(
    world: World, radicale: Radicale
) -> None:
    world.rep("alice")
    world.cal_rep("alice", radicale)
    world.customers(CUSTOMERS_CSV)
    world.write_config(
        mailbox={"alice": {"folders": ["INBOX", "Sent"]}},
        capture="past_days = 3650\nfuture_days = 3650",
    )
    world.put_event(
        "alice",
        "review.ics",
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:review-1\r\n"
        "DTSTAMP:20260101T000000Z\r\nDTSTART:20260302T130000Z\r\nDTEND:20260302T140000Z\r\n"
        "SUMMARY:Quarterly review\r\nORGANIZER:mailto:alice@example.com\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:wile@acme.com\r\n"
        "ATTENDEE;PARTSTAT=DECLINED:mailto:hank@globex.co.uk\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    with time_machine.travel(datetime(2026, 3, 2, 15, tzinfo=UTC), tick=False):
        world.cli("sync")
        (task,) = tasks(world)
    assert (task["rule"], task["title"], task["owner"]) == (
        "after_meeting", "Follow up on Quarterly review", "alice@example.com",
    )  # fmt: skip
    assert task["due_at"] == "2026-03-03T14:00:00+00:00"  # one business day after it ended
    summary = make_message(
        sender="Alice Rep <alice@example.com>", to="Wile Coyote <wile@acme.com>",
        subject="Notes from our review", message_id="<notes@example.com>",
        date=datetime(2026, 3, 2, 16, tzinfo=UTC),
    )  # fmt: skip
    world.deliver("alice", summary, folder="Sent")
    with time_machine.travel(datetime(2026, 3, 2, 17, tzinfo=UTC), tick=False):
        world.cli("sync")
    (task,) = tasks(world)
    notes = {r["message_id"]: r["id"] for r in world.records()}["notes@example.com"]
    assert task["status"] == "done" and task["closed_by_record_id"] == notes


@pytest.mark.radicale
def test_tasks_reach_the_reps_task_list_and_come_back_done_or_dismissed(
    world: World, radicale: Radicale
) -> None:
    world.rep("alice")
    login = world.cal_rep("alice", radicale)
    world.customers(CUSTOMERS_CSV)
    world.write_config(
        mailbox={
            "alice": {"folders": ["INBOX", "Sent"]},
            "alice-cal": {"tasks_calendar": "Follow-ups"},
        }
    )
    for n in range(3):
        world.deliver(
            "alice", make_message(message_id=f"<q{n}@acme.com>", subject=f"Q{n}", date=MON_9)
        )
    with time_machine.travel(MON_9 + timedelta(days=2), tick=False):
        world.cli("sync")
    ids = {t["title"][-2:]: t["id"] for t in tasks(world)}
    folder = radicale.calendar_dir(login, "follow-ups")
    written = {p.name: p.read_text() for p in folder.glob("syncd-task-*.ics")}
    assert set(written) == {f"syncd-task-{i}.ics" for i in ids.values()}
    first = written[f"syncd-task-{ids['Q0']}.ics"]
    assert "BEGIN:VTODO" in first and "STATUS:NEEDS-ACTION" in first
    assert "SUMMARY:Reply to Wile Coyote: Q0" in first and "DUE:20260303T080000Z" in first

    # In the rep's app: Q0 completed, Q1 deleted; Q2 answered by mail.
    radicale.put(
        login, "follow-ups", f"syncd-task-{ids['Q0']}.ics",
        first.replace("STATUS:NEEDS-ACTION", "STATUS:COMPLETED"),
    )  # fmt: skip
    radicale.delete(login, "follow-ups", f"syncd-task-{ids['Q1']}.ics")
    answer = make_message(
        sender="Alice Rep <alice@example.com>", to="wile@acme.com", subject="Re: Q2",
        message_id="<a2@example.com>", in_reply_to="<q2@acme.com>", date=MON_9 + timedelta(days=2),
    )  # fmt: skip
    world.deliver("alice", answer, folder="Sent")
    with time_machine.travel(MON_9 + timedelta(days=2, hours=1), tick=False):
        world.cli("sync")
        world.cli("sync")  # a second pass changes nothing more
    assert {t["title"][-2:]: t["status"] for t in tasks(world)} == {
        "Q0": "done",
        "Q1": "dismissed",
        "Q2": "done",
    }
    # Closed by the rule: the rep's list shows it completed too; the deleted one stays deleted.
    assert "STATUS:COMPLETED" in (folder / f"syncd-task-{ids['Q2']}.ics").read_text()
    assert not (folder / f"syncd-task-{ids['Q1']}.ics").exists()


def test_our_unanswered_email_asks_the_sender_to_follow_up_until_the_customer_answers(
    world: World,
) -> None:
    setup_alice(world)
    pitch = make_message(
        sender="Alice Rep <alice@example.com>", to="Hank Scorpio <hank@globex.co.uk>",
        subject="Our proposal", message_id="<pitch@example.com>", date=MON_9,
    )  # fmt: skip
    world.deliver("alice", pitch, folder="Sent")
    with time_machine.travel(MON_9 + timedelta(days=2), tick=False):  # Wednesday: not yet
        world.cli("sync")
        assert tasks(world) == []
    with time_machine.travel(MON_9 + timedelta(days=3, hours=1), tick=False):  # Thursday 10:00
        world.cli("sync")
        (task,) = tasks(world)
    assert (task["rule"], task["owner"], task["customer"], task["title"]) == (
        "no_response", "alice@example.com", "Globex", "Follow up with Hank Scorpio: Our proposal",
    )  # fmt: skip
    answer = make_message(
        sender="Hank Scorpio <hank@globex.co.uk>", to="Alice Rep <alice@example.com>",
        subject="Re: Our proposal", message_id="<yes@globex.co.uk>",
        in_reply_to="<pitch@example.com>", date=MON_9 + timedelta(days=3, hours=2),
    )  # fmt: skip
    world.deliver("alice", answer)
    with time_machine.travel(MON_9 + timedelta(days=3, hours=3), tick=False):
        world.cli("sync")
    statuses = {t["rule"]: t["status"] for t in tasks(world)}
    assert statuses == {"no_response": "done"}  # and Hank's answer is not due for a reply yet


def test_no_new_task_for_a_customer_the_crm_dropped(world: World) -> None:
    # Mail captured while Acme was a customer, unanswered; then the CRM's export drops Acme
    # (a mirror archives it).  The rule must not create a task for a customer that is gone.
    setup_alice(world)
    world.deliver("alice", make_message(message_id="<ask@acme.com>", subject="Quote?", date=MON_9))
    with time_machine.travel(MON_9 + timedelta(hours=1), tick=False):
        world.cli("sync")
    without_acme = "\n".join(
        line for line in CUSTOMERS_CSV.splitlines() if not line.startswith("Acme")
    )
    path = world.tmp / "crm.csv"
    path.write_text(without_acme + "\n")
    world.cli("customers", "import", str(path), "--mirror")
    with time_machine.travel(MON_9 + timedelta(days=1, hours=2), tick=False):  # due by now
        world.cli("sync")
        assert tasks(world) == []


@pytest.mark.radicale
def test_a_meeting_with_a_dropped_and_a_kept_customer_asks_a_follow_up_for_the_kept_one(
    world: World, radicale: Radicale
) -> None:
    world.rep("alice")
    world.cal_rep("alice", radicale)
    world.customers(CUSTOMERS_CSV)
    world.write_config(
        mailbox={"alice": {"folders": ["INBOX", "Sent"]}},
        capture="past_days = 3650\nfuture_days = 3650",
    )
    world.put_event(
        "alice",
        "review.ics",
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:review-2\r\n"
        "DTSTAMP:20260101T000000Z\r\nDTSTART:20260302T130000Z\r\nDTEND:20260302T140000Z\r\n"
        "SUMMARY:Joint review\r\nORGANIZER:mailto:alice@example.com\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:wile@acme.com\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:hank@globex.co.uk\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    with time_machine.travel(datetime(2026, 3, 2, 10, tzinfo=UTC), tick=False):
        world.cli("sync")  # captured and linked to Acme and Globex before it is held
    without_acme = "\n".join(
        line for line in CUSTOMERS_CSV.splitlines() if not line.startswith("Acme")
    )
    path = world.tmp / "crm.csv"
    path.write_text(without_acme + "\n")
    world.cli("customers", "import", str(path), "--mirror")
    with time_machine.travel(datetime(2026, 3, 2, 15, tzinfo=UTC), tick=False):
        world.cli("sync")
        (task,) = tasks(world)
    assert (task["title"], task["customer"]) == ("Follow up on Joint review", "Globex")
