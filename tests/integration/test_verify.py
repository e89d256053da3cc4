"""`syncd verify` and `syncd sync --repair` against the real Dovecot and Radicale.

Every UID and calendar object the server lists is accounted for: a record, skipped by a
named rule, quarantined, pending, or missing; missing ones fail the command until a repair
fetches them through the normal capture path.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, func, select, update

from syncd.schema.tables import (
    calendar_objects,
    folder_cursors,
    meeting_sources,
    provenance,
    quarantine,
    skipped_messages,
)
from tests.conftest import World
from tests.mail import make_message
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV


def _inbound(n: int, **kw: Any) -> bytes:
    return make_message(message_id=f"<in{n}@acme.com>", subject=f"Question {n}", **kw)


def _verify(world: World, *args: str, expect: int = 0) -> dict[str, Any]:
    result = world.cli("verify", "--json", *args, expect=expect)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _place(report: dict[str, Any], source: str, place: str) -> dict[str, Any]:
    (found,) = [
        p
        for s in report["sources"]
        if s["source"] == source
        for p in s["places"]
        if p["place"] == place
    ]
    return found  # type: ignore[no-any-return]


def _execute(db_url: str, *statements: Any) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)
    engine.dispose()


def _scalar(db_url: str, query: Any) -> Any:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        value = conn.scalar(query)
    engine.dispose()
    return value


def _mailbox_with_every_outcome(world: World) -> None:
    """UIDs 1-7: three records, one each of bulk, internal and auto-submitted, one quarantined."""
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.deliver("alice", _inbound(1))
    world.deliver("alice", _inbound(2, headers={"List-Id": "<news.acme.com>"}))
    world.deliver("alice", _inbound(3))
    world.deliver(
        "alice",
        make_message(sender="Bob <bob@example.com>", message_id="<int1@example.com>"),
    )
    world.deliver("alice", b"\x00\x01 not a message \xff\r\n\r\n\x00")
    world.deliver("alice", _inbound(6, headers={"Auto-Submitted": "auto-replied"}))
    world.deliver("alice", _inbound(7))
    out = world.cli("sync").stdout
    assert "alice: 3 captured, 3 skipped, 1 quarantined" in out


@pytest.mark.dovecot
def test_verify_accounts_for_every_uid_and_repair_fetches_what_is_missing(world: World) -> None:
    _mailbox_with_every_outcome(world)

    report = _verify(world)
    inbox = _place(report, "alice", "INBOX")
    assert {k: inbox[k] for k in ("server", "recorded", "skipped", "quarantined", "pending")} == {
        "server": 7,
        "recorded": 3,
        "skipped": 3,
        "quarantined": 1,
        "pending": 0,
    }
    assert inbox["skipped_by_rule"] == {"auto-submitted": 1, "bulk": 1, "internal": 1}
    assert inbox["missing"] == 0 and inbox["missing_items"] == []
    assert report["sources"][0]["kind"] == "mailbox" and report["sources"][0]["missing"] == 0
    assert inbox["unchanged"] is False
    # Nothing changed on the server or in the store: the listing is skipped, counts are kept.
    again = _place(_verify(world), "alice", "INBOX")
    assert again["unchanged"] is True and again["recorded"] == 3 and again["skipped"] == 3

    # A record's source row is lost: verify notices though the server did not change.
    _execute(world.db_url, delete(provenance).where(provenance.c.uid == 3))
    report = _verify(world, expect=1)
    assert _place(report, "alice", "INBOX")["missing_items"] == [3]
    assert report["sources"][0]["missing"] == 1
    table = world.cli("verify", expect=1)
    assert "skipped in alice/INBOX by rule: auto-submitted 1, bulk 1, internal 1" in table.stdout
    assert "missing in alice/INBOX: UIDs 3" in table.stdout
    assert "NOT COMPLETE: 1 missing (fetch them: syncd sync --repair)" in table.stderr

    repaired = world.cli("sync", "--repair").stdout
    assert "repair alice/INBOX: 1 missing, 1 captured, 0 skipped, 0 quarantined" in repaired
    assert "repair: every message and event is accounted for" in repaired
    assert _place(_verify(world), "alice", "INBOX")["recorded"] == 3
    people = world.cli("verify").stdout
    assert "complete: every message" in people
    assert "unchanged since the last clean verify: alice/INBOX" in people


@pytest.mark.dovecot
def test_a_lost_batch_below_the_cursor_is_missing_and_new_mail_is_pending(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.deliver("alice", _inbound(1))
    world.cli("sync")
    # A batch whose cursor moved but whose messages never arrived: the cursor says 2 is done.
    world.deliver("alice", _inbound(2))
    _execute(world.db_url, update(folder_cursors).values(last_uid=2))
    world.deliver("alice", _inbound(3))  # above the cursor: the next sync's work, not missing
    inbox = _place(_verify(world, "--mailbox", "alice", expect=1), "alice", "INBOX")
    assert (inbox["server"], inbox["recorded"], inbox["pending"]) == (3, 1, 1)
    assert inbox["missing_items"] == [2]
    out = world.cli("sync", "--repair").stdout
    assert "repair alice/INBOX: 1 missing, 1 captured" in out
    inbox = _place(_verify(world), "alice", "INBOX")
    assert (inbox["recorded"], inbox["pending"], inbox["missing"]) == (3, 0, 0)
    assert len(world.records()) == 3


@pytest.mark.dovecot
def test_messages_captured_before_skips_were_recorded_are_decided_again(world: World) -> None:
    _mailbox_with_every_outcome(world)
    # As a database captured by an older syncd: skips were only counted.
    _execute(world.db_url, delete(skipped_messages))
    inbox = _place(_verify(world), "alice", "INBOX")
    assert inbox["skipped_by_rule"] == {"auto-submitted": 1, "bulk": 1, "internal": 1}
    assert inbox["missing"] == 0
    # The rules are now on record: the next verify reads them from the store.
    assert _scalar(world.db_url, select(func.count()).select_from(skipped_messages)) == 3


@pytest.mark.dovecot
def test_unknown_names_are_refused_without_a_traceback(world: World) -> None:
    world.rep("alice")
    world.write_config()
    for args, what in (
        (("--mailbox", "nobody"), "no [[mailbox]] named 'nobody'"),
        (("--calendar", "nowhere"), "no [[calendar]] named 'nowhere'"),
    ):
        result = world.cli("verify", *args, expect=2)
        assert f"error: {what}" in result.stderr
        assert "Traceback" not in result.output
    refused = world.cli("sync", "--repair", "--mailbox", "x", expect=2).stderr
    assert (
        "error: no [[mailbox]] named 'x'" in refused
        and "hint: mailboxes in the config: alice" in refused
    )


@pytest.mark.dovecot
def test_a_source_that_cannot_be_verified_fails_with_its_reason(world: World) -> None:
    world.rep("alice")
    world.deliver("alice", _inbound(1))
    wrong = world.tmp / "wrong.pass"
    wrong.write_text("not-the-password\n")
    world.write_config(mailbox={"alice": {"password_file": str(wrong)}})
    result = world.cli("verify", expect=1)
    assert "mailbox alice: NOT VERIFIED: mailbox alice" in result.stdout
    assert "refused the login" in result.stdout
    assert "1 source(s) could not be verified" in result.stderr
    assert "Traceback" not in result.output and "not-the-password" not in result.output
    (source,) = _verify(world, expect=1)["sources"]
    assert source["error"] and source["missing"] == 0 and source["places"] == []


TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _event(uid: str, day: datetime, attendee: str = "wile@acme.com") -> str:
    start = (day + timedelta(hours=10)).strftime("%Y%m%dT%H%M%SZ")
    end = (day + timedelta(hours=11)).strftime("%Y%m%dT%H%M%SZ")
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n"
        "SUMMARY:Review\r\nORGANIZER:mailto:alice@example.com\r\n"
        f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{attendee}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@pytest.mark.radicale
def test_calendar_objects_are_accounted_for_and_repaired(world: World, radicale: Radicale) -> None:
    world.cal_rep("alice", radicale)
    world.write_config()
    world.customers(CUSTOMERS_CSV)
    world.seed_events(
        "alice",
        {
            "a.ics": _event("a", TODAY + timedelta(days=1)),
            "b.ics": _event("b", TODAY + timedelta(days=2)),
            "c.ics": _event("c", TODAY - timedelta(days=3)),
            "internal.ics": _event("int", TODAY, attendee="bob@example.com"),
            "old.ics": _event("old", TODAY - timedelta(days=400)),  # outside the window
        },
    )
    world.cli("sync")
    world.cli("sync")  # the second sync brings the sync token
    work = _place(_verify(world), "alice-cal", "Work")
    assert {k: work[k] for k in ("server", "recorded", "quarantined", "pending", "missing")} == {
        "server": 4,
        "recorded": 4,  # the internal meeting is known, with no record
        "quarantined": 0,
        "pending": 0,
        "missing": 0,
    }
    assert _place(_verify(world), "alice-cal", "Work")["unchanged"] is True

    # A new event on the server since the last sync: pending, the next sync reads it.
    world.put_event("alice", "d.ics", _event("d", TODAY + timedelta(days=4)))
    work = _place(_verify(world, "--calendar", "alice-cal"), "alice-cal", "Work")
    assert (work["server"], work["pending"], work["missing"]) == (5, 1, 0)
    world.cli("sync")

    # One object held in quarantine, one lost from the store while the server kept it.
    href_b = f"/{world.cal_logins['alice']}/work/b.ics"
    href_c = f"/{world.cal_logins['alice']}/work/c.ics"
    url = _scalar(world.db_url, select(calendar_objects.c.url).limit(1))
    _execute(
        world.db_url,
        quarantine.insert().values(
            kind="calendar",
            source="alice-cal",
            place=url,
            item=href_c,
            version='"x"',
            reason="test",
            created_at=TODAY,
        ),
        delete(meeting_sources).where(meeting_sources.c.href == href_b),
        delete(calendar_objects).where(calendar_objects.c.href.in_([href_b, href_c])),
    )
    report = _verify(world, "--calendar", "alice-cal", expect=1)
    work = _place(report, "alice-cal", "Work")
    assert work["missing_items"] == [href_b]
    assert (work["recorded"], work["quarantined"]) == (3, 1)
    assert f"missing in alice-cal/Work: objects {href_b}" in world.cli("verify", expect=1).stdout

    out = world.cli("sync", "--repair").stdout
    assert "repair alice-cal/Work: 1 missing" in out
    assert "repair: every message and event is accounted for" in out
    work = _place(_verify(world), "alice-cal", "Work")
    assert (work["recorded"], work["quarantined"], work["missing"]) == (5, 0, 0)
    assert (
        _scalar(
            world.db_url,
            select(func.count())
            .select_from(meeting_sources)
            .where(meeting_sources.c.href == href_b),
        )
        == 1
    )
