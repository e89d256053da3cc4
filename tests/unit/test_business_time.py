"""Business-time arithmetic across weekends, holidays, time zones and DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.business_time import Span, WorkingWeek, parse_hours, parse_workdays

BERLIN = ZoneInfo("Europe/Berlin")
WEEK = WorkingWeek(zone=BERLIN)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("start", "span", "expected"),
    [
        # Tuesday 10:00 + 1 business day: Wednesday 10:00.
        (local(2026, 3, 3, 10), "1 business day", local(2026, 3, 4, 10)),
        # Friday 15:00 + 1 business day: Monday 15:00.
        (local(2026, 3, 6, 15), "1 business day", local(2026, 3, 9, 15)),
        # Friday 18:00 is read on Monday 09:00; one business day later is Tuesday 09:00.
        (local(2026, 3, 6, 18), "1 business day", local(2026, 3, 10, 9)),
        # Saturday: as if it came on Monday morning.
        (local(2026, 3, 7, 11), "3 business days", local(2026, 3, 12, 9)),
        # Hours run within the working day and carry over to the next one.
        (local(2026, 3, 3, 15), "4 business hours", local(2026, 3, 4, 11)),
        (local(2026, 3, 6, 16, 30), "1 business hour", local(2026, 3, 9, 9, 30)),
        # Calendar time ignores the week.
        (local(2026, 3, 6, 18), "2 days", local(2026, 3, 8, 18)),
    ],
)
def test_examples(start: datetime, span: str, expected: datetime) -> None:
    assert WEEK.add(start, Span.parse(span)) == expected.astimezone(UTC)


def test_dst_changes_keep_the_wall_clock() -> None:
    # Europe/Berlin springs forward on Sunday 2026-03-29: Friday 10:00 CET + 1 business day
    # is Monday 10:00 CEST, 71 hours later, not 72.
    due = WEEK.add(local(2026, 3, 27, 10), Span.parse("1 business day"))
    assert due == local(2026, 3, 30, 10).astimezone(UTC)
    assert due - local(2026, 3, 27, 10) == timedelta(hours=71)
    # ... and falls back on 2026-10-25.
    due = WEEK.add(local(2026, 10, 23, 10), Span.parse("1 business day"))
    assert due - local(2026, 10, 23, 10) == timedelta(hours=73)


def test_the_reps_zone_decides_what_a_day_is() -> None:
    # Friday 23:30 UTC is Saturday morning in Tokyo (read Monday 09:00, due Tuesday 09:00)
    # and Friday 18:30 in New York (after hours: read Monday 09:00, due Tuesday 09:00 there).
    moment = datetime(2026, 3, 6, 23, 30, tzinfo=UTC)
    tokyo = WorkingWeek(zone=ZoneInfo("Asia/Tokyo"))
    new_york = WorkingWeek(zone=ZoneInfo("America/New_York"))
    assert tokyo.add(moment, Span.parse("1 business day")) == datetime(
        2026, 3, 10, 9, tzinfo=ZoneInfo("Asia/Tokyo")
    )
    assert new_york.add(moment, Span.parse("1 business day")) == datetime(
        2026, 3, 10, 9, tzinfo=ZoneInfo("America/New_York")
    )


def test_holidays_and_custom_weeks() -> None:
    week = WorkingWeek(
        zone=BERLIN,
        workdays=parse_workdays(["sun", "mon", "tue", "wed", "thu"]),
        opens=time(8),
        closes=time(16),
        holidays=frozenset({date(2026, 12, 24), date(2026, 12, 25)}),
    )
    # Wednesday 23rd + 1 business day skips the 24th and 25th (holidays) and Friday/Saturday.
    assert week.add(local(2026, 12, 23, 9), Span.parse("1 business day")) == local(
        2026, 12, 27, 9
    ).astimezone(UTC)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(0, 20),
    st.sampled_from(
        ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC", "Australia/Sydney"]
    ),
)
def test_business_days_land_in_working_hours_and_grow(
    start: datetime, days: int, zone: str
) -> None:
    week = WorkingWeek(zone=ZoneInfo(zone))
    due = week.add(start, Span(days, "day", True))
    wall = due.astimezone(week.zone)
    assert due >= start
    assert week.is_workday(wall.date())
    assert week.opens <= wall.time().replace(fold=0) <= week.closes
    assert week.add(start, Span(days + 1, "day", True)) > due


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(1, 60),
)
def test_business_hours_add_up(start: datetime, hours: int) -> None:
    # n hours then m hours is n + m hours.
    first = WEEK.add(start, Span(hours, "hour", True))
    assert WEEK.add(first, Span(3, "hour", True)) == WEEK.add(start, Span(hours + 3, "hour", True))


@pytest.mark.parametrize("text", ["1 business week", "soon", "-1 days", "1.5.1 hours", ""])
def test_bad_spans_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        Span.parse(text)


def test_hours_and_workdays_are_checked() -> None:
    assert parse_hours("08:30-17:15") == (time(8, 30), time(17, 15))
    with pytest.raises(ValueError, match="end after it starts"):
        parse_hours("17:00-09:00")
    with pytest.raises(ValueError, match="not a weekday"):
        parse_workdays(["mon", "funday"])
