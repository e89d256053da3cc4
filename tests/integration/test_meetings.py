"""Meeting capture against a real Radicale: recurrence, changes, cancellations, sharing, tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import World
from tests.servers.radicale import Radicale

pytestmark = pytest.mark.radicale

CUSTOMERS = (
    "customer,domains,contact_name,contact_email\nAcme Corp,acme.com,Wile Coyote,wile@acme.com\n"
)
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def stamp(day: datetime, hour: int = 10) -> str:
    return (day + timedelta(hours=hour)).strftime("%Y%m%dT%H%M%SZ")


def ics(*events: str) -> str:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n".replace(
            "\n\n", "\n"
        )
    )


def event(
    uid: str,
    start: datetime,
    *,
    extra: str = "",
    attendee: str = "wile@acme.com",
    summary: str = "Review",
) -> str:
    return "\r\n".join(
        line
        for line in [
            f"UID:{uid}",
            "DTSTAMP:20240101T000000Z",
            f"DTSTART:{stamp(start)}",
            f"DTEND:{stamp(start, 11)}",
            f"SUMMARY:{summary}",
            "ORGANIZER;CN=Alice:mailto:alice@example.com",
            f"ATTENDEE;CN=Wile;PARTSTAT=ACCEPTED:mailto:{attendee}",
            extra.strip(),
        ]
        if line
    )


def meetings(world: World, *args: str) -> list[dict[str, object]]:
    return sorted(world.records("--kind", "meeting", *args), key=lambda r: str(r["starts_at"]))


@pytest.fixture
def alice(world: World, radicale: Radicale) -> World:
    world.cal_rep("alice", radicale)
    world.write_config()
    world.customers(CUSTOMERS)
    return world


def test_recurring_meeting_with_override_and_exception(alice: World) -> None:
    start = TODAY - timedelta(days=14)
    weekly = event(
        "weekly-1",
        start,
        extra=f"RRULE:FREQ=WEEKLY;COUNT=5\r\nEXDATE:{stamp(start + timedelta(days=7))}",
    )
    moved = "\r\n".join(
        [
            "UID:weekly-1",
            "DTSTAMP:20240101T000000Z",
            f"RECURRENCE-ID:{stamp(start + timedelta(days=14))}",
            f"DTSTART:{stamp(start + timedelta(days=14), 15)}",
            f"DTEND:{stamp(start + timedelta(days=14), 16)}",
            "SUMMARY:Review (moved)",
            "ORGANIZER:mailto:alice@example.com",
            "ATTENDEE;PARTSTAT=ACCEPTED:mailto:wile@acme.com",
        ]
    )
    alice.seed_events(
        "alice",
        {
            "weekly.ics": ics(weekly, moved),
            "internal.ics": ics(event("int-1", TODAY, attendee="bob@example.com")),
        },
    )
    out = alice.cli("sync")
    assert "alice-cal: 4 meetings new" in out.stdout
    found = meetings(alice)
    assert [m["summary"] if "summary" in m else m["subject"] for m in found] == [
        "Review",
        "Review (moved)",
        "Review",
        "Review",
    ]
    assert [m["starts_at"] for m in found][1] == (start + timedelta(days=14, hours=15)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert {m["ical_uid"] for m in found} == {"weekly-1"}
    assert found[0]["status"] == "held" and found[-1]["status"] == "scheduled"
    assert found[0]["customers"] == [{"id": 1, "name": "Acme Corp", "link": "contact"}]
    assert found[0]["recurrence_id"] == stamp(start)
    assert found[0]["direction"] == "outbound" and found[0]["organizer"] == "alice@example.com"


def test_unchanged_resync_is_one_request_and_downloads_nothing(alice: World) -> None:
    alice.seed_events(
        "alice", {f"e{n}.ics": ics(event(f"e{n}", TODAY + timedelta(days=n))) for n in range(5)}
    )
    assert "5 meetings new" in alice.cli("sync").stdout
    # The second sync lists ETags and gets a sync token; the third uses it.  Both are one request.
    for _ in range(2):
        again = alice.cli("sync").stdout
        assert (
            "alice-cal: 0 meetings new, 0 updated, 0 cancelled, 0 quarantined (1 requests)" in again
        )
    engine = create_engine(alice.db_url)
    with engine.connect() as conn:
        assert (
            conn.scalar(text("SELECT count(*) FROM calendar_cursors WHERE sync_token IS NOT NULL"))
            == 1
        )
    engine.dispose()


def test_changes_cancellations_and_deletions(alice: World) -> None:
    alice.seed_events(
        "alice",
        {
            "a.ics": ics(event("a", TODAY + timedelta(days=1))),
            "b.ics": ics(event("b", TODAY + timedelta(days=2))),
            "c.ics": ics(event("c", TODAY + timedelta(days=3))),
            "r.ics": ics(event("r", TODAY + timedelta(days=1), extra="RRULE:FREQ=DAILY;COUNT=3")),
        },
    )
    alice.cli("sync")
    ids_before = {(m["ical_uid"], m["recurrence_id"]): m["id"] for m in meetings(alice)}
    alice.put_event(
        "alice",
        "a.ics",
        ics(
            event("a", TODAY + timedelta(days=1)).replace(
                "DTSTAMP:20240101T000000Z", "DTSTAMP:20250101T000000Z"
            )
        ),
    )
    alice.put_event(
        "alice",
        "b.ics",
        ics(event("b", TODAY + timedelta(days=2), summary="Review v2", extra="SEQUENCE:1")),
    )
    alice.put_event(
        "alice", "c.ics", ics(event("c", TODAY + timedelta(days=3), extra="STATUS:CANCELLED"))
    )
    day2 = stamp(TODAY + timedelta(days=2))
    alice.put_event(
        "alice",
        "r.ics",
        ics(
            event(
                "r", TODAY + timedelta(days=1), extra=f"RRULE:FREQ=DAILY;COUNT=3\r\nEXDATE:{day2}"
            )
        ),
    )
    out = alice.cli("sync").stdout
    # a: a DTSTAMP-only change is no change; b and c changed; one occurrence of r was removed
    assert "0 meetings new, 2 updated, 1 cancelled" in out
    by_uid = {(m["ical_uid"], m["recurrence_id"]): m for m in meetings(alice)}
    assert {
        k: m["id"] for k, m in by_uid.items()
    } == ids_before  # updated in place, never duplicated
    assert by_uid[("b", None)]["subject"] == "Review v2"
    assert by_uid[("c", None)]["status"] == "cancelled"
    assert by_uid[("r", day2)]["status"] == "cancelled"
    assert alice.radicale is not None
    alice.radicale.delete(alice.cal_logins["alice"], "work", "b.ics")
    alice.cli("sync")
    assert {(m["ical_uid"], m["status"]) for m in meetings(alice) if m["ical_uid"] == "b"} == {
        ("b", "cancelled")
    }


def test_declined_by_every_external_attendee(alice: World) -> None:
    declined = event("d", TODAY + timedelta(days=1)).replace(
        "PARTSTAT=ACCEPTED", "PARTSTAT=DECLINED"
    )
    alice.seed_events("alice", {"d.ics": ics(declined)})
    alice.cli("sync")
    assert [m["status"] for m in meetings(alice)] == ["declined"]


def test_two_reps_sharing_a_meeting_make_one_record(world: World, radicale: Radicale) -> None:
    world.cal_rep("alice", radicale)
    world.cal_rep("bob", radicale)
    world.write_config()
    world.customers(CUSTOMERS)
    shared = ics(
        event(
            "shared-1",
            TODAY + timedelta(days=2),
            extra="ATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@example.com",
        )
    )
    world.seed_events("alice", {"s.ics": shared})
    world.seed_events("bob", {"copy.ics": shared})
    world.cli("sync")
    (meeting,) = meetings(world)
    assert {p["address"] for p in meeting["participants"]} == {
        "alice@example.com",
        "bob@example.com",
        "wile@acme.com",
    }
    assert sorted(s["calendar"] for s in meeting["sources"]) == ["alice-cal", "bob-cal"]
    # Bob deletes his copy: the meeting still stands in Alice's calendar.
    assert world.radicale is not None
    world.radicale.delete(world.cal_logins["bob"], "work", "copy.ics")
    world.cli("sync")
    (meeting,) = meetings(world)
    assert meeting["status"] == "scheduled" and [s["calendar"] for s in meeting["sources"]] == [
        "alice-cal"
    ]


def test_rejected_token_falls_back_without_duplicates(alice: World) -> None:
    alice.seed_events(
        "alice", {f"t{n}.ics": ics(event(f"t{n}", TODAY + timedelta(days=n))) for n in range(3)}
    )
    alice.cli("sync")
    engine = create_engine(alice.db_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE calendar_cursors SET sync_token = 'http://radicale.org/ns/sync/forgotten'")
        )
    engine.dispose()
    alice.put_event("alice", "t3.ics", ics(event("t3", TODAY + timedelta(days=3))))
    out = alice.cli("sync").stdout
    assert "1 meetings new, 0 updated" in out  # only the new event is downloaded again
    assert len(meetings(alice)) == 4


def test_windows_zones_and_all_day_events(alice: World) -> None:
    day = TODAY + timedelta(days=5)
    windows_zone = "\r\n".join(
        [
            "UID:tz-1",
            "DTSTAMP:20240101T000000Z",
            f"DTSTART;TZID=W. Europe Standard Time:{day:%Y%m%d}T100000",
            f"DTEND;TZID=W. Europe Standard Time:{day:%Y%m%d}T110000",
            "SUMMARY:Zoned",
            "ATTENDEE:mailto:wile@acme.com",
        ]
    )
    all_day = (
        f"UID:ad-1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART;VALUE=DATE:{day:%Y%m%d}\r\n"
        "SUMMARY:Offsite\r\nATTENDEE:mailto:wile@acme.com"
    )
    alice.seed_events("alice", {"tz.ics": ics(windows_zone), "allday.ics": ics(all_day)})
    assert "2 meetings new" in alice.cli("sync").stdout
    found = {m["ical_uid"]: m for m in meetings(alice)}
    berlin = ZoneInfo("Europe/Berlin")
    ten = datetime(day.year, day.month, day.day, 10, tzinfo=berlin).astimezone(UTC)
    assert found["tz-1"]["starts_at"] == ten.strftime("%Y-%m-%dT%H:%M:%SZ")
    midnight = datetime(day.year, day.month, day.day, tzinfo=berlin).astimezone(
        UTC
    )  # the org's zone
    assert found["ad-1"]["starts_at"] == midnight.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert found["ad-1"]["ends_at"] == (midnight + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_timeline_interleaves_meetings_and_mail(world: World, radicale: Radicale) -> None:
    from tests.mail import make_message

    world.rep("alice")
    world.cal_rep("alice", radicale)
    world.write_config()
    world.customers(CUSTOMERS)
    world.deliver(
        "alice", make_message(date=TODAY - timedelta(days=2), subject="Before the meeting")
    )
    world.seed_events(
        "alice", {"m.ics": ics(event("m", TODAY - timedelta(days=1), summary="Kick-off"))}
    )
    world.cli("sync")
    timeline = world.cli("timeline", "Acme Corp").stdout
    assert timeline.index("Kick-off") < timeline.index("Before the meeting")
    assert "meeting" in timeline and "email" in timeline


def test_wrong_calendar_password_fails_that_source_only(world: World, radicale: Radicale) -> None:
    world.cal_rep("alice", radicale)
    world.cal_rep("bob", radicale)
    world.write_config(mailbox={"alice-cal": {"password_file": None, "password": "wrong"}})
    world.seed_events("bob", {"b.ics": ics(event("b1", TODAY))})
    out = world.cli("sync", expect=1).stdout
    assert "alice-cal" in out and "refused the credentials" in out and "wrong" not in out
    assert "bob-cal: 1 meetings new" in out


def test_server_without_sync_tokens_is_synced_by_etags(
    alice: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server with no RFC 6578 (or one that truncates with 507) answers sync-collection
    with an error; the connector then compares ETags and fetches only what changed."""
    from syncd.connectors import dav

    def no_sync_collection(self: dav.CalDavSession, *args: object, **kwargs: object) -> dav.Changes:
        self.requests += 1
        raise dav.TokenRejected

    monkeypatch.setattr(dav.CalDavSession, "_sync", no_sync_collection)
    alice.seed_events(
        "alice", {f"x{n}.ics": ics(event(f"x{n}", TODAY + timedelta(days=n + 1))) for n in range(3)}
    )
    assert "3 meetings new" in alice.cli("sync").stdout
    unchanged = alice.cli("sync").stdout
    assert (
        "0 meetings new, 0 updated, 0 cancelled, 0 quarantined (2 requests)" in unchanged
    )  # try + PROPFIND
    alice.put_event(
        "alice",
        "x1.ics",
        ics(event("x1", TODAY + timedelta(days=2), summary="Moved", extra="SEQUENCE:1")),
    )
    assert alice.radicale is not None
    alice.radicale.delete(alice.cal_logins["alice"], "work", "x2.ics")
    out = alice.cli("sync").stdout
    assert (
        "0 meetings new, 1 updated, 1 cancelled" in out and "(3 requests)" in out
    )  # try, PROPFIND, multiget
    assert {m["ical_uid"]: m["status"] for m in meetings(alice)} == {
        "x0": "scheduled",
        "x1": "scheduled",
        "x2": "cancelled",
    }


def test_the_moving_window_reaches_unchanged_meetings_and_series(alice: World) -> None:
    """Nothing changes on the server, yet time passes: a meeting booked 45 days ahead and
    the later occurrences of a weekly series are captured as the window reaches them."""
    import time_machine

    alice.seed_events(
        "alice",
        {
            "ahead.ics": ics(event("ahead", TODAY + timedelta(days=45), summary="Renewal")),
            "weekly.ics": ics(
                event("weekly", TODAY - timedelta(days=3), extra="RRULE:FREQ=WEEKLY")
            ),
        },
    )
    alice.cli("sync")
    alice.cli("sync")  # the sync token
    first = meetings(alice)
    assert {m["ical_uid"] for m in first} == {"weekly"}  # 30 days ahead at most
    weekly_then = len(first)
    unchanged = alice.cli("sync").stdout
    assert "(1 requests)" in unchanged  # nothing is due yet: one request, nothing downloaded
    with time_machine.travel(datetime.now(UTC) + timedelta(days=20), tick=False):
        later = alice.cli("sync").stdout
        found = meetings(alice)
    # Discovery again (it was 20 days ago), the token, then one multiget of what the window
    # reached: 3 + 1 + 1 requests.
    assert "4 meetings new" in later and "(5 requests)" in later
    assert "ahead" in {m["ical_uid"] for m in found}
    assert sum(m["ical_uid"] == "weekly" for m in found) == weekly_then + 3


def test_history_outside_the_window_is_never_downloaded(alice: World) -> None:
    alice.seed_events(
        "alice",
        {
            "old.ics": ics(event("old", TODAY - timedelta(days=200))),
            "old-series.ics": ics(
                event("old-series", TODAY - timedelta(days=300), extra="RRULE:FREQ=WEEKLY;COUNT=3")
            ),
            "now.ics": ics(event("now", TODAY + timedelta(days=2))),
            "ahead.ics": ics(event("ahead", TODAY + timedelta(days=60))),
            "ongoing.ics": ics(
                event("ongoing", TODAY - timedelta(days=400), extra="RRULE:FREQ=MONTHLY")
            ),
        },
    )
    first = alice.cli("sync").stdout
    # Discovery (3) and one calendar-query of the window: only "now" and "ongoing" come back.
    assert "(4 requests)" in first
    assert {m["ical_uid"] for m in meetings(alice)} == {"now", "ongoing"}
    second = alice.cli("sync").stdout
    # The listing (and the token), which objects reach past the window's start, and one
    # multiget of the only unknown one that does ("ahead"): the history stays on the server.
    assert "0 meetings new" in second and "(3 requests)" in second
    third = alice.cli("sync").stdout
    assert "(1 requests)" in third
    engine = create_engine(alice.db_url)
    with engine.connect() as conn:
        rows = dict(
            conn.execute(text("SELECT href, next_start_at IS NOT NULL FROM calendar_objects")).all()
        )
    engine.dispose()
    names = {href.rsplit("/", 1)[-1]: bool(later) for href, later in rows.items()}
    assert names == {
        "old.ics": False,  # remembered by ETag only
        "old-series.ics": False,
        "now.ics": False,
        "ahead.ics": True,  # read again when the window reaches it
        "ongoing.ics": True,
    }


def test_an_event_that_moves_to_the_other_reader_is_not_rewritten(alice: World) -> None:
    """A plain event is read by the fast reader; with an alarm and a description it goes to
    icalendar.  Both give the same fingerprint, so the record is not updated; a real change
    read by the other reader still is."""
    start = TODAY + timedelta(days=2)
    alice.seed_events("alice", {"m.ics": ics(event("m", start))})
    alice.cli("sync")
    (before,) = meetings(alice)
    alarmed = event("m", start, extra="DESCRIPTION:Agenda\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\n"
                    "TRIGGER:-PT15M\r\nEND:VALARM")  # fmt: skip
    alice.put_event("alice", "m.ics", ics(alarmed))
    out = alice.cli("sync").stdout
    assert "0 meetings new, 0 updated, 0 cancelled" in out
    alice.put_event(
        "alice", "m.ics", ics(alarmed.replace("PARTSTAT=ACCEPTED", "PARTSTAT=TENTATIVE"))
    )
    out = alice.cli("sync").stdout
    assert "0 meetings new, 1 updated, 0 cancelled" in out
    (after,) = meetings(alice)
    assert after["id"] == before["id"] and after["subject"] == "Review"


def test_a_rescheduled_meeting_moves_in_its_customer_s_page(alice: World) -> None:
    """The customer's page reads the links' copy of each record's time: a meeting moved
    by calendar sync moves in it (CLI and API alike read it)."""
    alice.seed_events(
        "alice",
        {
            "a.ics": ics(event("a", TODAY + timedelta(days=1), summary="First")),
            "b.ics": ics(event("b", TODAY + timedelta(days=2), summary="Second")),
        },
    )
    alice.cli("sync")
    assert [m["subject"] for m in alice.records("--customer", "Acme Corp")] == ["Second", "First"]
    alice.put_event(
        "alice",
        "a.ics",
        ics(event("a", TODAY + timedelta(days=5), summary="First", extra="SEQUENCE:1")),
    )
    assert "1 updated" in alice.cli("sync").stdout
    assert [m["subject"] for m in alice.records("--customer", "Acme Corp")] == ["First", "Second"]
    assert [m["subject"] for m in alice.records("--customer", "Acme Corp", "--limit", "1")] == [
        "First"
    ]
