"""A copy of a meeting from another organizer (a reused or spoofed UID) never rewrites it.

The first organizer seen for a UID owns its record; a copy naming a different organizer
becomes a record of its own (it is still real mail to a rep), on a real Radicale, into
SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import World
from tests.servers.radicale import Radicale

pytestmark = pytest.mark.radicale

CUSTOMERS = (
    "customer,domains,contact_name,contact_email\nAcme Corp,acme.com,Wile Coyote,wile@acme.com\n"
)
START = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=2)


def invitation(organizer: str, summary: str, attendee: str, *, sequence: int = 0) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        "UID:real-meeting-1@example.com\r\nDTSTAMP:20240101T000000Z\r\n"
        f"DTSTART:{START:%Y%m%dT%H%M%SZ}\r\nDTEND:{START + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\n"
        f"SEQUENCE:{sequence}\r\nSUMMARY:{summary}\r\nORGANIZER:mailto:{organizer}\r\n"
        f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{attendee}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def test_a_reused_uid_from_another_organizer_never_rewrites_the_meeting(
    world: World, radicale: Radicale
) -> None:
    world.cal_rep("alice", radicale)
    world.cal_rep("bob", radicale)
    world.write_config()
    world.customers(CUSTOMERS)
    world.put_event("alice", "real.ics", invitation("alice@example.com", "Review", "wile@acme.com"))
    world.cli("sync")
    (real,) = world.records("--kind", "meeting")
    # The spoof: the same UID, a later SEQUENCE, from someone else, in another rep's calendar.
    spoof = invitation("mallory@evil.example", "Wire the money", "wile@acme.com", sequence=9)
    world.put_event("bob", "spoof.ics", spoof)
    world.cli("sync")
    found = {r["id"]: r for r in world.records("--kind", "meeting")}
    assert found[real["id"]]["subject"] == "Review"
    assert found[real["id"]]["organizer"] == "alice@example.com"
    (other,) = [r for i, r in found.items() if i != real["id"]]
    assert other["subject"] == "Wire the money" and other["organizer"] == "mallory@evil.example"
    assert other["ical_uid"] == real["ical_uid"]
    # The owner's own update still applies to the real record, never to the spoof's.
    world.put_event(
        "alice",
        "real.ics",
        invitation("alice@example.com", "Review v2", "wile@acme.com", sequence=1),
    )
    world.cli("sync")
    found = {r["id"]: r for r in world.records("--kind", "meeting")}
    assert len(found) == 2
    assert found[real["id"]]["subject"] == "Review v2"
    assert found[other["id"]]["subject"] == "Wire the money"


def test_a_forgotten_organizer_still_owns_the_meeting(world: World, radicale: Radicale) -> None:
    # Forgetting the organizer used to leave the record with no organizer at all, and the
    # next copy of its UID from anyone took it over.
    world.cal_rep("alice", radicale)
    world.cal_rep("bob", radicale)
    world.write_config()
    world.customers(CUSTOMERS)
    # Wile organizes; Road Runner (acme.com too) keeps the record with its customer.
    world.put_event("alice", "real.ics", invitation("wile@acme.com", "Review", "rr@acme.com"))
    world.cli("sync")
    (real,) = world.records("--kind", "meeting")
    world.cli("forget", "wile@acme.com", "--yes")
    (kept,) = world.records("--kind", "meeting")
    label = str(kept["organizer"])
    assert kept["id"] == real["id"] and label.startswith("hmac:") and "wile" not in label
    spoof = invitation("mallory@evil.example", "Wire the money", "rr@acme.com", sequence=9)
    world.put_event("bob", "spoof.ics", spoof)
    world.cli("sync")
    found = {r["id"]: r for r in world.records("--kind", "meeting")}
    assert found[real["id"]]["subject"] == "Review" and found[real["id"]]["organizer"] == label
    (other,) = [r for i, r in found.items() if i != real["id"]]
    assert other["organizer"] == "mallory@evil.example"
    # The forgotten organizer's own update still reaches their record, under the same label.
    world.put_event(
        "alice", "real.ics", invitation("wile@acme.com", "Review v2", "rr@acme.com", sequence=1)
    )
    world.cli("sync")
    found = {r["id"]: r for r in world.records("--kind", "meeting")}
    assert len(found) == 2
    assert found[real["id"]]["subject"] == "Review v2" and found[real["id"]]["organizer"] == label
    assert found[other["id"]]["subject"] == "Wire the money"
