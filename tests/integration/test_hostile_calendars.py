"""Hostile calendar objects on real CalDAV servers, into SQLite and PostgreSQL.

Radicale stores most of them (long UIDs, long organizers, bad SEQUENCE, NUL, huge
series); Xandikos stores the ones Radicale refuses (bad DURATION, a broken rule, 11 MB)
and then fails its own time-range query, as SabreDAV-based servers reportedly do.  In
every case the good events beside them are captured and only the bad object is held.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from syncd.domain.calendar_limits import (
    MAX_ATTENDEES,
    MAX_SUB_HOURLY_OCCURRENCES,
)
from syncd.schema.tables import participants, records
from tests.conftest import World
from tests.servers.radicale import Radicale
from tests.servers.xandikos import Xandikos

CUSTOMERS = (
    "customer,domains,contact_name,contact_email\nAcme Corp,acme.com,Wile Coyote,wile@acme.com\n"
)
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
SOON = TODAY + timedelta(days=3)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def ics(uid: str, *lines: str, start: datetime = SOON, summary: str = "Review") -> str:
    body = [
        f"UID:{uid}",
        "DTSTAMP:20240101T000000Z",
        f"DTSTART:{stamp(start + timedelta(hours=9))}",
        *(() if any(x.startswith("DURATION") for x in lines) else (
            f"DTEND:{stamp(start + timedelta(hours=10))}",
        )),
        f"SUMMARY:{summary}",
        "ATTENDEE;CN=Wile;PARTSTAT=ACCEPTED:mailto:wile@acme.com",
        *lines,
    ]  # fmt: skip
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        + "".join(f"{line}\r\n" for line in body)
        + "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def fold(line: str) -> str:
    """RFC 5545 folding, so servers accept long lines."""
    return "\r\n ".join(line[i : i + 70] for i in range(0, len(line), 70))


LONG_UID = "u" * 1200
LONG_ORGANIZER = "mailto:" + "o" * 1200 + "@acme.com"
# Right after the window's end (30 days on): the next start lies 1,000 steps further.
EXDATES = [stamp(TODAY + timedelta(days=29 + n, hours=9)) for n in range(1000)]

# On Radicale: everything it accepts.  (file name, object, what must come of it)
ON_RADICALE = {
    "good.ics": ics("good"),
    "sequence-abc.ics": ics("seq-abc", "SEQUENCE:abc"),
    "sequence-huge.ics": ics("seq-huge", "SEQUENCE:99999999999"),
    "long-uid.ics": ics(LONG_UID),
    "long-organizer.ics": ics("long-org", fold(f"ORGANIZER;CN=Mallory:{LONG_ORGANIZER}")),
    "nul.ics": ics("nul", summary="before\x00after"),
    "minutely.ics": ics("minutely", "RRULE:FREQ=MINUTELY", start=TODAY - timedelta(days=1)),
    "minutely-3000.ics": ics(
        "minutely-3000",
        "RRULE:FREQ=MINUTELY;COUNT=3000",
        "ORGANIZER;CN=Wile:mailto:wile@acme.com",
    ),
    "daily-1900.ics": ics(
        "daily-1900",
        "RRULE:FREQ=DAILY",
        *(f"EXDATE:{x}" for x in EXDATES),
        start=datetime(1900, 1, 1, tzinfo=UTC),
    ),
    "crowd.ics": ics(
        "crowd",
        "RRULE:FREQ=DAILY",
        *(f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:p{n}@acme.com" for n in range(2000)),
        start=TODAY - timedelta(days=60),
    ),
}


def quarantined(world: World) -> dict[str, str]:
    status = json.loads(world.cli("status", "--json", expect=None).stdout)["sources"]
    return {
        q["href"].rsplit("/", 1)[-1]: q["reason"]
        for s in status
        if s.get("calendar")
        for q in s["quarantined"]
    }


@pytest.mark.radicale
def test_hostile_objects_on_radicale_never_stop_the_calendar(
    world: World, radicale: Radicale
) -> None:
    world.cal_rep("alice", radicale)
    world.write_config()
    world.customers(CUSTOMERS)
    for name, body in ON_RADICALE.items():
        world.put_event("alice", name, body)
    started = time.monotonic()
    result = world.cli("sync", expect=None)
    took = time.monotonic() - started
    assert "FAILED" not in result.output, result.output
    assert took < 60, took
    meetings = world.records("--kind", "meeting", "--limit", "100000")
    by_uid: dict[str, list[dict[str, object]]] = {}
    for record in meetings:
        by_uid.setdefault(str(record["ical_uid"]), []).append(record)
    assert {"good", "seq-abc", "seq-huge", "long-org", "nul"} <= set(by_uid)
    # A long UID is kept as a prefix and a hash of the whole: it fits, and stays the same.
    (long_uid,) = [u for u in by_uid if u.startswith("uuuu")]
    assert len(long_uid) <= 255 and "~" in long_uid
    assert by_uid["long-org"][0]["organizer"] is None  # no address is 1,200 characters long
    assert by_uid["nul"][0]["subject"] == "beforeafter"
    assert len(by_uid["minutely"]) <= MAX_SUB_HOURLY_OCCURRENCES
    assert len(by_uid["minutely-3000"]) <= MAX_SUB_HOURLY_OCCURRENCES
    held = quarantined(world)
    assert held["minutely.ics"].startswith("capped: sub-hourly")
    assert held["crowd.ics"].startswith("capped:") and "attendees" in held["crowd.ics"]
    # DAILY from 1900 with 1,000 EXDATEs after the window: read, in well under a second.
    assert len(by_uid["daily-1900"]) >= 90
    engine = create_engine(world.db_url)
    with engine.connect() as conn:
        most = conn.scalar(
            select(func.count()).select_from(participants).group_by(participants.c.record_id)
            .order_by(func.count().desc()).limit(1)
        )  # fmt: skip
        stored = conn.scalar(select(func.count()).select_from(records))
    engine.dispose()
    assert most is not None and most <= MAX_ATTENDEES + 2  # attendees, organizer, owner
    assert stored is not None and stored < 2000
    # The next sync finds nothing new: nothing is fetched or counted twice.
    again = world.cli("sync", expect=None)
    assert "0 meetings new, 0 updated" in again.output, again.output


@pytest.fixture(scope="module")
def xandikos() -> Iterator[Xandikos]:
    with (
        tempfile.TemporaryDirectory(prefix="syncd-test-xandikos-") as root,
        Xandikos(Path(root)) as server,
    ):
        yield server


_SLUGS = iter(range(10_000))


def xandikos_calendar(world: World, server: Xandikos, objects: dict[str, str]) -> None:
    """A fresh Xandikos calendar holding ``objects``, configured as alice's calendar."""
    slug = f"cal{next(_SLUGS)}"
    server.make_calendar(slug, slug)
    for name, body in objects.items():
        server.put(slug, name, body)
    world.write_config()
    world.config_path.write_text(
        world.config_path.read_text()
        + '\n[[calendar]]\nname = "alice-cal"\nowner = "alice@example.com"\n'
        + f'url = "{server.url}"\nusername = "alice"\npassword = "ignored-by-xandikos"\n'
        + f'calendars = ["{slug}"]\n'
    )
    world.customers(CUSTOMERS)


ON_XANDIKOS = {
    "good.ics": ics("good"),
    "duration-bogus.ics": ics("dur", "DURATION:bogus"),
    "rule-bogus.ics": ics("rule", "RRULE:FREQ=SOMETIMES"),
    "eleven-mb.ics": ics("big", *(fold("DESCRIPTION:" + "x" * 11_000_000),)),
    "also-good.ics": ics("also-good", start=SOON + timedelta(days=1)),
}


@pytest.mark.xandikos
def test_a_server_failing_its_time_range_query_still_syncs(
    world: World, xandikos: Xandikos
) -> None:
    xandikos_calendar(world, xandikos, ON_XANDIKOS)
    result = world.cli("sync", expect=None)
    assert "FAILED" not in result.output, result.output
    uids = sorted(str(r["ical_uid"]) for r in world.records("--kind", "meeting"))
    assert uids == ["also-good", "good"]
    held = quarantined(world)
    assert set(held) == {"duration-bogus.ics", "rule-bogus.ics", "eleven-mb.ics"}, held
    assert "over the limit" in held["eleven-mb.ics"]
    # Later syncs list by token; nothing broken is fetched again, nothing is doubled.
    again = world.cli("sync", expect=None)
    assert "FAILED" not in again.output and "0 meetings new" in again.output, again.output


@pytest.mark.xandikos
def test_verify_on_a_server_failing_its_time_range_query_counts_the_broken_object(
    world: World, xandikos: Xandikos
) -> None:
    # Verify asked only the time-range query, which Xandikos answers with 500 while one
    # stored object is broken: verify failed at every run, forever.
    objects = {
        "good.ics": ics("good"),
        "rule-bogus.ics": ics("rule", "RRULE:FREQ=SOMETIMES"),
        "also-good.ics": ics("also-good", start=SOON + timedelta(days=1)),
    }
    xandikos_calendar(world, xandikos, objects)
    assert "FAILED" not in world.cli("sync", expect=None).output
    assert set(quarantined(world)) == {"rule-bogus.ics"}
    report = json.loads(world.cli("verify", "--json").stdout)
    (source,) = report["sources"]
    assert source["error"] is None and source["missing"] == 0, source
    (place,) = source["places"]
    assert place["error"] is None, place
    assert (place["server"], place["recorded"], place["quarantined"]) == (3, 2, 1), place
    assert "complete" in world.cli("verify").output


def _poison_store(url: str) -> None:
    """A database that refuses one meeting (a constraint syncd cannot know about), to prove
    that a store error on one object holds that object only."""
    engine = create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON records WHEN NEW.subject = 'Poison' "
                    "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
                )
            )
        else:
            conn.execute(
                text("ALTER TABLE records ADD CONSTRAINT poison CHECK (subject <> 'Poison')")
            )
    engine.dispose()


@pytest.mark.radicale
def test_a_store_error_on_one_object_holds_only_that_object(
    world: World, radicale: Radicale
) -> None:
    world.cal_rep("alice", radicale)
    world.write_config()
    world.customers(CUSTOMERS)
    _poison_store(world.db_url)
    for n in range(6):
        world.put_event("alice", f"ok{n}.ics", ics(f"ok{n}", start=SOON + timedelta(days=n)))
    world.put_event("alice", "poison.ics", ics("poison", summary="Poison"))
    result = world.cli("sync", expect=None)
    assert "FAILED" not in result.output, result.output
    uids = sorted(str(r["ical_uid"]) for r in world.records("--kind", "meeting"))
    assert uids == [f"ok{n}" for n in range(6)]
    held = quarantined(world)
    assert list(held) == ["poison.ics"] and "store refused" in held["poison.ics"]
    assert "Poison" not in held["poison.ics"] and "INSERT" not in held["poison.ics"]
