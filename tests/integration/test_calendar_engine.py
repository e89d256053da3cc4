"""The calendar engine's handling of objects a server may hand out but nobody can read.

Radicale validates what it stores, so it never serves a broken object; other servers do.
This drives the real engine and database with the in-memory fake (tests/fakes.py, held to
the same contract as Radicale in tests/contract/) serving one beside a good object; the
engine reads good objects from the real server in test_meetings.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from syncd.config_file import load_config
from syncd.engine.calendar_sync import CalendarSync
from syncd.store.database import open_database
from tests.conftest import World
from tests.fakes import FakeCalendarServer

DAY = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y%m%d")
GOOD = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:good-1\r\nDTSTAMP:20240101T000000Z\r\n"
    f"DTSTART:{DAY}T090000Z\r\nDTEND:{DAY}T100000Z\r\nSUMMARY:Good\r\nATTENDEE:mailto:wile@acme.com\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)
BROKEN_RULE = GOOD.replace("UID:good-1", "UID:bad-1").replace(
    "SUMMARY:Good", "RRULE:FREQ=SOMETIMES"
)


@pytest.mark.parametrize("broken", [BROKEN_RULE, "this is not iCalendar at all"])
def test_broken_objects_are_quarantined_and_never_stop_the_calendar(
    world: World, broken: str
) -> None:
    world.write_config()
    text = world.config_path.read_text() + (
        '\n[[calendar]]\nname = "alice-cal"\nowner = "alice@example.com"\n'
        'url = "https://dav.invalid/"\nusername = "alice"\npassword = "x"\n'
    )
    world.config_path.write_text(text)
    config = load_config(world.config_path)
    engine = open_database(config.database.url)
    server = FakeCalendarServer("https://dav.invalid/", "alice")
    server.make_calendar("work", "Work")
    server.put("work", "good.ics", GOOD)
    server.put("work", "bad.ics", broken)

    (result,) = CalendarSync(engine, config, opener=server.session).run_once()
    assert (
        result.ok
        and result.calendars["Work"]["created"] == 1
        and result.calendars["Work"]["quarantined"] == 1
    )
    status = json.loads(world.cli("status", "--json", expect=3).stdout)["sources"]
    (cal,) = [s for s in status if s.get("calendar") == "alice-cal"]
    assert cal["quarantined"][0]["href"] == "/alice/work/bad.ics"
    assert (
        "recurrence" in cal["quarantined"][0]["reason"]
        or "iCalendar" in cal["quarantined"][0]["reason"]
    )
    # Not fetched again until it changes, and the good meeting is not duplicated.
    (again,) = CalendarSync(engine, config, opener=server.session).run_once()
    assert again.calendars["Work"] == {"created": 0, "updated": 0, "cancelled": 0, "quarantined": 0}
    assert [r["ical_uid"] for r in world.records("--kind", "meeting")] == ["good-1"]
    engine.dispose()
