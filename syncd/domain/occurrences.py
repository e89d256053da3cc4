"""One meeting occurrence as syncd keeps it, and its fingerprint.  No I/O.

Both calendar readers (the fast one in ``simple_ical`` and icalendar's in ``meetings``)
produce ``Occurrence`` values; the fingerprint is computed here, from the normalised
fields, so the same event has the same fingerprint whichever reader parsed it (an event
that gains a VALARM moves to the other reader without becoming "updated").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any, Literal

from syncd.domain.addresses import normalize_address, normalize_name
from syncd.domain.bounds import ADDRESS_MAX, NAME_MAX, TOKEN_MAX, bound_text, storable_address
from syncd.domain.calendar_limits import MAX_ATTENDEES, Cut

Status = Literal["scheduled", "cancelled", "declined"]


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
    # Changes exactly when what the record shows does; derived, never passed in.
    fingerprint: str = field(init=False, compare=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", fingerprint(self))

    @property
    def key(self) -> str:
        return f"meeting:{self.uid}|{self.recurrence_id}"


def fingerprint(o: Occurrence) -> str:
    """A digest of what a meeting record shows of an occurrence: summary, times, status,
    organizer, and attendees with their answers (in any order: reordered ATTENDEE lines are
    no change).  Stamps (DTSTAMP, LAST-MODIFIED), alarms, descriptions and the rule lines
    are not in it: they change nothing the record shows.  SEQUENCE is not either: a raised
    SEQUENCE is an update by its own rule (``meeting_changes``), a lower one (a stale copy)
    is not."""

    def person(p: Attendee | None) -> str:
        return "" if p is None else f"{p.address}\x1f{p.name}\x1f{p.partstat}"

    parts = [
        o.uid,
        o.recurrence_id,
        o.summary,
        o.starts_at.astimezone(UTC).isoformat(),
        o.ends_at.astimezone(UTC).isoformat(),
        "all-day" if o.all_day else "timed",
        o.status,
        person(o.organizer),
        *sorted(person(a) for a in o.attendees),
    ]
    digest = hashlib.sha256("\x1e".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def to_utc(value: Any, zone: tzinfo) -> tuple[datetime, bool]:
    """(UTC datetime, is a whole day) of a DTSTART/DTEND/RECURRENCE-ID value."""
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating: the wall clock of wherever the people are
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC), False
    if isinstance(value, date):
        return datetime.combine(value, time.min, tzinfo=zone).astimezone(UTC), True
    raise BrokenCalendar(f"not a date or time: {value!r}")


def recurrence_id_of(value: Any, zone: tzinfo) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return to_utc(value, zone)[0].strftime("%Y%m%dT%H%M%SZ")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    raise BrokenCalendar(f"bad RECURRENCE-ID: {value!r}")


def person_of(raw: str, name: str, partstat: str) -> Attendee | None:
    """An organizer or attendee whose values fit the schema; None for what is not an address
    (an address longer than any mailbox can have is not one: ``bounds.storable_address``)."""
    raw = raw.strip()
    if len(raw) > ADDRESS_MAX + 9:  # "mailto:" or "<>" around the longest address
        return None
    address = normalize_address(raw[7:] if raw.lower().startswith("mailto:") else raw)
    if address is None or not address.isprintable() or storable_address(address) is None:
        return None
    return Attendee(
        address,
        normalize_name(bound_text(name, NAME_MAX)),
        bound_text(partstat, TOKEN_MAX).upper(),
    )


def capped_attendees(found: list[Attendee], cut: Cut) -> tuple[Attendee, ...]:
    if len(found) > MAX_ATTENDEES:
        cut.attendees = max(cut.attendees, len(found) - MAX_ATTENDEES)
        found = found[:MAX_ATTENDEES]
    return tuple(found)


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
