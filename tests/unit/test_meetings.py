"""Calendar objects to meeting occurrences: recurrence, overrides, zones, changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from syncd.domain.meetings import BrokenCalendar, meeting_status, occurrences, shown_status

WINDOW = {
    "window_start": datetime(2024, 6, 1, tzinfo=UTC),
    "window_end": datetime(2024, 7, 1, tzinfo=UTC),
}


def ics(*events: str) -> str:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n"


WEEKLY = """UID:weekly-1
DTSTAMP:20240101T000000Z
DTSTART;TZID=W. Europe Standard Time:20240603T100000
DTEND;TZID=W. Europe Standard Time:20240603T110000
RRULE:FREQ=WEEKLY;COUNT=4
EXDATE;TZID=W. Europe Standard Time:20240610T100000
SUMMARY:Weekly sync
ORGANIZER;CN=Alice:mailto:alice@example.com
ATTENDEE;CN=Wile;PARTSTAT=ACCEPTED:mailto:Wile@Acme.com"""
MOVED = """UID:weekly-1
DTSTAMP:20240101T000000Z
RECURRENCE-ID;TZID=W. Europe Standard Time:20240617T100000
DTSTART;TZID=W. Europe Standard Time:20240617T140000
DTEND;TZID=W. Europe Standard Time:20240617T150000
SUMMARY:Weekly sync (moved)
ATTENDEE;PARTSTAT=ACCEPTED:mailto:wile@acme.com"""


def test_recurrence_with_exception_and_override_in_windows_zone() -> None:
    found = occurrences(ics(WEEKLY, MOVED), **WINDOW)
    assert [(o.recurrence_id, o.starts_at.isoformat(), o.summary) for o in found] == [
        ("20240603T080000Z", "2024-06-03T08:00:00+00:00", "Weekly sync"),
        ("20240617T080000Z", "2024-06-17T12:00:00+00:00", "Weekly sync (moved)"),
        ("20240624T080000Z", "2024-06-24T08:00:00+00:00", "Weekly sync"),
    ]
    first = found[0]
    assert first.key == "meeting:weekly-1|20240603T080000Z"
    assert first.organizer is not None and first.organizer.address == "alice@example.com"
    assert [(a.address, a.name, a.partstat) for a in first.attendees] == [
        ("wile@acme.com", "Wile", "ACCEPTED")
    ]


def test_window_bounds_what_is_kept() -> None:
    found = occurrences(
        ics(WEEKLY),
        window_start=datetime(2024, 6, 15, tzinfo=UTC),
        window_end=datetime(2024, 6, 20, tzinfo=UTC),
    )
    assert [o.recurrence_id for o in found] == ["20240617T080000Z"]


def test_single_all_day_and_floating_events() -> None:
    single = occurrences(
        ics("UID:s1\nDTSTAMP:20240101T000000Z\nDTSTART:20240605T090000Z\nDURATION:PT30M"), **WINDOW
    )
    assert single[0].recurrence_id == "" and single[0].ends_at == datetime(
        2024, 6, 5, 9, 30, tzinfo=UTC
    )
    paris = ZoneInfo("Europe/Paris")
    all_day = occurrences(
        ics("UID:d1\nDTSTART;VALUE=DATE:20240610\nDTEND;VALUE=DATE:20240611"), zone=paris, **WINDOW
    )
    assert all_day[0].all_day and all_day[0].starts_at == datetime(2024, 6, 9, 22, 0, tzinfo=UTC)
    floating = occurrences(
        ics("UID:f1\nDTSTART:20240612T150000\nDTEND:20240612T160000"), zone=paris, **WINDOW
    )
    assert (
        floating[0].starts_at == datetime(2024, 6, 12, 13, 0, tzinfo=UTC)
        and not floating[0].all_day
    )


def test_dtstamp_only_changes_are_not_changes() -> None:
    before = occurrences(ics(WEEKLY), **WINDOW)[0]
    stamped = occurrences(
        ics(WEEKLY.replace("DTSTAMP:20240101T000000Z", "DTSTAMP:20240301T000000Z")), **WINDOW
    )[0]
    assert stamped.fingerprint == before.fingerprint
    renamed = occurrences(
        ics(WEEKLY.replace("SUMMARY:Weekly sync", "SUMMARY:Weekly review") + "\nSEQUENCE:2"),
        **WINDOW,
    )[0]
    assert renamed.fingerprint != before.fingerprint and renamed.sequence == 2


def test_cancelled_and_declined() -> None:
    cancelled = occurrences(ics(WEEKLY + "\nSTATUS:CANCELLED"), **WINDOW)[0]
    assert (
        cancelled.status == "cancelled"
        and meeting_status(cancelled, {"wile@acme.com"}) == "cancelled"
    )
    declined = occurrences(ics(WEEKLY.replace("PARTSTAT=ACCEPTED", "PARTSTAT=DECLINED")), **WINDOW)[
        0
    ]
    assert meeting_status(declined, {"wile@acme.com"}) == "declined"
    accepted = occurrences(ics(WEEKLY), **WINDOW)[0]
    assert meeting_status(accepted, {"wile@acme.com"}) == "scheduled"
    assert shown_status("scheduled", accepted.ends_at, datetime(2024, 7, 1, tzinfo=UTC)) == "held"
    assert (
        shown_status("scheduled", accepted.ends_at, datetime(2024, 6, 1, tzinfo=UTC)) == "scheduled"
    )
    assert (
        shown_status("cancelled", accepted.ends_at, datetime(2024, 7, 1, tzinfo=UTC)) == "cancelled"
    )


@pytest.mark.parametrize(
    "text",
    [
        "this is not a calendar",
        ics("UID:b1\nDTSTART:20240603T100000Z\nRRULE:FREQ=SOMETIMES"),
        ics("DTSTART:20240603T100000Z\nSUMMARY:no uid"),
    ],
)
def test_broken_objects_are_reported(text: str) -> None:
    with pytest.raises(BrokenCalendar):
        occurrences(text, **WINDOW)


def test_far_away_single_events_are_skipped_without_parsing() -> None:
    from syncd.domain.meetings import clearly_outside

    far = ics("UID:far\nDTSTART:20250101T090000Z\nDTEND:20250101T100000Z")
    assert clearly_outside(far, **WINDOW) and occurrences(far, **WINDOW) == []
    near = ics("UID:near\nDTSTART:20240701T230000Z")  # a day of margin for time zones
    assert not clearly_outside(near, **WINDOW)
    recurring = ics("UID:r\nDTSTART:20230101T090000Z\nRRULE:FREQ=WEEKLY")
    assert not clearly_outside(recurring, **WINDOW) and occurrences(recurring, **WINDOW)
    # A series cannot start before its DTSTART: one that starts after the window is skipped...
    later = ics("UID:l\nDTSTART:20240801T090000Z\nRRULE:FREQ=WEEKLY;COUNT=5")
    assert clearly_outside(later, **WINDOW) and occurrences(later, **WINDOW) == []
    # ... unless an RDATE or an override may bring an occurrence into it.
    with_rdate = ics("UID:d\nDTSTART:20240801T090000Z\nRRULE:FREQ=WEEKLY\nRDATE:20240610T090000Z")
    moved = ics(
        "UID:m\nDTSTART:20240801T090000Z\nRRULE:FREQ=WEEKLY;COUNT=3",
        "UID:m\nRECURRENCE-ID:20240808T090000Z\nDTSTART:20240612T090000Z",
    )
    for text in (with_rdate, moved):
        assert not clearly_outside(text, **WINDOW) and occurrences(text, **WINDOW)


SIMPLE_CASES = [
    "UID:s1\nDTSTAMP:20240101T000000Z\nDTSTART:20240605T090000Z\nDTEND:20240605T100000Z\nSUMMARY:Plain",
    "UID:s2\nDTSTART;TZID=Europe/Berlin:20240605T090000\nDTEND;TZID=Europe/Berlin:20240605T100000\n"
    "SUMMARY:Zoned\\, with escapes\\; and a\\nnewline\nSTATUS:CANCELLED\nSEQUENCE:3",
    "UID:s3\nDTSTART;VALUE=DATE:20240610\nSUMMARY:All day",
    "UID:s4\nDTSTART:20240612T150000\nDTEND:20240612T160000\nSUMMARY:Floating",
    'UID:s5\nDTSTART:20240605T090000Z\nORGANIZER;CN="Rep, Alice":mailto:Alice@Example.com\n'
    "ATTENDEE;CN=Wile;PARTSTAT=DECLINED;RSVP=TRUE:mailto:wile@acme.com\n"
    "ATTENDEE;PARTSTAT=ACCEPTED:MAILTO:road@acme.com\nSUMMARY:Long summary folded over\n  two lines",
]


@pytest.mark.parametrize("body", SIMPLE_CASES)
def test_fast_reader_agrees_with_icalendar(body: str) -> None:
    text = ics(body)
    paris = ZoneInfo("Europe/Paris")
    fast = occurrences(text, zone=paris, **WINDOW)
    slow = occurrences(text.encode(), zone=paris, **WINDOW)  # bytes take the icalendar path
    assert len(fast) == len(slow) == 1
    assert fast == slow  # in full: one fingerprint, whichever reader parsed the event


def test_fast_reader_fingerprint_ignores_stamps_only() -> None:
    base = SIMPLE_CASES[0]
    first = occurrences(ics(base), **WINDOW)[0]
    assert (
        occurrences(ics(base.replace("20240101T000000Z", "20250101T000000Z")), **WINDOW)[
            0
        ].fingerprint
        == first.fingerprint
    )
    assert (
        occurrences(ics(base.replace("Plain", "Changed")), **WINDOW)[0].fingerprint
        != first.fingerprint
    )


@pytest.mark.parametrize(
    "body",
    [
        "UID:w\nDTSTART;TZID=W. Europe Standard Time:20240605T090000",  # Windows zone: icalendar's job
        "UID:r\nDTSTART:20240605T090000Z\nRDATE:20240606T090000Z",
        "UID:d\nDTSTART:20240605T090000Z\nDURATION:PT1H",
    ],
)
def test_fast_reader_hands_other_shapes_to_icalendar(body: str) -> None:
    from syncd.domain.simple_ical import read_simple

    assert read_simple(ics(body), UTC, WINDOW["window_start"], WINDOW["window_end"]) is None
    assert occurrences(ics(body), **WINDOW)  # and icalendar reads them


RULES = [
    "DTSTART:20240520T090000Z\nDTEND:20240520T100000Z\nRRULE:FREQ=WEEKLY;COUNT=8",
    "DTSTART;TZID=Europe/Berlin:20240301T090000\nDTEND;TZID=Europe/Berlin:20240301T093000\n"
    "RRULE:FREQ=WEEKLY;BYDAY=MO,TH;UNTIL=20240710T000000Z",  # across a DST change
    "DTSTART;VALUE=DATE:20240601\nRRULE:FREQ=DAILY;COUNT=5\nEXDATE;VALUE=DATE:20240603",
    "DTSTART:20240501T090000Z\nRRULE:FREQ=MONTHLY;BYDAY=1WE;COUNT=6\nEXDATE:20240501T090000Z",
    "DTSTART:20240611T150000\nRRULE:FREQ=DAILY;INTERVAL=3;COUNT=9\nEXDATE:20240614T150000,20240620T150000",
]


@pytest.mark.parametrize("rule", RULES)
def test_fast_recurrence_agrees_with_recurring_ical_events(rule: str) -> None:
    text = ics(f"UID:rule-1\nDTSTAMP:20240101T000000Z\nSUMMARY:Series\n{rule}")
    paris = ZoneInfo("Europe/Paris")
    fast = occurrences(text, zone=paris, **WINDOW)
    slow = occurrences(text.encode(), zone=paris, **WINDOW)  # bytes take the icalendar path
    assert fast, "the rule has occurrences in the window"
    assert fast == slow  # in full, fingerprints included


@pytest.mark.parametrize(
    "body",
    [
        "UID:n1\nDTSTART:20240801T090000Z\nDTEND:20240801T100000Z",  # after the window
        "UID:n2\nDTSTART:20240610T090000Z\nDTEND:20240610T100000Z",  # inside: never again
        "UID:n3\nDTSTART:20240603T090000Z\nRRULE:FREQ=WEEKLY;COUNT=10",  # runs past the window
        "UID:n4\nDTSTART:20240603T090000Z\nRRULE:FREQ=WEEKLY;COUNT=2",  # ends inside
        "UID:n5\nDTSTART;TZID=Europe/Berlin:20240603T090000\nRRULE:FREQ=WEEKLY\n"
        "EXDATE;TZID=Europe/Berlin:20240701T090000,20240708T090000",  # excluded next ones
    ],
)
def test_next_start_after_the_window_agrees_between_readers(body: str) -> None:
    """When an unchanged object matters again as the window moves on: the fast reader and
    icalendar with recurring-ical-events give the same answer."""
    from syncd.domain.meetings import read_object

    fast = read_object(ics(body), **WINDOW).next_start
    slow = read_object(ics(body).encode(), **WINDOW).next_start
    if fast is None or slow is None:
        assert fast == slow
    else:  # an object skipped unparsed is looked at again up to a day early, never late
        assert fast <= slow < fast + timedelta(days=2)


def test_next_start_examples() -> None:
    from syncd.domain.meetings import read_object

    weekly = read_object(ics("UID:w\nDTSTART:20240603T090000Z\nRRULE:FREQ=WEEKLY"), **WINDOW)
    assert weekly.next_start == datetime(2024, 7, 1, 9, tzinfo=UTC)
    assert len(weekly.occurrences) == 4
    ended = read_object(ics("UID:e\nDTSTART:20240603T090000Z\nRRULE:FREQ=DAILY;COUNT=3"), **WINDOW)
    assert ended.next_start is None
    skipped = read_object(ics("UID:f\nDTSTART:20250101T090000Z"), **WINDOW)  # not even parsed
    assert skipped.occurrences == [] and skipped.next_start == datetime(2024, 12, 31, tzinfo=UTC)
