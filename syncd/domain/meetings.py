"""Calendar objects -> meeting occurrences.  No I/O.

One VCALENDAR resource may hold a recurring master and its overrides; every
occurrence inside the capture window becomes one ``Occurrence`` whose identity is
(UID, RECURRENCE-ID), never the resource's href (RFC 5545; servers move resources).
Times are UTC; TZIDs resolve through icalendar, Windows zone names included
("W. Europe Standard Time"); floating times are read in the organisation's zone;
all-day events span whole days in that zone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal

import icalendar
import recurring_ical_events

from syncd.domain.addresses import normalize_address, normalize_name
from syncd.domain.calendar_limits import (
    ADDRESS_CHARS,
    MAX_ATTENDEES,
    MAX_OBJECT_BYTES,
    MAX_OCCURRENCES,
    MAX_RULE_STEPS,
    NAME_CHARS,
    SUB_HOURLY,
    SUMMARY_CHARS,
    Budget,
    Cut,
    OverBudget,
    bounded_sequence,
    bounded_uid,
    chunk_seconds,
    clean_text,
    occurrence_cap,
    rule_steps,
)
from syncd.domain.simple_ical import (
    SimpleProperty,
    expand_rule,
    is_sub_hourly,
    local_time,
    read_simple_event,
    text_of,
)
from syncd.domain.simple_ical import fingerprint as simple_fingerprint

Status = Literal["scheduled", "cancelled", "declined"]
# Properties that change without the meeting changing: stamps, not content.
_NOT_CONTENT = frozenset({"DTSTAMP", "LAST-MODIFIED", "CREATED", "SEQUENCE", "X-MOZ-GENERATION"})


class BrokenCalendar(ValueError):
    """The object cannot be read, or its recurrence cannot be expanded: quarantine it."""


@dataclass(frozen=True, slots=True)
class Attendee:
    address: str
    name: str
    partstat: str  # ACCEPTED, DECLINED, TENTATIVE, NEEDS-ACTION, ...


@dataclass(frozen=True, slots=True)
class Occurrence:
    uid: str
    recurrence_id: str  # "" for a single event; the original start (UTC ISO, or a date) otherwise
    summary: str
    starts_at: datetime
    ends_at: datetime
    all_day: bool
    status: Status
    sequence: int
    organizer: Attendee | None
    attendees: tuple[Attendee, ...]
    fingerprint: str  # changes exactly when the occurrence's content does

    @property
    def key(self) -> str:
        return f"meeting:{self.uid}|{self.recurrence_id}"


def _to_utc(value: Any, zone: tzinfo, *, end_of_day: bool = False) -> tuple[datetime, bool]:
    """(UTC datetime, is a whole day) of a DTSTART/DTEND/RECURRENCE-ID value."""
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating: the wall clock of wherever the people are
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC), False
    if isinstance(value, date):
        return datetime.combine(value, time.min, tzinfo=zone).astimezone(UTC), True
    raise BrokenCalendar(f"not a date or time: {value!r}")


def _recurrence_id(value: Any, zone: tzinfo) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _to_utc(value, zone)[0].strftime("%Y%m%dT%H%M%SZ")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    raise BrokenCalendar(f"bad RECURRENCE-ID: {value!r}")


def person_of(raw: str, name: str, partstat: str) -> Attendee | None:
    """An organizer or attendee whose values fit the schema; None for what is not an address
    (an address longer than any mailbox can have is not one)."""
    raw = raw.strip()
    if len(raw) > ADDRESS_CHARS + 7:
        return None
    address = normalize_address(raw[7:] if raw.lower().startswith("mailto:") else raw)
    if address is None or len(address) > ADDRESS_CHARS or not address.isprintable():
        return None
    return Attendee(
        address,
        normalize_name(clean_text(name, NAME_CHARS)),
        clean_text(partstat, 40).upper(),
    )


def _person(prop: Any) -> Attendee | None:
    params = getattr(prop, "params", {})
    return person_of(
        str(prop), str(params.get("CN", "")), str(params.get("PARTSTAT", "NEEDS-ACTION"))
    )


def capped_attendees(found: list[Attendee], cut: Cut) -> tuple[Attendee, ...]:
    if len(found) > MAX_ATTENDEES:
        cut.attendees = max(cut.attendees, len(found) - MAX_ATTENDEES)
        found = found[:MAX_ATTENDEES]
    return tuple(found)


def _fingerprint(event: Any, start: datetime, end: datetime) -> str:
    lines = [f"{start.isoformat()}|{end.isoformat()}"]
    for name, value in event.property_items(recursive=False):
        if name in _NOT_CONTENT or name in ("BEGIN", "END"):
            continue
        rendered = value.to_ical() if hasattr(value, "to_ical") else str(value)
        lines.append(f"{name}:{rendered!r}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:32]


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
        return o.starts_at < window_end and (
            o.ends_at > window_start or o.starts_at >= window_start
        )

    cut = Cut()
    if isinstance(text, str):
        if clearly_outside(text, window_start, window_end):
            return ObjectView([], _first_day_after(text, window_end))
        simple = _simple(text, zone, window_start, window_end, budget, cut)
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
        events, later = _expand(calendar, window_start, window_end, zone, budget, cut)
        following = _to_utc(later["DTSTART"].dt, zone)[0] if later is not None else None
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
                    first, _ = _to_utc(event["DTSTART"].dt, zone)
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
        start = window_start
        while start < window_end and len(events) <= cap:
            budget.check()
            end = min(start + step, window_end)
            for event in expander.between(start, end):
                if event.name != "VEVENT":
                    continue
                key = (str(event.get("UID", "")), str(event["DTSTART"].to_ical()))
                if key not in seen:
                    seen.add(key)
                    events.append(event)
            start = end
        budget.check()
        later = None
        if len(events) <= cap:  # a capped object is not read again as the window moves
            later = next((e for e in expander.after(window_end) if e.name == "VEVENT"), None)
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
        events.sort(key=lambda e: _to_utc(e["DTSTART"].dt, zone)[0])
        events = events[:cap]
    return events, later


def _first_day_after(text: str, window_end: datetime) -> datetime | None:
    """For an object skipped unparsed: the day it starts, if after the window (a day early,
    for time zones: looking again a little early costs nothing)."""
    found = _DTSTART.findall(text)
    if len(found) != 1:
        return None
    value = found[0]
    day = datetime(int(value[:4]), int(value[4:6]), int(value[6:8]), tzinfo=UTC)
    return day - timedelta(days=1) if day > window_end else None


def _occurrence(event: Any, recurring: set[str], zone: tzinfo, cut: Cut) -> Occurrence:
    raw_uid = str(event.get("UID", "")).strip()
    uid = bounded_uid(raw_uid)
    if not uid or "DTSTART" not in event:
        raise BrokenCalendar("an event without UID or DTSTART")
    start, all_day = _to_utc(event["DTSTART"].dt, zone)
    if "DTEND" in event:
        end, _ = _to_utc(event["DTEND"].dt, zone)
    elif "DURATION" in event:
        end = start + event["DURATION"].dt
    else:
        end = start + (timedelta(days=1) if all_day else timedelta())
    organizer = _person(event["ORGANIZER"]) if "ORGANIZER" in event else None
    attendees_raw = event.get("ATTENDEE", [])
    if not isinstance(attendees_raw, list):
        attendees_raw = [attendees_raw]
    attendees = capped_attendees([a for a in map(_person, attendees_raw) if a is not None], cut)
    cancelled = str(event.get("STATUS", "")).upper() == "CANCELLED"
    return Occurrence(
        uid=uid,
        recurrence_id=_recurrence_id(
            event["RECURRENCE-ID"].dt
            if raw_uid in recurring and "RECURRENCE-ID" in event
            else None,
            zone,
        ),
        summary=clean_text(str(event.get("SUMMARY", "")), SUMMARY_CHARS).strip(),
        starts_at=start,
        ends_at=end,
        all_day=all_day,
        status="cancelled" if cancelled else "scheduled",
        sequence=bounded_sequence(event.get("SEQUENCE", 0)),
        organizer=organizer,
        attendees=attendees,
        fingerprint=_fingerprint(event, start, end),
    )


def _simple_person(prop: SimpleProperty) -> Attendee | None:
    return person_of(
        prop.value, prop.params.get("CN", ""), prop.params.get("PARTSTAT", "NEEDS-ACTION")
    )


def _simple(
    text: str,
    zone: tzinfo,
    window_start: datetime,
    window_end: datetime,
    budget: Budget | None = None,
    cut: Cut | None = None,
) -> tuple[list[Occurrence], datetime | None] | None:
    """Occurrences of a plain event, single or with one RRULE, without icalendar, and its
    next start after the window; None to hand the object to icalendar."""
    budget = budget or Budget()
    cut = cut if cut is not None else Cut()
    read = read_simple_event(text)
    if read is None:
        return None
    props, content = read
    first = local_time(props["DTSTART"][0], zone)
    if first is None:
        return None
    first_local, all_day = first
    if "DTEND" in props:
        end = local_time(props["DTEND"][0], zone)
        if end is None:
            return None
        duration = end[0].astimezone(UTC) - first_local.astimezone(UTC)
    else:
        duration = timedelta(days=1) if all_day else timedelta()
    sequence = bounded_sequence(props["SEQUENCE"][0].value) if "SEQUENCE" in props else 0
    starts: list[datetime] = [first_local]
    recurring = "RRULE" in props
    if recurring:
        exdates: set[datetime] = set()
        for prop in props.get("EXDATE", []):
            for value in prop.value.split(","):
                when = local_time(SimpleProperty(value, prop.params), zone)
                if when is None:
                    return None
                exdates.add(when[0].astimezone(UTC))
        expanded = expand_rule(
            "RRULE:" + props["RRULE"][0].value,
            first_local,
            exdates,
            window_start,
            window_end,
            duration,
            budget=budget,
        )
        if expanded is None:
            return None
        starts, following, cut_here = expanded
        if cut_here:
            cut.occurrences += cut_here
            cut.sub_hourly = is_sub_hourly(props["RRULE"][0].value)
        next_start = following.astimezone(UTC) if following is not None else None
    else:
        first_utc = first_local.astimezone(UTC)
        next_start = first_utc if first_utc >= window_end else None
    organizer = _simple_person(props["ORGANIZER"][0]) if "ORGANIZER" in props else None
    attendees = capped_attendees(
        [a for a in map(_simple_person, props.get("ATTENDEE", [])) if a is not None], cut
    )
    status = props["STATUS"][0].value.strip().upper() if "STATUS" in props else ""
    uid = bounded_uid(text_of(props["UID"][0]))
    summary = (
        clean_text(text_of(props["SUMMARY"][0]), SUMMARY_CHARS).strip()
        if "SUMMARY" in props
        else ""
    )
    out = []
    for local in starts:
        starts_at = local.astimezone(UTC)
        ends_at = starts_at + duration
        out.append(
            Occurrence(
                uid=uid,
                recurrence_id=_recurrence_id(local.date() if all_day else local, zone)
                if recurring
                else "",
                summary=summary,
                starts_at=starts_at,
                ends_at=ends_at,
                all_day=all_day,
                status="cancelled" if status == "CANCELLED" else "scheduled",
                sequence=sequence,
                organizer=organizer,
                attendees=attendees,
                fingerprint=simple_fingerprint(content, starts_at, ends_at),
            )
        )
    return out, next_start


def meeting_status(occurrence: Occurrence, external: set[str]) -> Status:
    """Cancelled wins; a meeting every external attendee declined is declined."""
    if occurrence.status == "cancelled":
        return "cancelled"
    outside = [a for a in occurrence.attendees if a.address in external]
    if outside and all(a.partstat == "DECLINED" for a in outside):
        return "declined"
    return "scheduled"


def shown_status(status: str, ends_at: datetime, now: datetime) -> str:
    """Scheduled until it ends, then held."""
    return "held" if status == "scheduled" and ends_at <= now else status
