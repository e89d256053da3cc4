"""Email capture end to end: real Dovecot, the real CLI, SQLite and PostgreSQL."""

from __future__ import annotations

import imapclient
import pytest

from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot


def _inbound(n: int, **kw: object) -> bytes:
    return make_message(message_id=f"<in{n}@acme.com>", subject=f"Question {n}", **kw)  # type: ignore[arg-type]


def test_sync_captures_links_and_never_duplicates(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.deliver("alice", _inbound(1))
    world.deliver("alice", _inbound(2, sender="Peter <peter@initech.io>"))
    world.deliver("alice", _inbound(3, sender="Stranger <who@unknown-startup.com>"))
    world.deliver(
        "alice",
        make_message(
            sender="Alice <alice@example.com>",
            to="Wile <wile@acme.com>",
            message_id="<out1@example.com>",
        ),
        folder="Sent",
    )

    out = world.cli("sync")
    assert "alice: 4 captured, 0 skipped, 0 quarantined" in out.stdout
    records = world.records()
    assert len(records) == 4
    by_id = {r["message_id"]: r for r in records}
    assert by_id["in1@acme.com"]["customers"] == [{"id": 1, "name": "Acme Corp", "link": "contact"}]
    assert by_id["in1@acme.com"]["direction"] == "inbound"
    assert by_id["in2@acme.com"]["customers"][0]["name"] == "Initech"
    assert by_id["in2@acme.com"]["customers"][0]["link"] == "domain"
    assert by_id["in3@acme.com"]["customers"] == []  # kept for reconciliation
    assert by_id["out1@example.com"]["direction"] == "outbound"
    assert by_id["out1@example.com"]["sources"][0]["folder"] == "Sent"

    world.cli("sync")
    world.cli("sync")
    assert len(world.records()) == 4
    assert {r["id"] for r in world.records()} == {r["id"] for r in records}


def test_records_json_contract(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.deliver("alice", _inbound(1, cc="Road Runner <road.runner@acme.com>"))
    world.cli("sync")
    (record,) = world.records()
    assert set(record) >= {
        "id",
        "kind",
        "direction",
        "subject",
        "occurred_at",
        "customers",
        "participants",
        "thread_id",
        "message_id",
        "sources",
    }
    assert record["kind"] == "email"
    assert record["occurred_at"] == "2024-06-03T09:00:00Z"
    roles = {(p["address"], p["role"]) for p in record["participants"]}
    assert roles == {
        ("wile@acme.com", "from"),
        ("alice@example.com", "to"),
        ("road.runner@acme.com", "cc"),
    }
    wile = next(p for p in record["participants"] if p["address"] == "wile@acme.com")
    assert wile["contact_id"] is not None and wile["name"] == "Wile Coyote"
    assert record["sources"] == [{"mailbox": "alice", "folder": "INBOX", "uid": 1}]
    assert world.records("--customer", "acme corp") == [record]
    assert world.records("--customer", "1") == [record]
    assert world.records("--contact", "ROAD.RUNNER@acme.com") == [record]
    assert world.records("--since", "2024-06-04") == []
    assert world.records("--kind", "meeting") == []


def test_same_message_in_two_mailboxes_is_one_record_with_two_sources(world: World) -> None:
    world.rep("alice")
    world.rep("bob")
    world.customers(CUSTOMERS_CSV)
    raw = make_message(
        sender="Alice <alice@example.com>",
        to="Wile <wile@acme.com>",
        cc="Bob <bob@example.com>",
        message_id="<shared@example.com>",
    )
    world.deliver("alice", raw, folder="Sent")
    world.deliver("bob", raw)
    world.cli("sync")
    (record,) = world.records()
    assert sorted((s["mailbox"], s["folder"]) for s in record["sources"]) == [
        ("alice", "Sent"),
        ("bob", "INBOX"),
    ]


def test_threads_follow_references_even_when_incomplete(world: World) -> None:
    world.rep("alice")
    world.deliver("alice", _inbound(1))
    world.deliver(
        "alice",
        make_message(
            sender="alice@example.com",
            to="wile@acme.com",
            message_id="<r1@example.com>",
            in_reply_to="<in1@acme.com>",
            references="<in1@acme.com>",
        ),
        folder="Sent",
    )
    world.cli("sync")
    # A client that sends only In-Reply-To still joins the thread, through its parent.
    world.deliver("alice", make_message(message_id="<r2@acme.com>", in_reply_to="<r1@example.com>"))
    world.cli("sync")
    threads = {r["message_id"]: r["thread_id"] for r in world.records()}
    assert threads == {
        "in1@acme.com": "in1@acme.com",
        "r1@example.com": "in1@acme.com",
        "r2@acme.com": "in1@acme.com",
    }


def test_skips_internal_and_bulk_mail(world: World) -> None:
    world.rep("alice")
    world.deliver("alice", make_message(sender="bob@example.com", message_id="<int@example.com>"))
    world.deliver("alice", _inbound(1, headers={"List-Id": "<news.acme.com>"}))
    world.deliver("alice", _inbound(2, headers={"Precedence": "bulk"}))
    world.deliver("alice", _inbound(3, headers={"Auto-Submitted": "auto-replied"}))
    world.deliver("alice", _inbound(4, sender="no-reply@acme.com"))
    world.deliver("alice", _inbound(5, headers={"Auto-Submitted": "no"}))
    out = world.cli("sync")
    assert "1 captured, 5 skipped" in out.stdout
    assert [r["message_id"] for r in world.records()] == ["in5@acme.com"]


def test_sync_never_marks_mail_read(world: World) -> None:
    login = world.rep("alice")
    for n in range(3):
        world.deliver("alice", _inbound(n))
    world.cli("sync")
    client = imapclient.IMAPClient("127.0.0.1", world.dovecot.port, ssl=False)
    client.login(login, world.passwords["alice"])
    client.select_folder("INBOX", readonly=True)
    flags = client.get_flags(client.search("ALL"))
    client.logout()
    assert len(flags) == 3
    assert all(b"\\Seen" not in f for f in flags.values())


def test_bad_messages_are_captured_or_quarantined_never_block(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    no_id_no_date = make_message(message_id=None, date=None, subject="No id, no date")
    broken_mime = make_message(
        message_id="<mime@acme.com>",
        subject="=?x-unknown-charset?Q?Caf=E9?=",
        headers={"Content-Type": 'multipart/mixed; boundary="never-closed"'},
        body="--never-closed\r\nContent-Type: text/plain; charset=bogus\r\n\r\nHello \xe9t\xe9\r\n",
    )
    junk = b"\x00\x01 this is not a message at all \xff\xfe\r\n\r\n\x00"
    world.deliver("alice", no_id_no_date)
    world.deliver("alice", junk)
    world.deliver("alice", broken_mime)
    world.deliver("alice", _inbound(9))
    out = world.cli("sync")
    assert "3 captured, 0 skipped, 1 quarantined" in out.stdout
    records = {r["subject"]: r for r in world.records()}
    undated = records["No id, no date"]
    assert undated["message_id"].endswith("@generated.invalid")
    assert undated["occurred_at"] is not None
    assert records["Café"]["snippet"] == "Hello été"
    status = world.cli("status", "--json", expect=3)  # 3: no daemon is running
    held = __import__("json").loads(status.stdout)["sources"][0]["quarantined"]
    assert len(held) == 1 and held[0]["uid"] == 2 and "no From" in held[0]["reason"]
    assert "quarantined: alice/INBOX uid 2" in world.cli("status", expect=3).stdout
    # The stable id is stable: syncing again (and re-identifying) creates nothing new.
    world.cli("sync")
    assert len(world.records()) == 3


def test_oversized_message_is_captured_from_headers_only(world: World) -> None:
    world.rep("alice")
    world.write_config(capture="max_message_bytes = 2000")
    world.deliver("alice", _inbound(1, body="big attachment " * 400))
    world.deliver("alice", _inbound(2, body="small\r\n"))
    world.cli("sync")
    snippets = {r["message_id"]: r["snippet"] for r in world.records()}
    assert snippets == {"in1@acme.com": None, "in2@acme.com": "small"}


def test_uidvalidity_change_reidentifies_by_message_id(world: World) -> None:
    login = world.rep("alice")
    for n in range(5):
        world.deliver("alice", _inbound(n))
    world.cli("sync")
    before = {r["message_id"]: r["id"] for r in world.records()}
    world.dovecot.reset_uidvalidity(login)
    world.deliver("alice", _inbound(99))
    world.cli("sync")
    after = world.records()
    assert len(after) == 6
    assert {r["message_id"]: r["id"] for r in after if r["message_id"] in before} == before
    assert all(len(r["sources"]) == 1 for r in after)  # old UIDs dropped, new ones attached


def test_wrong_password_fails_that_mailbox_only(world: World) -> None:
    world.rep("alice")
    world.rep("bob")
    world.deliver("alice", _inbound(1))
    world.deliver("bob", _inbound(2))
    world.write_config(mailbox={"alice": {"password_file": None, "password": "not-the-password"}})
    out = world.cli("sync", expect=1)
    assert "alice: FAILED: mailbox alice" in out.stdout and "refused the login" in out.stdout
    assert "bob: 1 captured" in out.stdout
    assert "not-the-password" not in out.output
    assert [r["message_id"] for r in world.records()] == ["in2@acme.com"]
    status = __import__("json").loads(world.cli("status", "--json", expect=3).stdout)["sources"]
    assert status[0]["state"] == "failing" and status[0]["last_error_kind"] == "credentials"
    assert status[1]["state"] == "ok"


def test_dead_server_and_missing_folder_are_reported(world: World) -> None:
    from tests.servers.ports import free_port

    world.rep("alice")
    world.rep("bob")
    world.deliver("bob", _inbound(1))
    world.write_config(
        mailbox={"alice": {"port": free_port()}, "bob": {"folders": ["INBOX", "Nope"]}}
    )
    out = world.cli("sync", expect=1)
    assert "alice: FAILED" in out.stdout and "connection refused" in out.stdout
    assert "bob: 1 captured" in out.stdout and "Nope: FAILED" in out.stdout


def test_customers_import_is_idempotent_and_validated(world: World) -> None:
    world.customers(CUSTOMERS_CSV)
    again = world.tmp / "again.csv"
    again.write_text(CUSTOMERS_CSV)
    out = world.cli("customers", "import", str(again))
    assert "customers: 0 added, 0 updated, 0 archived, 0 restored, 4 unchanged" in out.stdout
    assert "contacts: 0 added, 0 updated, 0 archived, 0 restored, 4 unchanged" in out.stdout
    listed = __import__("json").loads(world.cli("customers", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["Acme Corp", "Globex", "Initech", "Umbrella"]
    assert listed[0]["domains"] == ["acme-corp.de", "acme.com"]
    bad = world.tmp / "bad.csv"
    bad.write_text(
        "customer,domains,contact_name,contact_email\nX,co.uk,,\n,x.com,,\nY,y.com,Y,not-an-address\n"
    )
    out = world.cli("customers", "import", str(bad), expect=2)
    assert "nothing imported, 3 bad row(s)" in out.stderr
    assert "line 2" in out.stderr and "line 3" in out.stderr and "line 4" in out.stderr
    assert "Traceback" not in out.output
    world.cli("customers", "add", "Hooli", "--domain", "hooli.xyz")
    world.cli("contacts", "add", "Gavin@Hooli.xyz", "--customer", "Hooli", "--name", "Gavin")
    out = world.cli("contacts", "add", "g@x.com", "--customer", "Nobody", expect=2)
    assert "no customer 'Nobody'" in out.stderr


def test_a_contact_matches_by_any_of_its_addresses(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV + "Acme Corp,,Wile Coyote,w.coyote@gmail.com\n")
    contacts = {r["address"]: r["contact_id"] for r in _participants_after_sync(world)}
    assert contacts["w.coyote@gmail.com"] == contacts["wile@acme.com"] is not None


def _participants_after_sync(world: World) -> list[dict[str, object]]:
    world.deliver("alice", _inbound(1))
    world.deliver("alice", _inbound(2, sender="Wile <W.Coyote@gmail.com>"))
    world.cli("sync")
    records = world.records()
    assert all(
        r["customers"] == [{"id": 1, "name": "Acme Corp", "link": "contact"}] for r in records
    )
    return [p for r in records for p in r["participants"] if p["role"] == "from"]


def test_check_reports_capabilities_folders_and_problems(world: World) -> None:
    world.rep("alice")
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Archive"]}})
    out = world.cli("check", expect=1)
    assert (
        "login: ok" in out.stdout and "IDLE: yes" in out.stdout and "CONDSTORE: yes" in out.stdout
    )
    assert "folders: " in out.stdout and "Sent" in out.stdout
    assert (
        "PROBLEM: folder 'Archive' does not exist" in out.stdout
        and "fix: set folders" in out.stdout
    )
    world.write_config()
    assert "all mailboxes and calendars ok" in world.cli("check").stdout
    assert world.records() == []  # check captures nothing


def test_large_folders_are_read_a_uid_window_at_a_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.engine.imap import mail_sync

    monkeypatch.setattr(mail_sync, "UID_WINDOW", 4)
    world.rep("alice")
    world.write_config(capture="batch_size = 3")
    for n in range(10):
        world.deliver("alice", _inbound(n))
    assert "10 captured" in world.cli("sync").stdout
    for n in range(10, 13):
        world.deliver("alice", _inbound(n))
    assert "3 captured" in world.cli("sync").stdout
    assert sorted(r["sources"][0]["uid"] for r in world.records()) == list(range(1, 14))


def test_an_unchanged_folder_is_recorded_as_synced_with_its_mailbox(world: World) -> None:
    # An unchanged folder's success is written in the mailbox's closing transaction, not in
    # one of its own: it must still be written, for each folder, every pass.
    from sqlalchemy import create_engine, select

    from syncd.schema.tables import source_states

    world.rep("alice")
    world.deliver("alice", _inbound(1))
    world.cli("sync")

    def successes() -> dict[str, object]:
        engine = create_engine(world.db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(source_states.c.place, source_states.c.last_success_at).where(
                        source_states.c.source == "alice"
                    )
                ).all()
        finally:
            engine.dispose()
        return {place: at for place, at in rows}

    first = successes()
    assert {"", "INBOX"} <= set(first) and all(first.values())
    world.cli("sync")  # nothing new: every folder is unchanged
    second = successes()
    assert set(second) == set(first)
    assert all(second[place] > first[place] for place in first), (first, second)  # type: ignore[operator]
