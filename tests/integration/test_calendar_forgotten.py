"""A meeting captured after `syncd forget` does not name the forgotten attendee in its
summary either (mail redacts subjects; meetings did not)."""

from __future__ import annotations

from syncd.config_file import load_config
from syncd.engine.calendar_sync import CalendarSync
from syncd.store.database import open_database
from tests.conftest import World
from tests.fakes import FakeCalendarServer
from tests.integration.test_calendar_engine import GOOD


def test_a_forgotten_attendee_is_redacted_from_new_meeting_summaries(world: World) -> None:
    world.write_config()
    world.config_path.write_text(
        world.config_path.read_text()
        + '\n[[calendar]]\nname = "alice-cal"\nowner = "alice@example.com"\n'
        'url = "https://dav.invalid/"\nusername = "alice"\npassword = "x"\n'
    )
    world.cli("forget", "zora@quill.io", "--yes")
    meeting = GOOD.replace("SUMMARY:Good", "SUMMARY:Demo for Zora Quill").replace(
        "END:VEVENT", "ATTENDEE;CN=Zora Quill:mailto:zora@quill.io\r\nEND:VEVENT"
    )
    config = load_config(world.config_path)
    engine = open_database(config.database.url)
    server = FakeCalendarServer("https://dav.invalid/", "alice")
    server.make_calendar("work", "Work")
    server.put("work", "demo.ics", meeting)

    (result,) = CalendarSync(engine, config, opener=server.session).run_once()
    engine.dispose()
    assert result.ok
    (record,) = world.records("--kind", "meeting")
    assert record["subject"] == "Demo for [forgotten]", record["subject"]
    assert all("quill" not in str(p).lower() for p in record.get("participants", []))
