"""The two calendar readers agree in full, fingerprints included.

The fast reader (``simple_ical``) takes plain events; everything else goes to icalendar
with recurring-ical-events.  Random events (single and recurring, zoned, floating, UTC,
all-day, with and without attendees) are read by both and compared field by field; the
same event with a VALARM added, or with an override of one occurrence that changes
nothing, moves to the library reader and must read the same.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.domain.meetings import occurrences
from syncd.domain.simple_ical import read_simple, split_line

WINDOW = {
    "window_start": datetime(2024, 6, 1, tzinfo=UTC),
    "window_end": datetime(2024, 7, 1, tzinfo=UTC),
}
ZONE = ZoneInfo("Europe/Paris")
ZONES = st.sampled_from([None, "UTC-Z", "Europe/Berlin", "America/New_York", "Asia/Tokyo"])
# Text as calendars write it: escapes, commas, semicolons, non-ASCII, a control character.
TEXT = st.lists(st.sampled_from([*"abcXYZ 019,;:\"'éß€\t", "\\n", "\\,", "\\;"]), max_size=30).map(
    "".join
)
CN = st.text(alphabet=st.sampled_from(list("Abc déf,.-'")), max_size=20)
PARTSTAT = st.sampled_from(["ACCEPTED", "DECLINED", "TENTATIVE", "NEEDS-ACTION", "accepted"])
RULES = st.sampled_from(
    [
        None,
        "FREQ=DAILY;COUNT=10",
        "FREQ=WEEKLY;BYDAY=MO,TH",
        "FREQ=WEEKLY;INTERVAL=2;UNTIL=20240720T000000Z",
        "FREQ=MONTHLY;BYDAY=1WE",
        "FREQ=DAILY;INTERVAL=3",
    ]
)


def _when(moment: datetime, zone: str | None, all_day: bool, name: str) -> str:
    if all_day:
        return f"{name};VALUE=DATE:{moment:%Y%m%d}"
    if zone is None:
        return f"{name}:{moment:%Y%m%dT%H%M%S}"
    if zone == "UTC-Z":
        return f"{name}:{moment:%Y%m%dT%H%M%S}Z"
    return f"{name};TZID={zone}:{moment:%Y%m%dT%H%M%S}"


@st.composite
def events(draw: st.DrawFn) -> dict[str, object]:
    day = draw(st.integers(min_value=-20, max_value=40))
    start = datetime(2024, 6, 1, 0, 0) + timedelta(
        days=day, hours=draw(st.integers(0, 23)), minutes=draw(st.sampled_from([0, 15, 30]))
    )
    return {
        "uid": draw(st.from_regex(r"[A-Za-z0-9@.\-]{1,20}", fullmatch=True)),
        "start": start,
        "length": timedelta(minutes=draw(st.sampled_from([0, 30, 60, 90, 24 * 60]))),
        "zone": draw(ZONES),
        "all_day": draw(st.booleans()),
        "has_end": draw(st.booleans()),
        "summary": draw(st.none() | TEXT),
        "status": draw(st.sampled_from([None, "CONFIRMED", "CANCELLED", "cancelled"])),
        "sequence": draw(st.sampled_from([None, "0", "3", "abc"])),
        "organizer": draw(st.none() | st.tuples(CN, st.sampled_from(["Rep@Example.com"]))),
        "attendees": draw(
            st.lists(
                st.tuples(CN, PARTSTAT, st.sampled_from(["wile@acme.com", "Road@ACME.com"])),
                max_size=3,
            )
        ),
        "rule": draw(RULES),
        "exdate": draw(st.booleans()),
    }


def _quote(cn: str) -> str:
    return f'"{cn}"' if any(c in cn for c in ",;:") else cn


def render(e: dict[str, object], *, alarm: bool = False) -> str:
    start = e["start"]
    assert isinstance(start, datetime)
    length = e["length"]
    assert isinstance(length, timedelta)
    zone = e["zone"] if isinstance(e["zone"], str) else None
    all_day = bool(e["all_day"])
    if all_day:
        start = start.replace(hour=0, minute=0)
        length = timedelta(days=1)
    lines = [f"UID:{e['uid']}", "DTSTAMP:20240101T000000Z", _when(start, zone, all_day, "DTSTART")]
    if e["has_end"]:
        lines.append(_when(start + length, zone, all_day, "DTEND"))
    if e["summary"] is not None:
        lines.append(f"SUMMARY:{e['summary']}")
    if e["status"]:
        lines.append(f"STATUS:{e['status']}")
    if e["sequence"] is not None:
        lines.append(f"SEQUENCE:{e['sequence']}")
    if isinstance(e["organizer"], tuple):
        cn, address = e["organizer"]
        lines.append(f"ORGANIZER;CN={_quote(cn)}:mailto:{address}")
    for cn, partstat, address in e["attendees"]:  # type: ignore[attr-defined]
        lines.append(f"ATTENDEE;CN={_quote(cn)};PARTSTAT={partstat}:mailto:{address}")
    rule = e["rule"]
    if rule:
        lines.append(f"RRULE:{rule}")
        if e["exdate"]:
            lines.append(_when(start + timedelta(days=7), zone, all_day, "EXDATE"))
    if alarm:
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT15M", "END:VALARM"]
    body = "\r\n".join(lines)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        f"BEGIN:VEVENT\r\n{body}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_fast_and_library_readers_agree_in_full(e: dict[str, object]) -> None:
    text = render(e)
    fast = occurrences(text, zone=ZONE, **WINDOW)  # str: the fast reader when it can
    slow = occurrences(text.encode(), zone=ZONE, **WINDOW)  # bytes: always icalendar
    assert fast == slow


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_an_alarm_moves_the_event_to_the_library_reader_without_changing_it(
    e: dict[str, object],
) -> None:
    plain, alarmed = render(e), render(e, alarm=True)
    assert read_simple(alarmed, ZONE, **WINDOW) is None  # really the other reader
    assert occurrences(plain, zone=ZONE, **WINDOW) == occurrences(alarmed, zone=ZONE, **WINDOW)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events().filter(lambda e: e["rule"] is not None))
def test_an_unchanged_override_changes_no_occurrence(e: dict[str, object]) -> None:
    """A series whose one occurrence is restated by an override (RECURRENCE-ID) reads
    exactly like the plain series, so gaining such an override rewrites nothing."""
    plain = occurrences(render(e), zone=ZONE, **WINDOW)
    if len(plain) < 2:
        return
    second = plain[1]
    zone = e["zone"] if isinstance(e["zone"], str) else None
    if e["all_day"]:
        wall = datetime.strptime(second.recurrence_id, "%Y%m%d")
    else:  # the override is written in the series' own zone, as clients do
        own = UTC if zone == "UTC-Z" else ZONE if zone is None else ZoneInfo(zone)
        wall = second.starts_at.astimezone(own).replace(tzinfo=None)
    length = second.ends_at - second.starts_at
    base = render(e)
    head, _, tail = base.rpartition("END:VCALENDAR")
    lines = [
        line
        for line in render({**e, "rule": None}).split("\r\n")
        if line
        and not line.startswith(("BEGIN:VCALENDAR", "END:VCALENDAR", "VERSION", "PRODID"))
        and not line.startswith(("DTSTART", "DTEND"))
    ]
    all_day = bool(e["all_day"])
    override = [
        *lines[:-1],  # without END:VEVENT
        _when(wall, zone, all_day, "RECURRENCE-ID"),
        _when(wall, zone, all_day, "DTSTART"),
    ]
    if e["has_end"]:
        override.append(_when(wall + length, zone, all_day, "DTEND"))
    override.append("END:VEVENT")
    with_override = head + "\r\n".join(override) + "\r\nEND:VCALENDAR" + tail
    assert read_simple(with_override, ZONE, **WINDOW) is None
    assert occurrences(with_override, zone=ZONE, **WINDOW) == plain


def test_a_dtstamp_or_description_alone_changes_no_fingerprint() -> None:
    e = {
        "uid": "u1", "start": datetime(2024, 6, 5, 9), "length": timedelta(hours=1),
        "zone": "Europe/Berlin", "all_day": False, "has_end": True, "summary": "Call",
        "status": None, "sequence": "1", "organizer": ("Rep", "Rep@Example.com"),
        "attendees": [("Wile", "ACCEPTED", "wile@acme.com")], "rule": None, "exdate": False,
    }  # fmt: skip
    base = render(e)
    (first,) = occurrences(base, zone=ZONE, **WINDOW)
    restamped = base.replace("DTSTAMP:20240101T000000Z", "DTSTAMP:20250101T000000Z")
    described = base.replace("SUMMARY:Call", "SUMMARY:Call\r\nDESCRIPTION:agenda")
    for text in (restamped, described, restamped.encode()):
        assert occurrences(text, zone=ZONE, **WINDOW)[0].fingerprint == first.fingerprint
    for changed in (
        base.replace("SUMMARY:Call", "SUMMARY:Call 2"),
        base.replace("PARTSTAT=ACCEPTED", "PARTSTAT=DECLINED"),
        base.replace("T090000", "T093000", 1),
    ):
        assert occurrences(changed, zone=ZONE, **WINDOW)[0].fingerprint != first.fingerprint


def test_parameter_lines_are_matched_in_linear_time() -> None:
    """A parameter list that cannot match (no colon) once took time quadratic in its length
    (a value that took commas, then comma repetitions: every split was tried)."""
    for hostile in ("X;P=" + "a," * 100_000 + '"', "X;P=" + "," * 200_000 + '"'):
        started = time.thread_time()
        assert split_line(hostile) is None
        assert time.thread_time() - started < 0.5
    line = 'ATTENDEE;CN="Rep, A";MEMBER="a",b,"c";PARTSTAT=ACCEPTED:mailto:a@b.c'
    found = split_line(line)
    assert found is not None and found[2] == "mailto:a@b.c"
