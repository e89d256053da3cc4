"""Bounds on what one calendar object may cost and what its values may hold.  No I/O.

Calendars are writable by anyone who can send an invitation, so every object is read
under fixed limits: its size, its occurrences in the capture window, its attendees per
occurrence, the CPU time spent expanding it, and the length of every value that reaches
the database.  What is cut is reported (``Cut``) so the engine can log and count it.

Values are bounded here, in one place, so that every one fits its column by design
(schema/tables.py): ``records.ical_uid`` 1000, ``records.key`` 1100, ``organizer`` and
``participants.address`` 320, ``participants.name`` 300, ``recurrence_id`` 32.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field

# An invitation is a few kilobytes; a long series with many overrides a few hundred.
MAX_OBJECT_BYTES = 1_000_000
# Occurrences of one object kept in the capture window.  A daily series over a year-long
# window is 366; an hourly one in working hours about 2,000, which is no meeting anyone logs.
MAX_OCCURRENCES = 1000
# SECONDLY and MINUTELY series are not meetings; the first few are kept, the rest cut.
MAX_SUB_HOURLY_OCCURRENCES = 24
SUB_HOURLY = frozenset({"SECONDLY", "MINUTELY"})
# Attendees kept per occurrence (the organizer comes on top).  Larger lists are
# distribution lists, not a meeting's people.
MAX_ATTENDEES = 200
# CPU seconds one object may spend being read and expanded; checked between steps.
CPU_BUDGET_SECONDS = 2.0

UID_CHARS = 255  # longer UIDs keep a prefix and a hash of the whole (stable across syncs)
ADDRESS_CHARS = 320  # RFC 5321 allows 254; longer is not an address
NAME_CHARS = 300
SUMMARY_CHARS = 1000
SEQUENCE_MAX = 2**31 - 1  # records.sequence is a 32-bit INTEGER on PostgreSQL


class OverBudget(Exception):
    """The object spent its CPU budget: quarantine it."""


@dataclass(slots=True)
class Budget:
    """A deadline for one object, on the thread's CPU clock (a busy host does not count)."""

    seconds: float = CPU_BUDGET_SECONDS
    _deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self._deadline = time.thread_time() + self.seconds

    def check(self) -> None:
        if time.thread_time() > self._deadline:
            raise OverBudget(f"over the CPU budget of {self.seconds:g} s per object")


@dataclass(slots=True)
class Cut:
    """What the limits removed from one object, for the log and the quarantine list."""

    occurrences: int = 0  # occurrences in the window beyond the cap
    attendees: int = 0  # attendees beyond the cap (per occurrence, counted once)
    sub_hourly: bool = False

    def __bool__(self) -> bool:
        return bool(self.occurrences or self.attendees or self.sub_hourly)

    def reason(self) -> str:
        parts = []
        if self.sub_hourly:
            parts.append(f"sub-hourly recurrence kept to {MAX_SUB_HOURLY_OCCURRENCES} occurrences")
        elif self.occurrences:
            parts.append(f"occurrences in the window capped at {MAX_OCCURRENCES}")
        if self.attendees:
            parts.append(f"{self.attendees} attendees beyond {MAX_ATTENDEES} dropped")
        return "capped: " + "; ".join(parts)


def occurrence_cap(frequencies: set[str]) -> int:
    return MAX_SUB_HOURLY_OCCURRENCES if frequencies & SUB_HOURLY else MAX_OCCURRENCES


def clean_text(value: str, limit: int) -> str:
    """Text without NUL (PostgreSQL refuses it) nor other C0 controls but newline and tab,
    cut to ``limit`` characters."""
    if len(value) > limit:
        value = value[:limit]
    if value.isprintable():
        return value
    return "".join(c for c in value if c.isprintable() or c in "\n\t")


def bounded_uid(uid: str) -> str:
    """A UID that fits: long ones keep a readable prefix and a hash of the whole, so the same
    UID always maps to the same value and two long UIDs never collide."""
    uid = uid.strip()
    if len(uid) <= UID_CHARS and uid.isprintable():
        return uid
    digest = hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return clean_text(uid, UID_CHARS - 34) + "~" + digest


def bounded_sequence(raw: object) -> int:
    """SEQUENCE as an int in range; an unreadable one counts as 0 (it only orders updates,
    and a bad one must not cost the meeting)."""
    try:
        value = int(str(raw).strip() or 0)
    except ValueError:
        return 0
    return min(max(value, 0), SEQUENCE_MAX)


# Expanding a rule walks every step from DTSTART, including the ones before the window
# (dateutil has no way to start later); a rule whose walk to the window's start is longer
# than this is refused unexpanded (a SECONDLY series from 1970 would otherwise hold a
# worker for hours inside dateutil, where no budget check can run).  Inside the window the
# walk stops at the occurrence cap.
MAX_RULE_STEPS = 300_000
_STEP_SECONDS = {
    "SECONDLY": 1,
    "MINUTELY": 60,
    "HOURLY": 3600,
    "DAILY": 86400,
    "WEEKLY": 7 * 86400,
    "MONTHLY": 28 * 86400,
    "YEARLY": 365 * 86400,
}
# BY parts that can multiply the candidates of each step (RFC 5545 3.3.10's expand column).
_EXPANDING = (
    "BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH",
)  # fmt: skip


def rule_steps(parts: dict[str, list[str]], span_seconds: float) -> float:
    """An upper estimate of the candidates a rule generates over ``span_seconds`` from its
    DTSTART: steps of its frequency and interval, times the values of expanding BY parts.
    ``parts`` maps upper-case rule part names to their values.  An unknown frequency is
    0: the rule's reader refuses it."""
    freq = (parts.get("FREQ") or ["DAILY"])[0].upper()
    if freq not in _STEP_SECONDS:
        return 0.0
    try:
        interval = max(1, int((parts.get("INTERVAL") or ["1"])[0]))
    except ValueError:
        interval = 1
    steps = max(span_seconds, 0) / (_STEP_SECONDS.get(freq, 1) * interval) + 1
    for name in _EXPANDING:
        steps *= max(1, len(parts.get(name) or []))
    if parts.get("COUNT"):
        with contextlib.suppress(ValueError):
            steps = min(steps, int(parts["COUNT"][0]) * 1.0)
    return steps


def chunk_seconds(parts: dict[str, list[str]]) -> float:
    """How much time to expand at once so that a chunk holds about 1,000 candidates: the
    expander materialises a whole chunk, so this bounds memory and the time between two
    budget checks (at least a minute, so a chunk always moves on)."""
    per_step = rule_steps({k: v for k, v in parts.items() if k != "COUNT"}, 0)
    freq = (parts.get("FREQ") or ["DAILY"])[0].upper()
    try:
        interval = max(1, int((parts.get("INTERVAL") or ["1"])[0]))
    except ValueError:
        interval = 1
    step = _STEP_SECONDS.get(freq, 86400) * interval
    return max(60.0, 1000 * step / max(per_step, 1.0))
