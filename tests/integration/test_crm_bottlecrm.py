"""The CRM connector against a real BottleCRM (tests/servers/bottlecrm.py): nothing mocked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.crm_world import CrmWorld
from tests.servers.bottlecrm import BottleCrm


def _acme(world: CrmWorld) -> tuple[str, str, str, str]:
    """An account with one contact in the CRM, pulled into syncd; (account id, contact id,
    customer name, contact address)."""
    name = world.name("Acme")
    domain = world.domain("acme")
    account = world.account(name, domain)
    address = f"jane@{domain}"
    contact = world.contact("Jane", "Doe", address, account)
    world.sync()
    return account, contact, name, address


def test_every_record_kind_becomes_one_interaction_on_the_right_record(
    bottlecrm: BottleCrm, tmp_path: Path
) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    account, contact, name, address = _acme(world)
    now = datetime.now(UTC)
    email = world.record(
        "email", "Price list", customer=name, address=address, snippet="Prices attached"
    )
    meeting = world.record(
        "meeting", "Quarterly review", customer=name, address=address,
        at=now - timedelta(hours=2), starts_at=now - timedelta(hours=2),
        ends_at=now - timedelta(hours=1), status="scheduled",
    )  # fmt: skip
    call = world.record(
        "call", "Called about renewal", customer=name, address=address,
        duration_seconds=600, outcome="connected", body="Agreed to renew",
    )  # fmt: skip
    visit = world.record(
        "visit", "On site", customer=name, location="Berlin office", duration_seconds=3600
    )
    done = world.sync()
    assert done["pushed"] == 4, done
    on_contact = {i["subject"]: i for i in world.interactions("contact", contact)}
    assert set(on_contact) == {"Price list", "Quarterly review", "Called about renewal"}
    assert on_contact["Price list"]["kind"] == "email"
    assert on_contact["Quarterly review"]["kind"] == "meeting"
    assert on_contact["Quarterly review"]["duration_seconds"] == 3600
    assert on_contact["Called about renewal"]["kind"] == "call"
    assert on_contact["Called about renewal"]["outcome"] == "connected"
    assert on_contact["Called about renewal"]["duration_seconds"] == 600
    assert "Agreed to renew" in on_contact["Called about renewal"]["body"]
    on_account = [i for i in world.interactions("account", account) if i["home"] == "account"]
    assert [i["subject"] for i in on_account] == ["On site"]
    assert on_account[0]["kind"] == "meeting"
    assert on_account[0]["body"].startswith("Location: Berlin office")
    for rid in (email, meeting, call, visit):
        world.crm_id(f"record:{rid}")
    # Nothing more to push: a second sync changes nothing there.
    assert world.sync()["pushed"] == 0
    assert len(world.interactions("contact", contact)) == 3
    listed = world.crm_list()
    assert listed["pushed"] == 4 and listed["pending"] == 0 and listed["failed"] == 0


def test_an_update_and_a_cancellation_update_the_interaction(
    bottlecrm: BottleCrm, tmp_path: Path
) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    _, contact, name, address = _acme(world)
    now = datetime.now(UTC)
    call = world.record("call", "First call", customer=name, address=address, duration_seconds=60)
    meeting = world.record(
        "meeting", "Kick-off", customer=name, address=address,
        at=now - timedelta(hours=3), starts_at=now - timedelta(hours=3),
        ends_at=now - timedelta(hours=2), status="scheduled",
    )  # fmt: skip
    world.sync()
    ids = {world.crm_id(f"record:{call}"), world.crm_id(f"record:{meeting}")}
    world.change(call, subject="First call (renewal)", duration_seconds=900)
    world.change(meeting, status="cancelled")
    assert world.sync()["pushed"] == 2
    there = {i["id"]: i for i in world.interactions("contact", contact)}
    assert set(there) == ids  # updated in place, not made again
    subjects = {i["subject"] for i in there.values()}
    assert subjects == {"First call (renewal)", "Cancelled: Kick-off"}
    assert there[world.crm_id(f"record:{call}")]["duration_seconds"] == 900


def test_tasks_go_out_and_come_back_done_or_dismissed(bottlecrm: BottleCrm, tmp_path: Path) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    account, _, name, _ = _acme(world)
    due = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    for title in ("Send the offer", "Book a demo"):
        world.cli("tasks", "add", "--customer", name, "--owner", "rep@example.com",
                  "--title", world.name(title), "--due", due)  # fmt: skip
    assert world.sync()["pushed"] == 2
    tasks = {t["title"]: t for t in json.loads(world.cli("tasks", "list", "--json").stdout)}
    offer = world.crm_id(f"task:{tasks[world.name('Send the offer')]['id']}")
    demo = world.crm_id(f"task:{tasks[world.name('Book a demo')]['id']}")
    there = bottlecrm.api("GET", f"/api/tasks/{offer}/")["task_obj"]
    assert there["status"] == "New" and there["account"]["id"] == account
    assert there["due_date"] == due and there["priority"] == "Medium"
    # A rep completes one in the CRM and deletes the other.
    bottlecrm.api("PATCH", f"/api/tasks/{offer}/", {"status": "Completed"})
    bottlecrm.api("DELETE", f"/api/tasks/{demo}/")
    assert world.sync()["tasks_closed"] == 2
    status = {
        t["title"]: t["status"] for t in json.loads(world.cli("tasks", "list", "--json").stdout)
    }
    assert status == {world.name("Send the offer"): "done", world.name("Book a demo"): "dismissed"}
    # Closing them in syncd announced task.updated: the CRM copy of the done one agrees and
    # nothing is made again for the deleted one.
    world.sync()
    assert bottlecrm.api("GET", f"/api/tasks/{offer}/")["task_obj"]["status"] == "Completed"
    titled = bottlecrm.api("GET", "/api/tasks/?title=" + world.name("Book").replace(" ", "%20"))
    assert titled["tasks"] == []


def test_a_refused_object_fails_alone_with_its_answer(bottlecrm: BottleCrm, tmp_path: Path) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    account, contact, name, address = _acme(world)
    other = f"max@{world.domain('acme')}"
    gone = world.contact("Max", "Gone", other, account)
    world.sync()
    bottlecrm.api("DELETE", f"/api/contacts/{gone}/")  # deleted there after syncd mapped it
    refused = world.record("call", "To a deleted contact", customer=name, address=other)
    note = world.record("note", "A note", customer=name, address=address, body="text")
    fine = world.record("call", "Fine call", customer=name, address=address)
    done = world.sync(expect=0)
    assert done["pushed"] == 1 and done["failed"] == 2
    assert [i["subject"] for i in world.interactions("contact", contact)] == ["Fine call"]
    listed = world.crm_list()
    assert listed["state"] == "failing" and listed["failed"] == 2
    why = {r["subject"]: r for r in listed["refused"]}
    assert why[f"record:{refused}"]["status"] == 404
    assert "404" in why[f"record:{refused}"]["error"]
    assert "no interaction kind for a note" in why[f"record:{note}"]["error"]
    world.crm_id(f"record:{fine}")
    table = world.cli("crm", "list").stdout
    assert f"refused record:{refused}: 404" in table


def test_a_crm_down_for_a_while_gets_the_backlog_when_back(
    bottlecrm: BottleCrm, tmp_path: Path
) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    _, contact, name, address = _acme(world)
    bottlecrm.pause()
    try:
        for n in range(5):
            world.record("email", f"While down {n}", customer=name, address=address)
        done = world.sync(expect=1)
        assert done["pushed"] == 0 and done["retried"] == 1
        listed = world.crm_list()
        assert listed["pending"] == 5 and "refused" in listed["last_error"]
    finally:
        bottlecrm.resume()
    done = world.sync()  # `crm sync` tries now what waits for its backoff
    assert done["pushed"] == 5
    subjects = sorted(i["subject"] for i in world.interactions("contact", contact))
    assert subjects == [f"While down {n}" for n in range(5)]
    listed = world.crm_list()
    assert listed["pending"] == 0 and listed["last_error"] is None


def test_forget_deletes_what_syncd_created(bottlecrm: BottleCrm, tmp_path: Path) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    _, contact, name, address = _acme(world)
    world.record("call", "Call with Jane", customer=name, address=address)
    world.sync()
    assert len(world.interactions("contact", contact)) == 1
    world.cli("forget", address, "--yes")
    done = world.sync()
    assert done["deleted"] == 1
    assert world.interactions("contact", contact) == []
