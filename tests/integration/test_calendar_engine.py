"""The calendar engine's handling of objects a server may hand out but nobody can read.

Radicale validates what it stores, so it never serves a broken object; other servers do.
This drives the real engine and database with a session that serves one, beside good
objects that the same engine reads from the real server in test_meetings.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from syncd.config import CalendarConfig, load_config
from syncd.connectors.dav import CalendarInfo, CalendarObject, Changes
from syncd.engine.calendar_sync import CalendarSync
from syncd.store.database import open_database
from tests.conftest import World

DAY = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y%m%d")
GOOD = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:good-1\r\nDTSTAMP:20240101T000000Z\r\n"
    f"DTSTART:{DAY}T090000Z\r\nDTEND:{DAY}T100000Z\r\nSUMMARY:Good\r\nATTENDEE:mailto:wile@acme.com\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)
BROKEN_RULE = GOOD.replace("UID:good-1", "UID:bad-1").replace(
    "SUMMARY:Good", "RRULE:FREQ=SOMETIMES"
)


class ServingSession:
    """Serves fixed objects through the CalDavSession interface the engine uses."""

    def __init__(self, objects: list[CalendarObject]) -> None:
        self.objects = objects
        self.requests = 0

    def discover(self) -> list[CalendarInfo]:
        return [CalendarInfo("https://dav.invalid/alice/work/", "Work")]

    def changes(
        self, url: str, token: str | None, known: dict[str, str], *, window: object = None
    ) -> Changes:
        self.requests += 1
        changed = [o for o in self.objects if known.get(o.href) != o.etag]
        return Changes("token-1", changed, [], "token")

    def close(self) -> None:
        pass


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
    session = ServingSession(
        [
            CalendarObject("/alice/work/good.ics", '"1"', GOOD),
            CalendarObject("/alice/work/bad.ics", '"2"', broken),
        ]
    )

    def opener(_: CalendarConfig) -> ServingSession:
        return session

    (result,) = CalendarSync(engine, config, opener=opener).run_once()  # type: ignore[arg-type]
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
    (again,) = CalendarSync(engine, config, opener=opener).run_once()  # type: ignore[arg-type]
    assert again.calendars["Work"] == {"created": 0, "updated": 0, "cancelled": 0, "quarantined": 0}
    assert [r["ical_uid"] for r in world.records("--kind", "meeting")] == ["good-1"]
    engine.dispose()
