"""Calendar objects -> meeting occurrences.  No I/O.

One VCALENDAR resource may hold a recurring master and its overrides; every
occurrence inside the capture window becomes one ``Occurrence`` whose identity is
(UID, RECURRENCE-ID), never the resource's href (RFC 5545; servers move resources).
Times are UTC; TZIDs resolve through icalendar, Windows zone names included
("W. Europe Standard Time"); floating times are read in the organisation's zone;
all-day events span whole days in that zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import icalendar
import recurring_ical_events

from syncd.domain.bounds import SUBJECT_MAX, bound_sequence, bound_text, bound_uid
from syncd.domain.calendar_limits import (
    MAX_OBJECT_BYTES,
    MAX_OCCURRENCES,
    MAX_RULE_STEPS,
    SUB_HOURLY,
    Budget,
    Cut,
    OverBudget,
    chunk_seconds,
    occurrence_cap,
    rule_steps,
)
from syncd.domain.occurrences import (
    Attendee,
    BrokenCalendar,
    Occurrence,
    Status,
    capped_attendees,
    meeting_status,
    person_of,
    recurrence_id_of,
    shown_status,
    to_utc,
)
from syncd.domain.simple_ical import read_simple

# Re-exported: the engine, the store's queries and tests know them from here.
__all__ = [
    "Attendee",
    "BrokenCalendar",
    "ObjectView",
    "Occurrence",
    "Status",
    "clearly_outside",
    "meeting_status",
    "occurrences",
    "parse_calendar",
    "person_of",
    "read_object",
    "shown_status",
]

# The fast reader (simple_ical) for plain events; bench/meetings.py --library-only turns it
# off to measure whether it still earns its keep.
FAST_READER = True


def parse_calendar(text: str | bytes) -> Any:
    try:
        return icalendar.Calendar.from_ical(text)
    except Exception as err:  # icalendar raises ValueError, KeyError, IndexError... for bad input
        raise BrokenCalendar(f"not iCalendar: {type(err).__name__}: {err}"[:300]) from None


_RECURS = re.compile(r"^(RRULE|RDATE|RECURRENCE-ID)[;:]", re.MULTILINE)
_DTSTART = re.compile(r"^DTSTART(?:;[^:\r\n]*)?:(\d{8})", re.MULTILINE)


def clearly_outside(text: str, window_start: datetime, window_end: datetime) -> bool:
    """An object whose events are all far outside the window: no need to parse it.

    Parsing is most of the cost of a first sync, and most of a long-lived calendar lies
    outside the window.  A day of margin covers every time zone offset.  A series cannot
    start before its DTSTART, so one that starts after the window is outside too, unless
    RDATE or an override (RECURRENCE-ID) may put an occurrence anywhere.
    """
    recurring = "RRULE" in text and _RECURS.search(text) is not None
    if ("RDATE" in text or "RECURRENCE-ID" in text) and _RECURS.search(text):
        return False
    starts = _DTSTART.findall(text)
    if len(starts) != 1:
        return False
    value = starts[0]
    try:
        day = datetime(int(value[:4]), int(value[4:6]), int(value[6:8]), tzinfo=UTC)
    except ValueError:
        return False
    if day > window_end + timedelta(days=1):
        return True
    return not recurring and day < window_start - timedelta(days=400)


@dataclass(frozen=True, slots=True)
class ObjectView:
    """What one calendar object means for the capture window."""

    occurrences: list[Occurrence]
    # The first occurrence start (UTC) after the window: when the object matters again as
    # the window moves on, though nothing in it changes.  None: never again.
    next_start: datetime | None
    # What the limits cut (calendar_limits); empty when nothing was.
    cut: Cut = field(default_factory=Cut)


def occurrences(
    text: str | bytes,
    *,
    window_start: datetime,
    window_end: datetime,
    zone: tzinfo = UTC,
) -> list[Occurrence]:
    """Every VEVENT occurrence of a calendar object that overlaps the window."""
    return read_object(
        text, window_start=window_start, window_end=window_end, zone=zone
    ).occurrences


def read_object(
    text: str | bytes,
    *,
    window_start: datetime,
    window_end: datetime,
    zone: tzinfo = UTC,
    budget: Budget | None = None,
) -> ObjectView:
    """The occurrences of a calendar object that overlap the window, and its next start.

    Every failure to read it, and every limit it breaks beyond those that merely cut it
    (calendar_limits), raises BrokenCalendar: the caller quarantines the one object.
    """
    size = len(text)
    if isinstance(text, str) and size * 4 > MAX_OBJECT_BYTES:  # UTF-8: up to 4 bytes a char
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_OBJECT_BYTES:
        raise BrokenCalendar(
            f"calendar-data of {size:,} bytes is over the limit of {MAX_OBJECT_BYTES:,}"
        )
    budget = budget or Budget()
    try:
        return _read_object(text, window_start, window_end, zone, budget)
    except BrokenCalendar:
        raise
    except OverBudget as err:
        raise BrokenCalendar(str(err)) from None
    except Exception as err:  # a value icalendar or dateutil cannot read: SEQUENCE, DURATION...
        raise BrokenCalendar(f"cannot read: {type(err).__name__}: {err}"[:300]) from None


def _read_object(
    text: str | bytes, window_start: datetime, window_end: datetime, zone: tzinfo, budget: Budget
) -> ObjectView:
    def inside(o: Occurrence) -> bool:
        return _overlaps((o.starts_at, o.ends_at, o.all_day), window_start, window_end)

    cut = Cut()
    if isinstance(text, str):
        if clearly_outside(text, window_start, window_end):
            return ObjectView([], _first_day_after(text, window_end))
        simple = (
            read_simple(text, zone, window_start, window_end, budget, cut) if FAST_READER else None
        )
        if simple is not None:
            found, following = simple
            return ObjectView([o for o in found if inside(o)], following, cut)
    calendar = parse_calendar(text)
    budget.check()
    # The expander stamps a RECURRENCE-ID on every event; only recurring ones really have one.
    recurring = {
        str(c.get("UID", "")).strip()
        for c in calendar.walk("VEVENT")
        if "RRULE" in c or "RDATE" in c or "RECURRENCE-ID" in c
    }
    if recurring:
        for event in calendar.walk("VEVENT"):
            # The expander orders overrides by SEQUENCE and fails on an unreadable one,
            # which the fast reader reads as 0: the same here, so one bad value costs nothing.
            if "SEQUENCE" in event:
                event["SEQUENCE"] = bound_sequence(event["SEQUENCE"])
        events, later = _expand(calendar, window_start, window_end, zone, budget, cut)
        following = to_utc(later["DTSTART"].dt, zone)[0] if later is not None else None
        found = [_occurrence(e, recurring, zone, cut) for e in events]
        return ObjectView(found, following if following and following >= window_end else None, cut)
    # Single events need no expander, which is most of the cost of reading them.
    found = []
    for event in calendar.walk("VEVENT"):
        budget.check()
        if len(found) >= MAX_OCCURRENCES:
            cut.occurrences += 1
            continue
        found.append(_occurrence(event, recurring, zone, cut))
    future = [o.starts_at for o in found if o.starts_at >= window_end]
    return ObjectView([o for o in found if inside(o)], min(future) if future else None, cut)


def _rule_parts(event: Any) -> list[dict[str, list[str]]]:
    rules = event.get("RRULE", [])
    out = []
    for rule in rules if isinstance(rules, list) else [rules]:
        out.append(
            {
                str(k).upper(): [str(v) for v in (vs if isinstance(vs, list) else [vs])]
                for k, vs in rule.items()
            }
        )
    return out


def _expand(
    calendar: Any,
    window_start: datetime,
    window_end: datetime,
    zone: tzinfo,
    budget: Budget,
    cut: Cut,
) -> tuple[list[Any], Any]:
    """The recurring object's VEVENTs in the window (capped), and its first one after."""
    frequencies: set[str] = set()
    # The window is expanded in chunks of about 1,000 candidates of the densest rule.
    step = timedelta(days=3660)
    try:
        for event in calendar.walk("VEVENT"):
            for parts in _rule_parts(event):
                frequencies.update(p.upper() for p in parts.get("FREQ", []))
                step = min(step, timedelta(seconds=chunk_seconds(parts)))
                if "DTSTART" in event:
                    first, _ = to_utc(event["DTSTART"].dt, zone)
                    span = (window_start - first).total_seconds()
                    if rule_steps(parts, span) > MAX_RULE_STEPS:
                        raise BrokenCalendar(
                            f"recurrence too long to expand: over {MAX_RULE_STEPS:,} steps "
                            "from DTSTART to the window's start"
                        )
        cap = occurrence_cap(frequencies)
        expander = recurring_ical_events.of(calendar)
        events: list[Any] = []
        seen: set[tuple[str, str]] = set()
        # The expander compares floating times as if they were UTC; syncd reads them in the
        # organisation's zone.  So the expansion runs a day wider on each side and each
        # event is kept by its own span, as the fast reader does: both keep the same ones.
        start = window_start - _MARGIN
        while start < window_end + _MARGIN and len(events) <= cap:
            budget.check()
            end = min(start + step, window_end + _MARGIN)
            for event in expander.between(start, end):
                if event.name != "VEVENT":
                    continue
                key = (str(event.get("UID", "")), str(event["DTSTART"].to_ical()))
                if key not in seen:
                    seen.add(key)
                    if _overlaps(_span(event, zone), window_start, window_end):
                        events.append(event)
            start = end
        budget.check()
        later = None
        if len(events) <= cap:  # a capped object is not read again as the window moves
            later = _first_after(expander, window_end, zone, budget)
        budget.check()
    except (BrokenCalendar, OverBudget):
        raise
    except Exception as err:  # a broken RRULE, an unknown zone, an override of nothing...
        raise BrokenCalendar(
            f"cannot expand recurrence: {type(err).__name__}: {err}"[:300]
        ) from None
    if frequencies & SUB_HOURLY and len(events) > cap:
        cut.sub_hourly = True
    if len(events) > cap:
        cut.occurrences += len(events) - cap
        events.sort(key=lambda e: to_utc(e["DTSTART"].dt, zone)[0])
        events = events[:cap]
    return events, later


# More than any zone's offset from UTC.
_MARGIN = timedelta(days=1)


def _span(event: Any, zone: tzinfo) -> tuple[datetime, datetime, bool]:
    """(start, end, whole day) of a VEVENT in UTC: DTEND, else DURATION, else a day for an
    all-day event and no time for a timed one (RFC 5545 3.6.1)."""
    start, all_day = to_utc(event["DTSTART"].dt, zone)
    if "DTEND" in event:
        end, _ = to_utc(event["DTEND"].dt, zone)
    elif "DURATION" in event:
        end = start + event["DURATION"].dt
    else:
        end = start + (timedelta(days=1) if all_day else timedelta())
    return start, end, all_day


def _overlaps(span: tuple[datetime, datetime, bool], start: datetime, end: datetime) -> bool:
    """Inside the window: starts before its end, and ends after its start (an event of no
    length counts when it starts at the window's start)."""
    return span[0] < end and (span[1] > start or span[0] >= start)


def _first_after(expander: Any, window_end: datetime, zone: tzinfo, budget: Budget) -> Any:
    """The first VEVENT starting at or after the window's end, in the organisation's zone."""
    for n, event in enumerate(expander.after(window_end - _MARGIN)):
        if n % 256 == 255:
            budget.check()
        if event.name == "VEVENT" and to_utc(event["DTSTART"].dt, zone)[0] >= window_end:
            return event
    return None


def _first_day_after(text: str, window_end: datetime) -> datetime | None:
    """For an object skipped unparsed: the day it starts, if after the window (a day early,
    for time zones: looking again a little early costs nothing)."""
    found = _DTSTART.findall(text)
    if len(found) != 1:
        return None
    value = found[0]
    day = datetime(int(value[:4]), int(value[4:6]), int(value[6:8]), tzinfo=UTC)
    return day - timedelta(days=1) if day > window_end else None


def _person(prop: Any) -> Attendee | None:
    params = getattr(prop, "params", {})
    return person_of(
        str(prop), str(params.get("CN", "")), str(params.get("PARTSTAT", "NEEDS-ACTION"))
    )


def _occurrence(event: Any, recurring: set[str], zone: tzinfo, cut: Cut) -> Occurrence:
    raw_uid = str(event.get("UID", "")).strip()
    uid = bound_uid(raw_uid)
    if not uid or "DTSTART" not in event:
        raise BrokenCalendar("an event without UID or DTSTART")
    start, end, all_day = _span(event, zone)
    organizer = _person(event["ORGANIZER"]) if "ORGANIZER" in event else None
    attendees_raw = event.get("ATTENDEE", [])
    if not isinstance(attendees_raw, list):
        attendees_raw = [attendees_raw]
    attendees = capped_attendees([a for a in map(_person, attendees_raw) if a is not None], cut)
    cancelled = str(event.get("STATUS", "")).upper() == "CANCELLED"
    return Occurrence(
        uid=uid,
        recurrence_id=recurrence_id_of(
            event["RECURRENCE-ID"].dt
            if raw_uid in recurring and "RECURRENCE-ID" in event
            else None,
            zone,
        ),
        summary=bound_text(str(event.get("SUMMARY", "")), SUBJECT_MAX).strip(),
        starts_at=start,
        ends_at=end,
        all_day=all_day,
        status="cancelled" if cancelled else "scheduled",
        sequence=bound_sequence(event.get("SEQUENCE", 0)),
        organizer=organizer,
        attendees=attendees,
    )
