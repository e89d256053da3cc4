"""A fast reader for the most common calendar object: one plain VEVENT, single or with one
RRULE (and EXDATEs).

Parsing with icalendar costs more than everything else in a first calendar sync
(bench/meetings.py --events 2000: a first sync takes 1.7-1.8x the server's own listing
with this reader and 2.4-3.7x with icalendar alone, against a target of 2x).  Most objects hold one event with UTC, IANA-zoned,
floating or all-day times; those are read here line by line.  Anything else (overrides,
RDATE, several events, nested components such as VALARM, Windows zone names, DURATION)
returns None and goes to icalendar.  Both readers make the same ``Occurrence`` values,
fingerprint included (tests/unit/test_reader_differential.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr

from syncd.domain.bounds import SUBJECT_MAX, bound_sequence, bound_text, bound_uid
from syncd.domain.calendar_limits import (
    MAX_RULE_STEPS,
    SUB_HOURLY,
    Budget,
    Cut,
    OverBudget,
    occurrence_cap,
    rule_steps,
)
from syncd.domain.occurrences import (
    Attendee,
    Occurrence,
    capped_attendees,
    person_of,
    recurrence_id_of,
)

_UNFOLD = re.compile(r"\r?\n[ \t]")
_NAME = re.compile(r"[A-Za-z0-9-]+")
_UNQUOTED = re.compile(r'[^";:]*')  # a run of unquoted parameter values and their commas
# RRULE and EXDATE are read (see expand_rule); the rest needs icalendar.
_UNSAFE = ("RDATE", "RECURRENCE-ID", "DURATION", "EXRULE")
_ESCAPES = re.compile(r"\\([\\;,nN])")


@dataclass(frozen=True, slots=True)
class SimpleProperty:
    value: str
    params: dict[str, str]


def _unescape(value: str) -> str:
    return _ESCAPES.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def split_line(line: str) -> tuple[str, dict[str, str], str] | None:
    """(upper-case name, parameters, value) of one unfolded content line; None if it is not
    one (RFC 5545 3.1: name *(";" param) ":" value; 3.2: param values, quoted or not).

    One forward pass that never goes back: the line is untrusted text, and the regex this
    replaces nested a parameter's comma list inside the repeated parameter group, which
    backtracked exponentially on ``;A=,,;A=,,...`` followed by anything but a colon.
    A parameter's value is its first quoted value without the quotes, or else its unquoted
    text up to any quoted one (``a,b`` stays ``a,b``), as that regex reader gave it; a
    semicolon or colon inside quotes is part of the value.
    """
    found = _NAME.match(line)
    if found is None:
        return None
    name, at, size = found.group().upper(), found.end(), len(line)
    params: dict[str, str] = {}
    while at < size and line[at] == ";":
        key = _NAME.match(line, at + 1)
        if key is None or key.end() >= size or line[key.end()] != "=":
            return None
        at, first = key.end() + 1, None
        while True:  # the comma-separated values, left to right
            if at < size and line[at] == '"':
                close = line.find('"', at + 1)
                if close < 0:
                    return None
                value, at = line[at + 1 : close], close + 1
                more = at < size and line[at] == ","
                at += more
            else:
                # Unquoted values and their commas in one run; a quoted value may follow a comma.
                run = _UNQUOTED.search(line, at)  # never None: the run may be empty
                value, at = (line[at : run.end()], run.end()) if run else ("", at)
                more = at < size and line[at] == '"'
                if more and not value.endswith(","):
                    return None
            first = value if first is None else first
            if not more:
                break
        params[key.group().upper()] = first
    if at >= size or line[at] != ":":
        return None
    return name, params, line[at + 1 :]


def read_simple_event(text: str) -> dict[str, list[SimpleProperty]] | None:
    """The properties of the one VEVENT; None if not a simple event."""
    if text.count("BEGIN:VEVENT") != 1 or "BEGIN:VALARM" in text:
        return None
    props: dict[str, list[SimpleProperty]] = {}
    inside = False
    for line in _UNFOLD.sub("", text).splitlines():
        if line == "BEGIN:VEVENT":
            inside = True
            continue
        if line == "END:VEVENT":
            inside = False
            continue
        if not inside:
            continue
        head, colon, value = line.partition(":")
        params: dict[str, str]
        if colon and ";" not in head and '"' not in head and _NAME.fullmatch(head):
            # Most lines carry no parameters: no need for the full line grammar.
            name, params = head.upper(), {}
        else:
            split = split_line(line)
            if split is None:
                return None
            name, params, value = split
        if name in _UNSAFE or name.startswith("BEGIN"):
            return None
        props.setdefault(name, []).append(SimpleProperty(value, params))
    if inside or "UID" not in props or "DTSTART" not in props:
        return None
    if len(props.get("RRULE", [])) > 1:
        return None
    return props


def rule_parts(rule: str) -> dict[str, list[str]]:
    """``FREQ=DAILY;BYDAY=MO,TU`` -> {"FREQ": ["DAILY"], "BYDAY": ["MO", "TU"]}."""
    out: dict[str, list[str]] = {}
    for part in rule.removeprefix("RRULE:").split(";"):
        name, _, values = part.partition("=")
        out[name.strip().upper()] = values.split(",")
    return out


def is_sub_hourly(rule: str) -> bool:
    return bool(set(rule_parts(rule).get("FREQ", [])) & SUB_HOURLY)


def expand_rule(
    rule: str,
    first: datetime,
    exdates: set[datetime],
    window_start: datetime,
    window_end: datetime,
    duration: timedelta,
    *,
    budget: Budget | None = None,
) -> tuple[list[datetime], datetime | None, int] | None:
    """Starts of the occurrences of ``rule`` that overlap the window, as local aware times,
    the first start after the window (None when the series ends before), and how many
    occurrences in the window the cap cut (calendar_limits).

    ``first`` carries the event's own zone, so the rule steps in wall-clock time across DST
    changes (RFC 5545 3.3.10).  None for a rule dateutil cannot read.  One lazy walk from
    DTSTART, checking the CPU budget as it goes: never a list of the whole series, and
    never a walk per EXDATE.  A rule whose walk is too long is refused before it starts.
    """
    budget = budget or Budget()
    parts = rule_parts(rule)
    span = (window_start - first.astimezone(UTC)).total_seconds()
    if rule_steps(parts, span) > MAX_RULE_STEPS:
        raise OverBudget(
            f"recurrence too long to expand: over {MAX_RULE_STEPS:,} steps "
            "from DTSTART to the window's start"
        )
    try:
        recurrence = rrulestr(rule, dtstart=first, ignoretz=False)
    except (ValueError, TypeError):
        return None
    cap = occurrence_cap(set(parts.get("FREQ", [])))
    earliest = window_start - duration
    starts: list[datetime] = []
    following: datetime | None = None
    walked = False
    for n, start in enumerate(recurrence):
        if n == 0 and start != first:
            # DTSTART off the rule: RFC 5545 counts it as the first occurrence anyway,
            # dateutil does not; icalendar's expander follows the RFC.
            return None
        walked = True
        if n % 256 == 0:
            budget.check()
        if start < earliest:
            continue
        excluded = start.astimezone(UTC) in exdates
        if start > window_end:
            if not excluded:
                following = start
                break
            continue
        if excluded:
            continue
        if len(starts) == cap:
            # Capped: the rest of the window is not walked, and the object is not read again
            # as the window moves (what it would add is cut anyway).
            return starts, None, 1
        starts.append(start)
    if not walked:  # a rule with no occurrence at all: DTSTART alone, by the RFC
        return None
    return starts, following, 0


def local_time(prop: SimpleProperty, zone: tzinfo) -> tuple[datetime, bool] | None:
    """(aware time in its own zone, whole day) of a DTSTART/DTEND/EXDATE value; None when the
    zone needs icalendar."""
    value = prop.value.strip()
    try:
        if prop.params.get("VALUE", "").upper() == "DATE" or len(value) == 8:
            day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
            return datetime.combine(day, time.min, tzinfo=zone), True
        if len(value) not in (15, 16) or value[8] != "T":
            return None
        # Slicing, not strptime: this runs for every event of a first sync.
        moment = datetime(
            int(value[:4]), int(value[4:6]), int(value[6:8]),
            int(value[9:11]), int(value[11:13]), int(value[13:15]),
        )  # fmt: skip
    except ValueError:
        return None
    if value.endswith("Z"):
        return moment.replace(tzinfo=UTC), False
    tzid = prop.params.get("TZID")
    if tzid is None:
        return moment.replace(tzinfo=zone), False
    try:
        return moment.replace(tzinfo=ZoneInfo(tzid)), False
    except (ZoneInfoNotFoundError, ValueError):
        return None  # a Windows or custom zone: icalendar knows those


def simple_time(prop: SimpleProperty, zone: tzinfo) -> tuple[datetime, bool] | None:
    """(UTC time, whole day) of a DTSTART/DTEND; None when the zone needs icalendar."""
    found = local_time(prop, zone)
    return None if found is None else (found[0].astimezone(UTC), found[1])


def text_of(prop: SimpleProperty) -> str:
    return _unescape(prop.value)


def _simple_person(prop: SimpleProperty) -> Attendee | None:
    return person_of(
        prop.value, prop.params.get("CN", ""), prop.params.get("PARTSTAT", "NEEDS-ACTION")
    )


def read_simple(
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
    props = read_simple_event(text)
    if props is None:
        return None
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
    sequence = bound_sequence(props["SEQUENCE"][0].value) if "SEQUENCE" in props else 0
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
    uid = bound_uid(text_of(props["UID"][0]))
    summary = (
        bound_text(text_of(props["SUMMARY"][0]), SUBJECT_MAX).strip() if "SUMMARY" in props else ""
    )
    out = []
    for local in starts:
        starts_at = local.astimezone(UTC)
        ends_at = starts_at + duration
        out.append(
            Occurrence(
                uid=uid,
                recurrence_id=recurrence_id_of(local.date() if all_day else local, zone)
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
            )
        )
    return out, next_start
