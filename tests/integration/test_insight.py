"""Customer insight end to end: real mail through Dovecot, SQLite and PostgreSQL, controlled
time; every option of `customers list` and `report`, and their errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine

from syncd.cli.main import cli
from syncd.schema.tables import customers
from tests.conftest import World
from tests.mail import make_message
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot

MON_9 = datetime(2026, 3, 2, 8, tzinfo=UTC)  # Monday 09:00 in Berlin (the tests' org zone)
NOW = MON_9 + timedelta(days=9)  # Wednesday of the next week, 09:00 Berlin


def listed(world: World, *args: str) -> list[dict[str, Any]]:
    return json.loads(world.cli("customers", "list", "--json", *args).stdout)  # type: ignore[no-any-return]


def ask(n: str, at: datetime, sender: str = "Wile Coyote <wile@acme.com>",
        to: str = "Alice Rep <alice@example.com>") -> bytes:  # fmt: skip
    return make_message(sender=sender, to=to, subject=f"Question {n}",
                        message_id=f"<{n}@customer.test>", date=at)  # fmt: skip


def answer(n: str, at: datetime, sender: str = "Alice Rep <alice@example.com>",
           to: str = "Wile Coyote <wile@acme.com>") -> bytes:  # fmt: skip
    return make_message(
        sender=sender, to=to, subject=f"Re: Question {n}", message_id=f"<re-{n}@example.com>",
        in_reply_to=f"<{n}@customer.test>", references=f"<{n}@customer.test>", date=at,
    )  # fmt: skip


def two_reps_and_their_mail(world: World) -> None:
    """alice: three questions from Acme (answered in 2 and 2 business hours, one not at
    all); bob: one from Globex answered two business days later."""
    world.rep("alice")
    world.rep("bob")
    world.customers(CUSTOMERS_CSV)
    world.write_config(
        mailbox={"alice": {"folders": ["INBOX", "Sent"]}, "bob": {"folders": ["INBOX", "Sent"]}}
    )
    world.deliver("alice", ask("a1", MON_9))
    world.deliver("alice", answer("a1", MON_9 + timedelta(hours=2)), folder="Sent")
    tue_16 = MON_9 + timedelta(days=1, hours=7)  # Tuesday 16:00 Berlin
    world.deliver("alice", ask("a2", tue_16))
    world.deliver("alice", answer("a2", tue_16 + timedelta(hours=18)), folder="Sent")  # Wed 10:00
    world.deliver("alice", ask("a3", MON_9 + timedelta(days=3)))  # Thursday: never answered
    globex = "Hank Scorpio <hank@globex.co.uk>"
    bob = "Bob Rep <bob@example.com>"
    world.deliver("bob", ask("g1", MON_9, sender=globex, to=bob))
    world.deliver(
        "bob", answer("g1", MON_9 + timedelta(days=2), sender=bob, to=globex), folder="Sent"
    )
    with time_machine.travel(NOW, tick=False):
        world.cli("sync")


def test_customers_list_shows_contact_and_activity_per_customer(world: World) -> None:
    two_reps_and_their_mail(world)
    with time_machine.travel(NOW, tick=False):
        rows = {row["name"]: row for row in listed(world)}
        assert list(rows) == ["Acme Corp", "Globex", "Initech", "Umbrella"]  # by name
        acme = rows["Acme Corp"]
        assert acme["domains"] == ["acme-corp.de", "acme.com"]
        assert acme["last_contact_at"] == acme["last_inbound_at"] == "2026-03-05T08:00:00Z"
        assert acme["last_outbound_at"] == "2026-03-04T09:00:00Z"
        assert (acme["emails"], acme["meetings"], acme["next_meeting_at"]) == (5, 0, None)
        # The rules' tasks: a3 unanswered, and no answer to alice's two replies (no_response).
        open_acme = tasks(world, "--customer", "Acme Corp", "--status", "open")
        assert acme["open_tasks"] == len(open_acme) == 3
        assert {t["rule"] for t in open_acme} == {"unanswered_inbound", "no_response"}
        assert rows["Globex"]["emails"] == 2
        assert rows["Globex"]["open_tasks"] == len(tasks(world, "--customer", "Globex")) == 1
        assert rows["Initech"] == {
            "id": rows["Initech"]["id"], "name": "Initech", "domains": ["initech.io"], "archived_at": None,
            "last_contact_at": None, "last_inbound_at": None, "last_outbound_at": None,
            "next_meeting_at": None, "open_tasks": 0, "emails": 0, "meetings": 0, "calls": 0,
            "visits": 0,
        }  # fmt: skip

        # The window counts recent mail only; sorting and filtering.
        assert {r["name"]: r["emails"] for r in listed(world, "--window", "6d")}["Acme Corp"] == 1
        assert {r["name"]: r["emails"] for r in listed(world, "--window", "1w")}["Acme Corp"] == 2
        assert {r["name"]: r["emails"] for r in listed(world, "--window", "192h")}["Acme Corp"] == 3
        names = lambda rows: [r["name"] for r in rows]  # noqa: E731
        assert names(listed(world, "--sort", "emails")) == [
            "Acme Corp",
            "Globex",
            "Initech",
            "Umbrella",
        ]
        assert names(listed(world, "--sort", "last-contact")) == [
            "Initech",
            "Umbrella",
            "Globex",
            "Acme Corp",
        ]
        assert names(listed(world, "--sort", "open-tasks"))[0] == "Acme Corp"
        assert names(listed(world, "--sort", "meetings")) == [
            "Acme Corp",
            "Globex",
            "Initech",
            "Umbrella",
        ]
        assert names(listed(world, "--quiet-for", "150h")) == ["Globex", "Initech", "Umbrella"]
        assert names(listed(world, "--quiet-for", "150h", "--sort", "last-contact")) == [
            "Initech",
            "Umbrella",
            "Globex",
        ]
        assert names(listed(world, "--owner", "bob@example.com")) == ["Globex"]
        assert names(listed(world, "--owner", "Alice@Example.com")) == ["Acme Corp"]
        assert listed(world, "--owner", "carol@example.com") == []

        lines = world.cli("customers", "list", "--nl", "--sort", "emails").stdout.splitlines()
        assert [json.loads(line)["name"] for line in lines][:2] == ["Acme Corp", "Globex"]
        wide = world.runner.invoke(
            cli, ["--config", str(world.config_path), "customers", "list"], env={"COLUMNS": "120"}
        )
        assert wide.exit_code == 0
        assert "last contact" in wide.stdout and "2026-03-05" in wide.stdout
        table = world.cli("customers", "list").stdout  # 80 columns: still every name
        assert all(name in table for name in ("Acme", "Globex", "Initech", "Umbrella"))


def test_report_responses_per_rep_and_per_customer(world: World) -> None:
    two_reps_and_their_mail(world)
    with time_machine.travel(NOW, tick=False):
        by_rep = json.loads(
            world.cli("report", "responses", "--json", "--since", "2026-03-01").stdout
        )
        assert by_rep == [
            {"rep": "alice@example.com", "answered": 2, "unanswered": 1,
             "median_business_hours": 2.0, "p90_business_hours": 2.0, "within_1_business_day": 1.0},
            {"rep": "bob@example.com", "answered": 1, "unanswered": 0,
             "median_business_hours": 16.0, "p90_business_hours": 16.0, "within_1_business_day": 0.0},
        ]  # fmt: skip
        by_customer = json.loads(
            world.cli("report", "responses", "--json", "--by", "customer", "--since", "2026-03-01").stdout
        )  # fmt: skip
        assert [(r["customer"], r["answered"], r["unanswered"]) for r in by_customer] == [
            ("Acme Corp", 2, 1), ("Globex", 1, 0),
        ]  # fmt: skip
        # --since leaves out what came before; the default is the last 90 days.
        later = json.loads(
            world.cli("report", "responses", "--json", "--since", "2026-03-03").stdout
        )
        assert [(r["rep"], r["answered"], r["unanswered"]) for r in later] == [
            ("alice@example.com", 1, 1)
        ]
        assert json.loads(world.cli("report", "responses", "--json").stdout) == by_rep
        by_customer_default = json.loads(
            world.cli("report", "responses", "--json", "--by", "customer").stdout
        )
        assert [r["customer"] for r in by_customer_default] == ["Acme Corp", "Globex"]
        table = world.cli("report", "responses").stdout
        assert "alice" in table and "100%" in table and "0%" in table
    with time_machine.travel(NOW + timedelta(days=200), tick=False):
        assert "No inbound customer email" in world.cli("report", "responses").stdout


def test_report_activity_draws_weeks_and_prints_numbers(world: World) -> None:
    two_reps_and_their_mail(world)
    with time_machine.travel(NOW, tick=False):
        weeks = json.loads(
            world.cli("report", "activity", "Acme Corp", "--json", "--weeks", "3").stdout
        )
        assert weeks == [
            {"week": "2026-02-23", "emails_in": 0, "emails_out": 0, "meetings": 0, "calls": 0},
            {"week": "2026-03-02", "emails_in": 3, "emails_out": 2, "meetings": 0, "calls": 0},
            {"week": "2026-03-09", "emails_in": 0, "emails_out": 0, "meetings": 0, "calls": 0},
        ]
        assert len(json.loads(world.cli("report", "activity", "globex", "--json").stdout)) == 26
        two = json.loads(world.cli("report", "activity", "Globex", "--json", "--weeks", "2").stdout)
        assert [week["emails_in"] for week in two] == [1, 0]
        drawn = world.cli("report", "activity", "Acme Corp", "--weeks", "3").stdout
        assert "2026-03-02" in drawn and "█" in drawn and "Acme Corp" in drawn


def test_bad_values_are_clear_errors(world: World) -> None:
    world.customers(CUSTOMERS_CSV)
    for args, text in [
        (("customers", "list", "--window", "9x"), "36h, 90d or 12w"),
        (("customers", "list", "--quiet-for", "soon"), "36h, 90d or 12w"),
        (("customers", "list", "--sort", "size"), "last-contact"),
        (("customers", "list", "--json", "--nl"), "exclude each other"),
        (("report", "responses", "--by", "team"), "rep"),
        (("report", "activity", "Acme Corp", "--weeks", "0"), "1<=x<=260"),
        (("report", "activity", "Acme Corp", "--weeks", "many"), "not a valid integer"),
    ]:
        result = world.cli(*args, expect=2)
        assert text in result.output and "Traceback" not in result.output, (args, result.output)
    for args, text in [
        (("customers", "list", "--owner", "alice"), "not an email address"),
        (("report", "responses", "--since", "last year"), "not a date"),
        (("report", "responses", "--since", "0001-01-01T00:00+01:00"), "out of range"),
        (("report", "activity", "Nope Inc"), "Nope Inc"),
    ]:
        result = world.cli(*args, expect=2)
        assert text in result.output and "hint:" in result.output, (args, result.output)


# --- gone_quiet ------------------------------------------------------------------------------


def tasks(world: World, *args: str) -> list[dict[str, Any]]:
    return json.loads(world.cli("tasks", "list", "--json", *args).stdout)  # type: ignore[no-any-return]


def quiet_tasks(world: World) -> list[dict[str, Any]]:
    return [t for t in tasks(world) if t["rule"] == "gone_quiet"]


def record_id(world: World, message_id: str) -> int:
    return {r["message_id"]: r["id"] for r in world.records()}[message_id]  # type: ignore[no-any-return]


def test_a_customer_gone_quiet_asks_the_last_rep_and_new_contact_settles_it(world: World) -> None:
    world.rep("alice")
    world.rep("bob")
    world.customers(CUSTOMERS_CSV)
    world.write_config(
        mailbox={"alice": {"folders": ["INBOX", "Sent"]}, "bob": {"folders": ["INBOX", "Sent"]}}
    )
    # Acme: three emails in February, the last one with bob; Globex: only two (too few).
    for n, (rep, day) in enumerate([("alice", 2), ("alice", 9), ("bob", 16)]):
        at = datetime(2026, 2, day, 9, tzinfo=UTC)
        world.deliver(rep, ask(f"f{n}", at, to=f"{rep.title()} Rep <{rep}@example.com>"))
        world.deliver(
            rep,
            answer(f"f{n}", at + timedelta(hours=1), sender=f"<{rep}@example.com>"),
            folder="Sent",
        )
    for n in range(2):
        world.deliver(
            "alice",
            ask(f"g{n}", datetime(2026, 2, 2 + n, 9, tzinfo=UTC), sender="hank@globex.co.uk"),
        )
    last = datetime(2026, 2, 16, 10, tzinfo=UTC)  # bob's answer
    with time_machine.travel(last + timedelta(days=29), tick=False):
        world.cli("sync")
        assert quiet_tasks(world) == []  # not quiet for 30 days yet
    with time_machine.travel(last + timedelta(days=31), tick=False):
        for _ in range(3):  # however often the rules run: one task
            world.cli("sync")
        (task,) = quiet_tasks(world)
    assert (task["owner"], task["customer"], task["status"]) == (
        "bob@example.com",
        "Acme Corp",
        "open",
    )
    assert task["title"] == "Get back in touch with Acme Corp: nothing since 2026-02-16"
    assert task["record_id"] == record_id(world, "re-f2@example.com")
    assert task["due_at"] == (last + timedelta(days=30)).isoformat()

    # Wile writes again: the task closes itself, pointing at the new email.
    back = datetime(2026, 3, 20, 9, tzinfo=UTC)
    world.deliver("alice", ask("back", back))
    with time_machine.travel(back + timedelta(hours=1), tick=False):
        world.cli("sync")
    (task,) = quiet_tasks(world)
    assert task["status"] == "done" and task["closed_by_record_id"] == record_id(
        world, "back@customer.test"
    )

    # Quiet again, a new spell: a new task (the new trigger), dismissed by a person; the
    # rules never bring it back, and the first one stays done.
    with time_machine.travel(back + timedelta(days=31), tick=False):
        world.cli("sync")
        done, fresh = sorted(quiet_tasks(world), key=lambda t: t["id"])
        assert fresh["status"] == "open" and fresh["owner"] == "alice@example.com"
        assert fresh["record_id"] == record_id(world, "back@customer.test")
        world.cli("tasks", "dismiss", str(fresh["id"]))
        world.cli("sync")
    with time_machine.travel(back + timedelta(days=33), tick=False):
        world.cli("sync")
        assert [(t["status"], t["closed_by_record_id"]) for t in quiet_tasks(world)] == [
            ("done", done["closed_by_record_id"]), ("dismissed", None),
        ]  # fmt: skip


def test_gone_quiet_can_be_tuned_or_switched_off(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    for n in range(2):
        world.deliver("alice", ask(f"q{n}", datetime(2026, 2, 2 + n, 9, tzinfo=UTC)))
    off = '[[followup]]\nrule = "gone_quiet"\nenabled = false\n'
    world.write_config(extra=off)
    with time_machine.travel(datetime(2026, 3, 10, tzinfo=UTC), tick=False):
        world.cli("sync")
        assert quiet_tasks(world) == []
        # Two records are too few by default; min_records = 2 and after = 4 weeks ask.
        world.write_config(
            extra='[[followup]]\nrule = "gone_quiet"\nafter = "28 days"\nmin_records = 2\n'
        )
        world.cli("sync")
        (task,) = quiet_tasks(world)
    assert task["due_at"] == "2026-03-03T09:00:00+00:00" and task["owner"] == "alice@example.com"


def test_gone_quiet_asks_nothing_about_an_archived_customer(world: World) -> None:
    """A customer the directory no longer lists is archived: no new links, so it always
    looks silent, and nobody is to chase it."""
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    for n in range(3):
        world.deliver("alice", ask(f"z{n}", datetime(2026, 2, 2 + n, 9, tzinfo=UTC)))
    with time_machine.travel(datetime(2026, 2, 6, tzinfo=UTC), tick=False):
        world.cli("sync")
    engine = sa.create_engine(world.db_url)
    with engine.begin() as conn:
        conn.execute(
            customers.update()
            .where(customers.c.name == "Acme Corp")
            .values(archived_at=datetime(2026, 2, 10, tzinfo=UTC))
        )
    engine.dispose()
    with time_machine.travel(datetime(2026, 3, 10, tzinfo=UTC), tick=False):
        world.cli("sync")
        assert quiet_tasks(world) == []


def _event(uid: str, start: datetime, *, status: str = "") -> str:
    end = start + timedelta(hours=1)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{end:%Y%m%dT%H%M%SZ}\r\nSUMMARY:Review {uid}\r\n{status}"
        "ORGANIZER:mailto:carol@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:wile@acme.com\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@pytest.mark.radicale
def test_meetings_count_the_next_one_shows_and_a_cancelled_one_is_no_contact(
    world: World, radicale: Radicale
) -> None:
    """carol has only a calendar: a held meeting, a cancelled one and one ahead with Acme."""
    world.cal_rep("carol", radicale)
    world.customers(CUSTOMERS_CSV)
    world.write_config(capture="past_days = 3650\nfuture_days = 3650")
    world.put_event("carol", "held.ics", _event("held", MON_9 + timedelta(hours=5)))
    world.put_event(
        "carol", "off.ics", _event("off", MON_9 + timedelta(days=1), status="STATUS:CANCELLED\r\n")
    )
    world.put_event("carol", "ahead.ics", _event("ahead", NOW + timedelta(days=6)))
    with time_machine.travel(NOW, tick=False):
        world.cli("sync")
        (acme,) = [r for r in listed(world, "--owner", "carol@example.com")]
        assert acme["name"] == "Acme Corp"
        assert (acme["meetings"], acme["emails"]) == (1, 0)  # the cancelled one is no meeting
        assert acme["next_meeting_at"] == "2026-03-17T08:00:00Z"
        # The cancelled meeting (2026-03-03) reached nobody: the held one is the last contact.
        assert acme["last_contact_at"] == acme["last_outbound_at"] == "2026-03-02T13:00:00Z"
        assert acme["last_inbound_at"] is None
        weeks = json.loads(
            world.cli("report", "activity", "Acme Corp", "--json", "--weeks", "2").stdout
        )
        assert [w["meetings"] for w in weeks] == [1, 0]
        assert names_sorted_by_meetings(world)[0] == "Acme Corp"


def names_sorted_by_meetings(world: World) -> list[str]:
    return [r["name"] for r in listed(world, "--sort", "meetings")]


@pytest.mark.radicale
def test_a_cancelled_meeting_does_not_hide_a_customer_gone_quiet(
    world: World, radicale: Radicale
) -> None:
    """Three emails with Acme in early February, then a meeting that was called off: nobody
    spoke to Acme since the emails, as `customers list` says, so gone_quiet asks."""
    world.rep("alice")
    world.cal_rep("carol", radicale)
    world.customers(CUSTOMERS_CSV)
    world.write_config(capture="past_days = 3650\nfuture_days = 3650")
    for n in range(3):
        world.deliver("alice", ask(f"c{n}", datetime(2026, 2, 2 + n, 9, tzinfo=UTC)))
    off = datetime(2026, 2, 20, 9, tzinfo=UTC)
    world.put_event("carol", "off.ics", _event("off", off, status="STATUS:CANCELLED\r\n"))
    with time_machine.travel(datetime(2026, 3, 10, tzinfo=UTC), tick=False):
        world.cli("sync")
        (acme,) = [r for r in listed(world) if r["name"] == "Acme Corp"]
        assert acme["last_contact_at"] == "2026-02-04T09:00:00Z"
        (task,) = quiet_tasks(world)
    assert task["title"] == "Get back in touch with Acme Corp: nothing since 2026-02-04"
    assert (task["owner"], task["record_id"]) == (
        "alice@example.com",
        record_id(world, "c2@customer.test"),
    )
