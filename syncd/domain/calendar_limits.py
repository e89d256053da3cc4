"""Bounds on what one calendar object may cost.  No I/O.

Calendars are writable by anyone who can send an invitation, so every object is read
under fixed limits: its size, its occurrences in the capture window, its attendees per
occurrence and the CPU time spent expanding it.  What is cut is reported (``Cut``) so
the engine can log and count it.  The values that reach the database are bounded to
their columns by ``domain/bounds``, the one module that knows the schema's limits.
"""

from __future__ import annotations

import contextlib
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
