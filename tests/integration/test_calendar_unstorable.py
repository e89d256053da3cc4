"""Objects whose quarantine reason, href or etag the database would refuse (a NUL, a
length over the column) never fail the calendar: the reason is cleaned, the object that
cannot be keyed is skipped and logged, and the good events beside them are captured."""

from __future__ import annotations

from sqlalchemy import select

from syncd.config_file import load_config
from syncd.engine.calendar_sync import CalendarSync
from syncd.schema.tables import quarantine
from syncd.store.database import open_database
from tests.conftest import World
from tests.fakes import FakeCalendarServer
from tests.integration.test_calendar_engine import GOOD


def test_unstorable_reasons_hrefs_and_etags_never_stop_the_calendar(world: World) -> None:
    world.write_config()
    world.config_path.write_text(
        world.config_path.read_text()
        + '\n[[calendar]]\nname = "alice-cal"\nowner = "alice@example.com"\n'
        'url = "https://dav.invalid/"\nusername = "alice"\npassword = "x"\n'
    )
    config = load_config(world.config_path)
    engine = open_database(config.database.url)

    def variant(uid: str, line: str) -> str:
        return GOOD.replace("UID:good-1", f"UID:{uid}").replace(
            "END:VEVENT", f"{line}\r\nEND:VEVENT"
        )

    server = FakeCalendarServer("https://dav.invalid/", "alice")
    work = server.make_calendar("work", "Work")
    objects = {
        "/alice/work/good.ics": ('"1"', GOOD),
        # The readers' errors quote the value, NUL included.
        "/alice/work/dur.ics": ('"2"', variant("dur", "DURATION:P\x00bogus")),
        "/alice/work/until.ics": ('"3"', variant("until", "RRULE:FREQ=DAILY;UNTIL=2026\x00")),
        "/alice/work/" + "h" * 3000 + ".ics": ('"4"', variant("long-href", "")),
        "/alice/work/etag.ics": ('"' + "e" * 400 + '"', variant("etag", "")),
    }
    # Written straight into the server's store: etags and hrefs no server of ours would choose.
    for number, (href, found) in enumerate(objects.items(), 1):
        server.calendars[work].objects[href] = found
        server.calendars[work].history.append((number, href))

    for _ in range(2):  # and again: nothing is stuck
        (result,) = CalendarSync(engine, config, opener=server.session).run_once()
        assert result.ok, result
    stored = {str(r["ical_uid"]) for r in world.records("--kind", "meeting")}
    # The long href and etag are skipped; a reader may take "P\x00bogus" as no duration.
    assert "good-1" in stored and not stored & {"long-href", "etag", "until"}, stored
    with engine.connect() as conn:
        held = dict(
            conn.execute(
                select(quarantine.c.item, quarantine.c.reason).where(
                    quarantine.c.kind == "calendar"
                )
            ).all()
        )
    engine.dispose()
    assert "/alice/work/until.ics" in held and set(held) <= {
        "/alice/work/dur.ics",
        "/alice/work/until.ics",
    }, held
    assert all(reason and "\x00" not in reason for reason in held.values())
