"""Business time: "1 business day" after a message, in the rep's own working week.

Pure: aware datetimes in, aware UTC datetimes out.  Arithmetic runs on the local wall
clock of the rep's zone, so a DST change moves nothing: 09:00 stays 09:00.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from syncd.domain.durations import read_length

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN_UNITS = {"d": "day", "h": "hour"}


@dataclass(frozen=True, slots=True)
class Span:
    """An amount of time: calendar or business, in days or hours."""

    amount: float
    unit: str  # "day" | "hour"
    business: bool

    @classmethod
    def parse(cls, text: str) -> Span:
        """Days or hours as domain/durations.py reads them (``2 days``, ``2d``, ``48h``),
        counted in working time with ``business`` before the unit."""
        length = read_length(text)
        if length is None or length.unit not in _SPAN_UNITS:
            raise ValueError(
                f"{text!r} is not a duration (e.g. '1 business day', '4 business hours', '2 days')"
            )
        return cls(length.amount, _SPAN_UNITS[length.unit], length.business)

    def __str__(self) -> str:
        amount = int(self.amount) if self.amount.is_integer() else self.amount
        kind = "business " if self.business else ""
        return f"{amount} {kind}{self.unit}{'' if amount == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class WorkingWeek:
    zone: tzinfo
    workdays: frozenset[int] = frozenset(range(5))  # Monday = 0
    opens: time = time(9)
    closes: time = time(17)
    holidays: frozenset[date] = frozenset()

    def is_workday(self, day: date) -> bool:
        return day.weekday() in self.workdays and day not in self.holidays

    def add(self, start: datetime, span: Span) -> datetime:
        """``start`` plus ``span``, as UTC."""
        if not span.business:
            hours = span.amount * (24 if span.unit == "day" else 1)
            return start.astimezone(UTC) + timedelta(hours=hours)
        if span.unit == "day":
            return self._add_days(start, span.amount)
        return self._add_hours(start, span.amount)

    # --- helpers on the local wall clock ----------------------------------------------------

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def _utc(self, wall: datetime) -> datetime:
        return wall.replace(tzinfo=self.zone).astimezone(UTC)

    def _next_workday(self, day: date) -> date:
        day += timedelta(days=1)
        for _ in range(3660):  # a decade of holidays is plenty; guards an empty week
            if self.is_workday(day):
                return day
            day += timedelta(days=1)
        raise ValueError("no working day in the next ten years: check workdays and holidays")

    def _into_hours(self, wall: datetime) -> datetime:
        """The first working moment at or after ``wall``."""
        day = wall.date()
        if self.is_workday(day):
            if wall.time() < self.opens:
                return datetime.combine(day, self.opens)
            if wall.time() < self.closes:
                return wall
        return datetime.combine(self._next_workday(day), self.opens)

    def _add_days(self, start: datetime, days: float) -> datetime:
        """N working days later at the same working time (a message at 18:00 on Friday is
        read at 09:00 on Monday; one business day later is 09:00 on Tuesday)."""
        wall = self._into_hours(self._local(start))
        whole = int(days)
        day = wall.date()
        for _ in range(whole):
            day = self._next_workday(day)
        wall = datetime.combine(day, wall.time())
        rest = days - whole
        if rest:
            return self._add_hours(self._utc(wall), rest * self._hours_per_day())
        return self._utc(wall)

    def _add_hours(self, start: datetime, hours: float) -> datetime:
        wall = self._into_hours(self._local(start))
        left = timedelta(hours=hours)
        while True:
            closing = datetime.combine(wall.date(), self.closes)
            if wall + left <= closing:
                return self._utc(wall + left)
            left -= closing - wall
            wall = datetime.combine(self._next_workday(wall.date()), self.opens)

    def _hours_per_day(self) -> float:
        opens = datetime.combine(date.min, self.opens)
        return (datetime.combine(date.min, self.closes) - opens).total_seconds() / 3600


def parse_hours(text: str) -> tuple[time, time]:
    """ "09:00-17:00" -> (09:00, 17:00)."""
    try:
        first, second = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{text!r} is not working hours like '09:00-17:00'") from None
    if first >= second:
        raise ValueError(f"{text!r}: the day must end after it starts")
    return first, second


def parse_workdays(names: list[str]) -> frozenset[int]:
    out = set()
    for name in names:
        key = name.strip().lower()[:3]
        if key not in WEEKDAYS:
            raise ValueError(f"{name!r} is not a weekday (mon, tue, ... sun)")
        out.add(WEEKDAYS.index(key))
    if not out:
        raise ValueError("workdays must name at least one day")
    return frozenset(out)
