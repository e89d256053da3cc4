"""A calendar quarantine entry lives as long as its object does, and only the object's own
fault puts it there: a bug of ours while building meetings is raised, not hidden."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from syncd.config_file import load_config
from syncd.engine.calendar_sync import CalendarSync
from syncd.schema.tables import quarantine
from syncd.store.database import open_database
from tests.conftest import World
from tests.fakes import FakeCalendarServer
from tests.integration.test_calendar_engine import BROKEN_RULE as BROKEN
from tests.integration.test_calendar_engine import GOOD


def _world(world: World) -> None:
    world.write_config()
    world.config_path.write_text(
        world.config_path.read_text()
        + '\n[[calendar]]\nname = "alice-cal"\nowner = "alice@example.com"\n'
        'url = "https://dav.invalid/"\nusername = "alice"\npassword = "x"\n'
    )


def test_a_deleted_object_leaves_the_quarantine(world: World) -> None:
    _world(world)
    config = load_config(world.config_path)
    engine = open_database(config.database.url)
    server = FakeCalendarServer("https://dav.invalid/", "alice")
    server.make_calendar("work", "Work")
    server.put("work", "good.ics", GOOD)
    server.put("work", "broken.ics", BROKEN)

    def held() -> list[str]:
        with engine.connect() as conn:
            rows = conn.execute(select(quarantine.c.item).where(quarantine.c.kind == "calendar"))
            return [str(item) for (item,) in rows]

    sync = CalendarSync(engine, config, opener=server.session)
    (first,) = sync.run_once()
    assert first.ok and held() == ["/alice/work/broken.ics"]
    server.delete("work", "broken.ics")
    (second,) = sync.run_once()
    assert second.ok and held() == []  # gone from the server: nothing left to report
    engine.dispose()


def test_a_bug_while_building_meetings_is_raised_not_quarantined(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(world)
    config = load_config(world.config_path)
    engine = open_database(config.database.url)
    server = FakeCalendarServer("https://dav.invalid/", "alice")
    server.make_calendar("work", "Work")
    server.put("work", "good.ics", GOOD)

    def broken_code(*_args: object) -> None:
        raise AttributeError("a bug of ours")

    monkeypatch.setattr(CalendarSync, "_item", broken_code)
    with pytest.raises(AttributeError):
        CalendarSync(engine, config, opener=server.session).run_once()
    with engine.connect() as conn:
        assert conn.execute(select(quarantine)).all() == []  # the good object is not blamed
    engine.dispose()
