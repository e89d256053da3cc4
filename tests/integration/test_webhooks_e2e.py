"""Capture and webhooks together: real Dovecot (IDLE), Radicale, SQLite and PostgreSQL,
`syncd run` as a subprocess and the real verifying receiver.  What the receiver gets is
exactly what `records list --json` / `tasks list --json` prints, in order per record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import World
from tests.daemon import DaemonProcess, wait_until
from tests.integration.test_privacy import ADDRESS, NAME, _traces
from tests.mail import make_message
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV
from tests.servers.webhook import Receiver, new_secret

pytestmark = [pytest.mark.dovecot, pytest.mark.daemon]


@pytest.fixture
def crm(world: World) -> Iterator[Receiver]:
    secret = new_secret()
    (world.tmp / "crm.secret").write_text(secret)
    receiver = Receiver(secret)
    yield receiver
    receiver.stop()


def _webhook(world: World, crm: Receiver, extra: str = "") -> str:
    return (
        f'[[webhook]]\nname = "crm"\nurl = "{crm.url}"\n'
        f'secret_file = "{world.tmp / "crm.secret"}"\ntimeout = 5\n{extra}'
    )


def _arrived(crm: Receiver, type_: str, subject_id: int | None = None) -> list[dict[str, Any]]:
    """Accepted events of ``type_`` (about record/task ``subject_id``), first copies only."""
    seen: set[str] = set()
    found = []
    for arrival in crm.accepted():
        event = arrival.event
        if arrival.webhook_id in seen or event["type"] != type_:
            continue
        seen.add(arrival.webhook_id)
        if subject_id is None or event["data"].get("id") == subject_id:
            found.append(event)
    return found


def _one(
    crm: Receiver, type_: str, subject_id: int | None, what: str, *, after: int = 0
) -> dict[str, Any]:
    """The newest such event, once more than ``after`` of them have arrived (a subject
    updated earlier in the test has older events the new one must not be mistaken for)."""
    wait_until(lambda: len(_arrived(crm, type_, subject_id)) > after, 20, what)
    return _arrived(crm, type_, subject_id)[-1]


def _by_id(world: World, *args: str) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in world.records(*args)}


def _ics(uid: str, start: datetime, sequence: int = 0) -> str:
    stamp = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start.strftime(stamp)}\r\n"
        f"DTEND:{(start + timedelta(hours=1)).strftime(stamp)}\r\nSUMMARY:Review {uid}\r\n"
        f"SEQUENCE:{sequence}\r\nORGANIZER:mailto:alice@example.com\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:wile@acme.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def _in_order_per_subject(crm: Receiver) -> None:
    """Events about one record or task reach the receiver in the order they were made."""
    last: dict[str, int] = {}
    for arrival in crm.accepted():
        event = arrival.event
        subject = f"{event['type'].split('.')[0]}:{event['data'].get('id')}"
        number = int(arrival.webhook_id)
        assert number >= last.get(subject, 0), f"{subject}: {number} after {last[subject]}"
        last[subject] = number


@pytest.mark.radicale
def test_the_daemon_delivers_what_it_captures_and_forget_leaves_no_trace(
    world: World, radicale: Radicale, crm: Receiver
) -> None:
    world.rep("alice")
    world.cal_rep("alice", radicale)
    world.customers(CUSTOMERS_CSV)
    crm.start()
    world.write_config(
        capture="past_days = 3650\nfuture_days = 3650",
        # Calendars are polled every second (mail comes by IDLE); the follow-up timer, with
        # the outbox's upkeep, every 10 s.
        extra="[sync]\ninterval = 1\njitter = 0\n\n[tasks]\ninterval = 10\n\n"
        + _webhook(world, crm),
    )
    daemon = DaemonProcess(world.config_path, world.tmp / "daemon.log")
    try:
        daemon.start()
        # 1. Mail delivered while the daemon waits in IDLE: record.created = records list.
        world.deliver("alice", make_message(sender=f"{NAME} <{ADDRESS}>", message_id="<z1@q.io>"))
        world.deliver(
            "alice",
            make_message(cc=f"{NAME} <{ADDRESS}>", message_id="<w1@acme.com>", subject="Seats"),
        )
        wait_until(lambda: len(_arrived(crm, "record.created")) == 2, 20, "both mails")
        records = _by_id(world)
        ids = {r["message_id"]: i for i, r in records.items()}
        for event in _arrived(crm, "record.created"):
            assert event["data"] == records[event["data"]["id"]]
            assert set(event) == {"id", "type", "created_at", "data"}

        # 2. A meeting PUT into Radicale, then moved.
        day = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
        world.put_event("alice", "m.ics", _ics("m", day))
        wait_until(lambda: len(_arrived(crm, "record.created")) == 3, 20, "the meeting")
        meeting = _arrived(crm, "record.created")[-1]
        assert meeting["data"]["kind"] == "meeting"
        mid = meeting["data"]["id"]
        assert meeting["data"] == _by_id(world, "--kind", "meeting")[mid]
        world.put_event("alice", "m.ics", _ics("m", day + timedelta(hours=3), sequence=1))
        moved = _one(crm, "record.updated", mid, "the meeting moved")
        assert moved["data"]["starts_at"] == (day + timedelta(hours=3)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        assert moved["data"] == _by_id(world, "--kind", "meeting")[mid]

        # 3. Reconciliation: the unknown sender becomes Initech's; her record is updated.
        zora_only = ids["z1@q.io"]
        world.cli("reconcile", "assign", ADDRESS, "--customer", "Initech")
        assigned = _one(crm, "record.updated", zora_only, "the assignment")
        assert [c["name"] for c in assigned["data"]["customers"]] == ["Initech"]
        assert assigned["data"] == _by_id(world)[zora_only]

        # 4. A task made and done by hand.
        world.cli(
            "tasks", "add", "--customer", "Initech", "--owner", "alice@example.com",
            "--title", "Send the contract", "--due", (day + timedelta(days=3)).date().isoformat(),
        )  # fmt: skip
        (task,) = json.loads(world.cli("tasks", "list", "--json").stdout)
        world.cli("tasks", "done", str(task["id"]))
        done = _one(crm, "task.updated", task["id"], "the task done")
        assert done["data"]["status"] == "done"
        assert (
            done["data"]
            == json.loads(world.cli("tasks", "list", "--json", "--status", "done").stdout)[0]
        )

        # 5. The CRM renames Acme Corp (case only): the mirror updates the linked meeting.
        path = world.tmp / "renamed.csv"
        path.write_text(CUSTOMERS_CSV.replace("Acme Corp", "ACME Corp"))
        world.cli("customers", "import", str(path), "--mirror")
        wait_until(
            lambda: any(
                "ACME Corp" in [c["name"] for c in e["data"]["customers"]]
                for e in _arrived(crm, "record.updated", mid)
            ),
            20,
            "the rename announced",
        )
        assert _arrived(crm, "record.updated", mid)[-1]["data"] == _by_id(world)[mid]

        # 6. Forget: the record she alone made goes, the other is rewritten, the CRM told.
        # w1 was updated before (Zora, its cc, was assigned to Initech): wait for a new one.
        updated_before = len(_arrived(crm, "record.updated", ids["w1@acme.com"]))
        world.cli("forget", ADDRESS, "--yes")
        _one(crm, "record.deleted", zora_only, "the deletion")
        kept = _one(crm, "record.updated", ids["w1@acme.com"], "the rewrite", after=updated_before)
        assert (
            ADDRESS not in json.dumps(kept["data"])
            and kept["data"] == _by_id(world)[ids["w1@acme.com"]]
        )
        forgotten = _one(crm, "contact.forgotten", None, "the erasure")
        assert forgotten["data"] == {"address": ADDRESS}

        # Delivered everywhere, the next upkeep deletes contact.forgotten: no trace left.
        engine = create_engine(world.db_url)

        def forgotten_rows() -> int:
            with engine.connect() as conn:
                query = "SELECT count(*) FROM events WHERE type = 'contact.forgotten'"
                return int(conn.scalar(text(query)) or 0)

        try:
            wait_until(lambda: forgotten_rows() == 0, 25, "contact.forgotten deleted")
        finally:
            engine.dispose()
        wait_until(lambda: _traces(world.db_url, world.tmp) == [], 10, "no trace of her")

        assert crm.bad_signatures == 0 and crm.accepted()
        _in_order_per_subject(crm)
        code, _took = daemon.stop()
        assert code == 0
    finally:
        daemon.close()


def test_cron_mode_since_skips_the_old_and_a_down_endpoint_fails_the_run(
    world: World, crm: Receiver
) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(
        capture="past_days = 3650",
        extra="[sync]\ndeliver_timeout = 2\n\n" + _webhook(world, crm, "since = 2025-01-01\n"),
    )
    old = datetime(2024, 6, 3, 9, tzinfo=UTC)
    new = datetime(2026, 3, 2, 9, tzinfo=UTC)
    for n, when in enumerate([old, new, old, new]):
        world.deliver("alice", make_message(message_id=f"<b{n}@acme.com>", date=when))

    down = world.cli("sync", expect=1).output  # the receiver is not listening
    assert "webhook crm: FAILED" in down and "Traceback" not in down
    assert len(world.records()) == 4  # capture itself went on

    crm.start()
    world.write_config(
        capture="past_days = 3650",
        extra="[sync]\ndeliver_timeout = 30\n\n" + _webhook(world, crm, "since = 2025-01-01\n"),
    )
    up = world.cli("sync").output
    assert "webhooks: everything delivered (crm)" in up
    records = _by_id(world)
    recent = {i for i, r in records.items() if r["message_id"] in ("b1@acme.com", "b3@acme.com")}
    sent = _arrived(crm, "record.created")
    assert {e["data"]["id"] for e in sent} == recent
    assert all(e["data"] == records[e["data"]["id"]] for e in sent)

    # Forget in cron mode: the sync that delivers contact.forgotten also deletes it.
    world.deliver(
        "alice", make_message(sender=f"{NAME} <{ADDRESS}>", message_id="<z@q.io>", date=new)
    )
    world.cli("sync")
    world.cli("forget", ADDRESS, "--yes")
    assert _traces(world.db_url, world.tmp)  # the contact.forgotten event, until delivered
    world.cli("sync")
    assert [e["data"] for e in _arrived(crm, "contact.forgotten")] == [{"address": ADDRESS}]
    assert len(_arrived(crm, "record.deleted")) == 1
    assert _traces(world.db_url, world.tmp) == []
    assert crm.bad_signatures == 0
