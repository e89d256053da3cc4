"""First-response times in business hours: how fast customers' emails got an answer.

Pure: the store pairs each inbound customer email with the first outbound email after it
in its thread (the reply that closes an ``unanswered_inbound`` task); this module measures
the wait on the rep's own working clock and sums the waits of a group up.

The wait is counted on the local wall clock of the rep's zone, like ``WorkingWeek.add``:
a working day is ``closes - opens`` hours whatever DST does, so an answer exactly one
business day later (``WorkingWeek.add(t, 1 business day)``) waited one working day's hours.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import NamedTuple

from syncd.domain.business_time import WorkingWeek

_EPSILON = 1e-9  # hours: float noise, far below a second


class BusinessClock:
    """Working hours elapsed between two moments, for one rep's working week.

    Constant time per question whatever the distance: whole weeks are counted by
    arithmetic and holidays by bisection, so a reply after months costs what one after
    minutes does.
    """

    def __init__(self, week: WorkingWeek) -> None:
        self.week = week
        self._opens = _hours(week.opens)
        self._closes = _hours(week.closes)
        self.day_hours = self._closes - self._opens
        self._holidays = sorted(d for d in week.holidays if d.weekday() in week.workdays)
        self._per_week = len(week.workdays)

    def hours_between(self, start: datetime, end: datetime) -> float:
        """Business hours from ``start`` to ``end`` (aware datetimes); 0 when end <= start."""
        if end <= start:
            return 0.0
        a = start.astimezone(self.week.zone).replace(tzinfo=None)
        b = end.astimezone(self.week.zone).replace(tzinfo=None)
        if b <= a:  # the wall clock went back (DST) within the wait
            return 0.0
        first, last = a.date(), b.date()
        if first == last:
            return self._within(first, _hours(a.time()), _hours(b.time()))
        total = self._within(first, _hours(a.time()), 24.0)
        total += self._within(last, 0.0, _hours(b.time()))
        return total + self.day_hours * self._workdays_between(first, last)

    def within_one_day(self, start: datetime, end: datetime) -> bool:
        """Whether ``end`` is at most one business day after ``start``."""
        return self.hours_between(start, end) <= self.day_hours + _EPSILON

    def _within(self, day: date, lo: float, hi: float) -> float:
        """Working hours of ``day`` between wall-clock hours ``lo`` and ``hi``."""
        if not self.week.is_workday(day):
            return 0.0
        return max(0.0, min(hi, self._closes) - max(lo, self._opens))

    def _workdays_between(self, first: date, last: date) -> int:
        """Working days strictly after ``first`` and strictly before ``last``."""
        days = (last - first).days - 1
        if days <= 0:
            return 0
        weeks, rest = divmod(days, 7)
        count = weeks * self._per_week
        day = first + timedelta(days=1 + weeks * 7)
        for offset in range(rest):
            if (day + timedelta(days=offset)).weekday() in self.week.workdays:
                count += 1
        lo = bisect.bisect_right(self._holidays, first)
        hi = bisect.bisect_left(self._holidays, last)
        return count - max(0, hi - lo)


def _hours(moment: time) -> float:
    return moment.hour + moment.minute / 60 + moment.second / 3600 + moment.microsecond / 3.6e9


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation between the closest
    ranks (the method of numpy's default and ``statistics.quantiles(method="inclusive")``);
    None for no values."""
    if not values:
        return None
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside 0..1")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    return ordered[below] + (ordered[above] - ordered[below]) * fraction


class Wait(NamedTuple):
    """One inbound customer email and its first reply (None: unanswered)."""

    group: str  # the rep or the customer it is counted under
    asked_at: datetime
    replied_at: datetime | None
    clock: BusinessClock  # the working week of the rep who received it


@dataclass(frozen=True, slots=True)
class ResponseStats:
    group: str
    answered: int
    unanswered: int
    median_business_hours: float | None
    p90_business_hours: float | None
    within_1_business_day: float | None  # share of the answered, 0..1


def summarize(waits: Iterable[Wait], now: datetime) -> list[ResponseStats]:
    """Per group: how many were answered, how long that took, how many were not; groups
    in name order.

    An email without a reply that is still within its first business day at ``now`` is
    pending, neither answered nor unanswered: the rep still has the time the
    ``unanswered_inbound`` rule gives, so counting it would show mail that arrived minutes
    ago as a failure.  It counts as answered once answered, as unanswered once the day is
    over (when the rule would ask for a reply)."""
    hours: dict[str, list[float]] = defaultdict(list)
    quick: dict[str, int] = defaultdict(int)
    unanswered: dict[str, int] = defaultdict(int)
    for group, asked_at, replied_at, clock in waits:
        if replied_at is None:
            if clock.within_one_day(asked_at, now):
                continue  # pending
            unanswered[group] += 1
            hours.setdefault(group, [])  # listed, though nothing was answered
            continue
        spent = clock.hours_between(asked_at, replied_at)
        hours[group].append(spent)
        quick[group] += spent <= clock.day_hours + _EPSILON
    out = []
    for group in sorted(hours):
        spent_all = hours[group]
        out.append(
            ResponseStats(
                group=group,
                answered=len(spent_all),
                unanswered=unanswered[group],
                median_business_hours=_round(percentile(spent_all, 0.5)),
                p90_business_hours=_round(percentile(spent_all, 0.9)),
                within_1_business_day=(
                    round(quick[group] / len(spent_all), 4) if spent_all else None
                ),
            )
        )
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
