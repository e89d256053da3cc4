"""The CRM connector against a real BottleCRM (tests/servers/bottlecrm.py): nothing mocked."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from syncd.config_file import load_config
from syncd.crm.render import render_records
from syncd.crm.runner import open_sink
from syncd.crm.sink import marker
from syncd.domain.followups import Wanted
from syncd.schema.tables import contact_addresses, contacts
from syncd.store import crm_queue as queue
from syncd.store.tasks import apply as apply_tasks
from tests.crm_world import CrmWorld
from tests.daemon import DaemonProcess, wait_until
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
    # Logged as a rep logs them: `syncd records add`.
    call = world.log(
        "call", "Called about renewal", "--customer", name, "--contact", address,
        "--duration", "10m", "--outcome", "connected", "--body", "Agreed to renew",
    )  # fmt: skip
    visit = world.log(
        "visit", "On site", "--customer", name, "--location", "Berlin office", "--duration", "1h"
    )
    note = world.log(
        "note", "Prefers email", "--customer", name, "--contact", address,
        "--body", "Jane asked to be contacted by email only",
    )  # fmt: skip
    done = world.sync()
    assert done["pushed"] == 5, done
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
    # A note is no conversation: BottleCRM has no interaction kind for it, so it is a
    # comment on the contact, where a rep writes one.
    (comment,) = world.comments("contact", contact)
    assert comment["id"] == world.crm_id(f"record:{note}")
    assert comment["comment"].startswith("Note: Prefers email\n")
    assert "Jane asked to be contacted by email only" in comment["comment"]
    assert world.comments("account", account) == []
    for rid in (email, meeting, call, visit):
        world.crm_id(f"record:{rid}")
    # Nothing more to push: a second sync changes nothing there.
    assert world.sync()["pushed"] == 0
    assert len(world.interactions("contact", contact)) == 3
    assert len(world.comments("contact", contact)) == 1
    listed = world.crm_list()
    assert listed["pushed"] == 5 and listed["pending"] == 0 and listed["failed"] == 0


def test_an_update_and_a_cancellation_update_the_interaction(
    bottlecrm: BottleCrm, tmp_path: Path
) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    account, contact, name, address = _acme(world)
    now = datetime.now(UTC)
    call = world.log("call", "First call", "--customer", name, "--contact", address,
                     "--duration", "1m")  # fmt: skip
    note = world.log("note", "Budget", "--customer", name, "--contact", address, "--body", "Q1")
    meeting = world.record(
        "meeting", "Kick-off", customer=name, address=address,
        at=now - timedelta(hours=3), starts_at=now - timedelta(hours=3),
        ends_at=now - timedelta(hours=2), status="scheduled",
    )  # fmt: skip
    world.sync()
    ids = {world.crm_id(f"record:{call}"), world.crm_id(f"record:{meeting}")}
    comment = world.crm_id(f"record:{note}")
    world.cli("records", "edit", str(call), "--subject", "First call (renewal)",
              "--duration", "15m")  # fmt: skip
    world.cli("records", "edit", str(note), "--body", "Q1 and Q2")
    world.change(meeting, status="cancelled")  # as a calendar sync records a cancellation
    assert world.sync()["pushed"] == 3
    there = {i["id"]: i for i in world.interactions("contact", contact)}
    assert set(there) == ids  # updated in place, not made again
    subjects = {i["subject"] for i in there.values()}
    assert subjects == {"First call (renewal)", "Cancelled: Kick-off"}
    assert there[world.crm_id(f"record:{call}")]["duration_seconds"] == 900
    (edited,) = world.comments("contact", contact)
    assert edited["id"] == comment and "Q1 and Q2" in edited["comment"]  # in place
    # The note was a call after all: the comment goes, an interaction comes.
    world.cli("records", "edit", str(note), "--kind", "call")
    assert world.sync()["pushed"] == 1
    assert world.comments("contact", contact) == []
    assert world.crm_id(f"record:{note}") in {
        i["id"] for i in world.interactions("contact", contact) if i["subject"] == "Budget"
    }
    # A logged record deleted (record.deleted): its interaction or comment goes too.
    world.cli("records", "delete", str(call), "--yes")
    world.cli("records", "delete", str(note), "--yes")
    assert world.sync()["deleted"] == 2
    assert {i["id"] for i in world.interactions("contact", contact)} == {
        world.crm_id(f"record:{meeting}")
    }
    assert world.comments("contact", contact) == []
    # A link that moves the record to another CRM record: BottleCRM cannot move an
    # interaction, so the old one goes and one is made on the contact.
    note_on_account = world.record("email", "Only the company", customer=name)
    world.sync()
    on_account = world.crm_id(f"record:{note_on_account}")
    world.add_participant(note_on_account, address)
    assert world.sync()["pushed"] == 1
    moved = world.crm_id(f"record:{note_on_account}")
    assert moved != on_account
    assert moved in {i["id"] for i in world.interactions("contact", contact)}
    assert on_account not in {i["id"] for i in world.interactions("account", account)}


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
    refused = world.log("call", "To a deleted contact", "--customer", name, "--contact", other)
    fine = world.log("call", "Fine call", "--customer", name, "--contact", address)
    done = world.sync(expect=0)
    assert done["pushed"] == 1 and done["failed"] == 1
    assert [i["subject"] for i in world.interactions("contact", contact)] == ["Fine call"]
    listed = world.crm_list()
    assert listed["state"] == "failing" and listed["failed"] == 1
    why = {r["subject"]: r for r in listed["refused"]}
    assert why[f"record:{refused}"]["status"] == 404
    assert "404" in why[f"record:{refused}"]["error"]
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
    account, contact, name, address = _acme(world)
    call = world.log("call", "Call with Jane", "--contact", address)
    world.log("note", "About Jane", "--contact", address, "--body", "Jane's note")
    # A follow-up task the rules made from the call (the store's path for rule-made tasks).
    with world.engine.begin() as conn:
        apply_tasks(
            conn,
            [Wanted("no_response", call, "rep@example.com", world.customer_id(name),
                    world.name("Call Jane back"), datetime.now(UTC) + timedelta(days=2))],
            [],
        )  # fmt: skip
    assert world.sync()["pushed"] == 3
    assert len(world.interactions("contact", contact)) == 1
    assert len(world.comments("contact", contact)) == 1
    (task,) = json.loads(world.cli("tasks", "list", "--json").stdout)
    there = world.crm_id(f"task:{task['id']}")
    assert bottlecrm.api("GET", f"/api/tasks/{there}/")["task_obj"]["account"]["id"] == account
    world.cli("forget", address, "--yes")
    done = world.sync()
    # The person's records and the task of the erased call: nothing of them is left there.
    assert done["deleted"] == 3, done
    assert world.interactions("contact", contact) == []
    assert world.comments("contact", contact) == []
    titled = bottlecrm.api("GET", "/api/tasks/?title=" + world.name("Call").replace(" ", "%20"))
    assert titled["tasks"] == []


def test_kill_9_mid_push_then_restart_makes_no_duplicate(
    bottlecrm: BottleCrm, tmp_path: Path
) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    world.write_config(timeout=2)  # claims of a killed daemon expire within 10 s
    _, contact, name, address = _acme(world)
    config = load_config(world.config_path).crm[0]
    # The window itself: the CRM answered, the daemon died before syncd's commit.
    first = world.log("call", "Answered, never committed", "--customer", name,
                      "--contact", address)  # fmt: skip
    note = world.log("note", "Noted, never committed", "--contact", address, "--body", "x")
    dead = open_sink(world.engine, config, "killed-daemon")
    with world.engine.begin() as conn:
        queue.take_new(conn, "bottle", config.push, None)
        claims = queue.claim(conn, "bottle", "killed-daemon", limit=2, lease=timedelta(0))
    with world.engine.connect() as conn:
        records = render_records(conn, [first, note])
        people = queue.crm_ids(
            conn, "bottle", [f"customer:{world.customer_id(name)}", *world.contact_subjects()]
        )
    for claim in claims:
        record = records[int(claim.subject[7:])]
        target = dead._record_target(record, people)
        dead.crm.push_record(record, target, marker(dead.installation, claim.subject), None)
    dead.crm.close()
    assert len(world.interactions("contact", contact)) == 1
    assert len(world.comments("contact", contact)) == 1
    assert world.sync()["pushed"] == 2
    (only,) = world.interactions("contact", contact)
    assert only["id"] == world.crm_id(f"record:{first}")  # found again, not made twice
    (comment,) = world.comments("contact", contact)
    assert comment["id"] == world.crm_id(f"record:{note}")

    # The real thing: `syncd run` killed with SIGKILL in the middle of a backlog, restarted.
    subjects = [f"Backlog {n:02d}" for n in range(40)]
    for subject in subjects:
        world.record("email", subject, customer=name, address=address)
    daemon = DaemonProcess(world.config_path, tmp_path / "daemon.log")
    try:
        daemon.start()
        wait_until(
            lambda: len(world.interactions("contact", contact)) >= 10, 120, "a part of the push"
        )
        daemon.kill()
    finally:
        daemon.close()
        shutil.rmtree(daemon.notify_path.parent, ignore_errors=True)
    assert len(world.interactions("contact", contact)) < 41  # killed mid-push
    again = DaemonProcess(world.config_path, tmp_path / "daemon.log")
    try:
        again.start()
        wait_until(
            lambda: (
                len(world.interactions("contact", contact)) >= 41
                and world.crm_list()["pending"] == 0
            ),
            120,
            "the rest of the backlog",
        )
        assert again.stop()[0] == 0
    finally:
        again.close()
        shutil.rmtree(again.notify_path.parent, ignore_errors=True)
    there = [i["subject"] for i in world.interactions("contact", contact)]
    assert sorted(there) == sorted([*subjects, "Answered, never committed"])  # each once


def test_directory_add_change_removal_and_return(bottlecrm: BottleCrm, tmp_path: Path) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    account, contact, name, address = _acme(world)

    def customers() -> dict[str, dict[str, object]]:
        listed = json.loads(world.cli("customers", "list", "--all", "--json").stdout)
        return {c["name"]: c for c in listed}

    assert customers()[name]["domains"] == [world.domain("acme")]
    assert customers()[name]["archived_at"] is None
    # Added there: a new customer here, with its contact.
    beta = world.name("Beta")
    beta_id = world.account(beta, world.domain("beta"))
    world.contact("Bo", "Beta", f"bo@{world.domain('beta')}", beta_id)
    # Changed there: the account's website moves to another domain.
    bottlecrm.api(
        "PATCH", f"/api/accounts/{account}/", {"website": f"https://{world.domain('acme-new')}"}
    )
    world.sync()
    assert customers()[beta]["domains"] == [world.domain("beta")]
    assert customers()[name]["domains"] == [world.domain("acme-new")]
    world.cli("contacts", "add", f"bo@{world.domain('beta')}", "--customer", beta, expect=0)
    # Removed there (made inactive, and a contact deleted): archived here, history kept.
    bottlecrm.api("PATCH", f"/api/accounts/{beta_id}/", {"is_active": False})
    bottlecrm.api("DELETE", f"/api/contacts/{contact}/")
    world.sync()
    assert customers()[beta]["archived_at"] is not None
    with world.engine.connect() as conn:
        archived = conn.execute(
            select(contacts.c.archived_at)
            .select_from(contacts.join(contact_addresses))
            .where(contact_addresses.c.address == address)
        ).scalar_one()
    assert archived is not None
    # Back there: restored here, the same customer.
    before = customers()[beta]["id"]
    bottlecrm.api("PATCH", f"/api/accounts/{beta_id}/", {"is_active": True})
    world.sync()
    assert customers()[beta]["archived_at"] is None
    assert customers()[beta]["id"] == before
    assert world.crm_list()["pulled"] > 0


def test_check_reports_a_refused_token_with_its_fix(bottlecrm: BottleCrm, tmp_path: Path) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    assert "bottle: ok" in world.cli("crm", "check", "bottle").stdout
    (tmp_path / "crm-token").write_text("bcrm_pat_not-a-real-token\n")
    said = world.cli("crm", "check", "bottle", expect=1).stdout
    assert "refused the token (40" in said and "fix:" in said
    assert "bcrm_pat_not-a-real-token" not in said
    done = world.sync(expect=1)
    assert any("refused the token" in e for e in done["errors"])
    assert "bcrm_pat_not" not in json.dumps(world.crm_list())
