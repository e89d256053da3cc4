"""The pure parts of customer insight: business-hour waits, percentiles, the gone_quiet
decision, the customer list's order and the periods typed on the command line."""

from __future__ import annotations

import re
import statistics
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.config_file import parse_config
from syncd.domain.business_time import Span, WorkingWeek
from syncd.domain.insight import arrange
from syncd.domain.periods import FORM, parse_period
from syncd.domain.quiet import QuietCustomer, QuietRule, RecordPeople, gone_quiet, rep_of
from syncd.domain.responses import BusinessClock, Wait, percentile, summarize
from syncd.errors import ConfigError

BERLIN = ZoneInfo("Europe/Berlin")
WEEK = WorkingWeek(zone=BERLIN, holidays=frozenset({date(2026, 12, 24), date(2026, 12, 25)}))
CLOCK = BusinessClock(WEEK)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


# --- business hours between two moments --------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "hours"),
    [
        (berlin(2026, 3, 3, 10), berlin(2026, 3, 3, 12, 30), 2.5),  # same morning
        (berlin(2026, 3, 3, 7), berlin(2026, 3, 3, 20), 8.0),  # before opening to after closing
        (berlin(2026, 3, 6, 16), berlin(2026, 3, 9, 10), 2.0),  # Friday 16:00 to Monday 10:00
        (berlin(2026, 3, 7, 10), berlin(2026, 3, 8, 18), 0.0),  # all weekend
        (berlin(2026, 12, 23, 16), berlin(2026, 12, 28, 10), 2.0),  # over two holidays
        (berlin(2026, 3, 27, 16), berlin(2026, 3, 30, 10), 2.0),  # over the spring DST change
        (berlin(2026, 3, 3, 10), berlin(2026, 3, 3, 9), 0.0),  # a reply "before" the ask
    ],
)
def test_business_hours_between_known_cases(start: datetime, end: datetime, hours: float) -> None:
    assert CLOCK.hours_between(start, end) == pytest.approx(hours)


def _brute_hours(week: WorkingWeek, start: datetime, end: datetime) -> float:
    """Minute by minute on the wall clock: slow and obviously right."""
    a = start.astimezone(week.zone).replace(tzinfo=None, second=0, microsecond=0)
    b = end.astimezone(week.zone).replace(tzinfo=None, second=0, microsecond=0)
    minutes = 0
    day = a.date()
    while day <= b.date():
        if week.is_workday(day):
            lo = max(a, datetime.combine(day, week.opens))
            hi = min(b, datetime.combine(day, week.closes))
            minutes += max(0, int((hi - lo).total_seconds() // 60))
        day += timedelta(days=1)
    return minutes / 60


ZONES = st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"])
HOURS = st.sampled_from([(time(9), time(17)), (time(8, 30), time(16)), (time(10), time(19))])
WORKDAYS = st.sets(st.integers(0, 6), min_size=1).map(frozenset)
MOMENTS = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
)
HOLIDAYS = st.sets(st.dates(date(2025, 1, 1), date(2027, 12, 31)), max_size=20).map(frozenset)


@st.composite
def weeks(draw: st.DrawFn) -> WorkingWeek:
    opens, closes = draw(HOURS)
    return WorkingWeek(ZoneInfo(draw(ZONES)), draw(WORKDAYS), opens, closes, draw(HOLIDAYS))


@settings(max_examples=60, deadline=None)
@given(week=weeks(), start=MOMENTS, span=st.integers(0, 90 * 24 * 60))
def test_business_hours_agree_with_a_minute_by_minute_count(
    week: WorkingWeek, start: datetime, span: int
) -> None:
    end = start + timedelta(minutes=span)
    assert BusinessClock(week).hours_between(start, end) == pytest.approx(
        _brute_hours(week, start, end), abs=1e-6
    )


@settings(max_examples=200, deadline=None)
@given(week=weeks(), start=MOMENTS, hours=st.integers(1, 400))
def test_a_wait_of_n_business_hours_is_what_working_week_add_calls_n_hours(
    week: WorkingWeek, start: datetime, hours: int
) -> None:
    end = week.add(start, Span(hours, "hour", True))
    assert BusinessClock(week).hours_between(start, end) == pytest.approx(hours, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(week=weeks(), start=MOMENTS, wait=st.integers(0, 20 * 24 * 60))
def test_within_one_business_day_is_the_unanswered_rules_deadline(
    week: WorkingWeek, start: datetime, wait: int
) -> None:
    reply = start + timedelta(minutes=wait)
    deadline = week.add(start, Span(1, "day", True))
    assert BusinessClock(week).within_one_day(start, reply) == (reply <= deadline)


# --- percentiles and the summary -----------------------------------------------------------


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_match_the_standard_library(values: list[float]) -> None:
    assert percentile(values, 0.5) == pytest.approx(statistics.median(values))
    assert min(values) <= percentile(values, 0.9) <= max(values)  # type: ignore[operator]
    if len(values) >= 2:
        p90 = statistics.quantiles(values, n=10, method="inclusive")[8]
        assert percentile(values, 0.9) == pytest.approx(p90)
    assert percentile(values, 0.0) == min(values) and percentile(values, 1.0) == max(values)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1), st.floats(0, 1), st.floats(0, 1))
def test_percentiles_grow_with_q(values: list[float], q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    assert percentile(values, low) <= percentile(values, high)  # type: ignore[operator]


def test_percentile_of_nothing_is_none_and_q_is_checked() -> None:
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 1.5)


def test_summary_per_group() -> None:
    ask = berlin(2026, 3, 3, 10)  # Tuesday
    waits = [
        Wait("alice", ask, ask + timedelta(hours=1), CLOCK),
        Wait("alice", ask, ask + timedelta(hours=3), CLOCK),
        Wait("alice", ask, berlin(2026, 3, 5, 10), CLOCK),  # two business days: 16 h
        Wait("alice", ask, None, CLOCK),
        Wait("bob", ask, None, CLOCK),
    ]
    alice, bob = summarize(waits, now=berlin(2026, 3, 10, 10))
    assert (alice.group, alice.answered, alice.unanswered) == ("alice", 3, 1)
    assert alice.median_business_hours == 3.0
    assert alice.p90_business_hours == pytest.approx(13.4)  # 3 + 0.8 * (16 - 3)
    assert alice.within_1_business_day == pytest.approx(2 / 3, abs=1e-4)
    assert (bob.answered, bob.unanswered, bob.median_business_hours) == (0, 1, None)
    assert bob.within_1_business_day is None


def test_mail_still_within_its_first_business_day_is_pending_not_unanswered() -> None:
    """Unanswered means the rep had the business day the unanswered_inbound rule gives and
    let it pass: mail that came in an hour ago is neither answered nor unanswered yet."""
    friday_16 = berlin(2026, 3, 6, 16)  # an hour before closing: due Monday 16:00
    fresh = berlin(2026, 3, 9, 9)  # Monday at opening
    waits = [
        Wait("alice", friday_16, None, CLOCK),
        Wait("alice", fresh, None, CLOCK),
        Wait("alice", fresh, fresh + timedelta(minutes=30), CLOCK),  # answered: counted
        Wait("bob", fresh, None, CLOCK),  # only pending mail: nothing to report yet
    ]
    (alice,) = summarize(waits, now=berlin(2026, 3, 9, 10))
    assert (alice.answered, alice.unanswered) == (1, 0)
    (alice,) = summarize(waits[:3], now=berlin(2026, 3, 9, 16, 1))  # Friday's day is over
    assert (alice.answered, alice.unanswered) == (1, 1)
    later = summarize(waits, now=berlin(2026, 3, 10, 9, 1))  # Monday's too
    assert [(s.group, s.answered, s.unanswered) for s in later] == [
        ("alice", 1, 2),
        ("bob", 0, 1),
    ]


# --- gone_quiet --------------------------------------------------------------------------

RULE = QuietRule(Span(30, "day", False), 3, timedelta(days=90))
LAST = datetime(2026, 3, 2, 10, tzinfo=UTC)


def quiet(**changes: object) -> QuietCustomer:
    fields: dict[str, object] = {
        "customer_id": 7, "name": "Acme Corp", "last_record_id": 70, "last_at": LAST,
        "nth_last_at": LAST - timedelta(days=20), "rep": "alice@example.com",
    }  # fmt: skip
    fields.update(changes)
    return QuietCustomer(**fields)  # type: ignore[arg-type]


def week_of(_: str) -> WorkingWeek:
    return WEEK


def test_gone_quiet_asks_the_rep_once_the_silence_lasted() -> None:
    now = LAST + timedelta(days=31)
    task = gone_quiet(quiet(), RULE, week_of, now, now - timedelta(days=14))
    assert task is not None
    assert (task.rule, task.record_id, task.owner, task.customer_id) == (
        "gone_quiet", 70, "alice@example.com", 7,
    )  # fmt: skip
    assert task.due_at == LAST + timedelta(days=30)
    assert task.title == "Get back in touch with Acme Corp: nothing since 2026-03-02"


@pytest.mark.parametrize(
    ("customer", "days_after", "why"),
    [
        (quiet(), 29, "not quiet for 30 days yet"),
        (quiet(nth_last_at=None), 31, "fewer than 3 records ever"),
        (quiet(nth_last_at=LAST - timedelta(days=91)), 31, "3 records, but not within 90 days"),
        (quiet(rep=None), 31, "nobody of ours took part"),
        (quiet(), 30 + 15, "due before the lookback: a backfill's old silence"),
    ],
)
def test_gone_quiet_stays_silent(customer: QuietCustomer, days_after: int, why: str) -> None:
    now = LAST + timedelta(days=days_after)
    assert gone_quiet(customer, RULE, week_of, now, now - timedelta(days=14)) is None, why


def test_gone_quiet_counts_business_days_in_the_reps_week() -> None:
    rule = QuietRule(Span(10, "day", True), 3, timedelta(days=90))
    last = berlin(2026, 3, 2, 10)  # Monday
    now = berlin(2026, 3, 20)
    task = gone_quiet(quiet(last_at=last), rule, week_of, now, now - timedelta(days=14))
    assert task is not None and task.due_at == berlin(2026, 3, 16, 10).astimezone(UTC)
    shortest, longest = rule.quiet_bounds()
    assert shortest <= task.due_at - last <= longest


@settings(max_examples=200)
@given(
    quiet_days=st.floats(0, 200),
    nth_days=st.one_of(st.none(), st.floats(0, 200)),
    lookback_days=st.integers(1, 60),
)
def test_gone_quiet_decides_exactly_by_its_three_conditions(
    quiet_days: float, nth_days: float | None, lookback_days: int
) -> None:
    now = LAST + timedelta(days=quiet_days)
    nth = None if nth_days is None else LAST - timedelta(days=nth_days)
    task = gone_quiet(
        quiet(nth_last_at=nth), RULE, week_of, now, now - timedelta(days=lookback_days)
    )
    due = LAST + timedelta(days=30)
    busy = nth is not None and nth >= LAST - RULE.lookback
    assert (task is not None) == (
        busy and due <= now and due >= now - timedelta(days=lookback_days)
    )


def test_rep_of_a_record_is_chosen_as_the_other_rules_choose() -> None:
    alice, bob = "alice@example.com", "bob@example.com"
    email = RecordPeople("email", (bob,), (), None, ((alice, "from"),))
    assert rep_of(email) == bob  # the mailbox it came in through
    assert rep_of(RecordPeople("email", (), (), None, ((bob, "to"), (alice, "from")))) == alice
    assert rep_of(RecordPeople("email", (), (), None, ((bob, "cc"),))) == bob
    assert rep_of(RecordPeople("email", (), (), None, ())) is None
    meeting = RecordPeople("meeting", (), (bob,), alice, ((bob, "attendee"), (alice, "attendee")))
    assert rep_of(meeting) == alice  # the internal organiser
    assert rep_of(RecordPeople("meeting", (), (bob,), "x@acme.com", ())) == bob  # the calendar


# --- the customer list's order and filter --------------------------------------------------


def test_arrange_sorts_and_filters() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    rows = [
        {"name": "A", "last_contact_at": now - timedelta(days=1), "emails": 5, "meetings": 0, "open_tasks": 1},
        {"name": "B", "last_contact_at": None, "emails": 0, "meetings": 0, "open_tasks": 0},
        {"name": "C", "last_contact_at": now - timedelta(days=40), "emails": 9, "meetings": 2, "open_tasks": 0},
    ]  # fmt: skip
    names = lambda out: [r["name"] for r in out]  # noqa: E731
    assert names(arrange(rows)) == ["A", "B", "C"]
    assert names(arrange(rows, sort_by="last-contact")) == ["B", "C", "A"]
    assert names(arrange(rows, sort_by="emails")) == ["C", "A", "B"]
    assert names(arrange(rows, sort_by="meetings")) == ["C", "A", "B"]
    assert names(arrange(rows, sort_by="open-tasks")) == ["A", "B", "C"]
    assert names(arrange(rows, quiet_since=now - timedelta(days=30))) == ["B", "C"]
    with pytest.raises(ValueError, match="unknown sort"):
        arrange(rows, sort_by="size")


# --- periods ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("90d", 2160),
        ("12w", 2016),
        ("36h", 36),
        ("90 days", 2160),
        ("1 Week", 168),
        ("120m", 2),
        ("7200s", 2),
    ],
)
def test_periods(text: str, hours: int) -> None:
    assert parse_period(text) == timedelta(hours=hours)


@pytest.mark.parametrize(
    "text", ["9x", "", "d", "0d", "-3d", "1.5d", "90", "99999999d", "3 fortnights"]
)
def test_bad_periods_name_the_accepted_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a length of time|longer than"):
        parse_period(text)


@given(st.text(max_size=30))
def test_any_text_is_a_period_or_a_clear_error(text: str) -> None:
    try:
        assert parse_period(text) > timedelta(0)
    except ValueError as err:
        assert FORM in str(err) or "longer than" in str(err)


# --- configuration ------------------------------------------------------------------------


def test_gone_quiet_is_on_by_default_and_tunable() -> None:
    rule = parse_config({}).gone_quiet()
    assert rule == QuietRule(Span(30, "day", False), 3, timedelta(days=90))
    tuned = parse_config(
        {"followup": [{"rule": "gone_quiet", "after": "20 business days", "min_records": 5,
                       "lookback": "60 days"}]}
    ).gone_quiet()  # fmt: skip
    assert tuned == QuietRule(Span(20, "day", True), 5, timedelta(days=60))
    assert (
        parse_config({"followup": [{"rule": "gone_quiet", "enabled": False}]}).gone_quiet() is None
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"rule": "no_response", "min_records": 2}, 'apply to rule = "gone_quiet" only'),
        ({"rule": "gone_quiet", "lookback": "5 business days"}, "calendar days"),
        ({"rule": "gone_quiet", "min_records": 0}, "followup[0].min_records"),
        ({"rule": "gone_quiet", "lookback": "soon"}, "not a duration"),
    ],
)
def test_gone_quiet_settings_are_checked(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"followup": [entry]})


# --- weeks of the activity report ----------------------------------------------------------


def test_weeks_start_on_monday_midnight_in_the_zone_across_dst() -> None:
    from syncd.cli.cmd_report import week_bounds

    now = datetime(2026, 4, 1, 12, tzinfo=UTC)  # a Wednesday, after the spring change
    bounds = week_bounds(now, 3, BERLIN)
    local = [b.astimezone(BERLIN) for b in bounds]
    assert [d.date().isoformat() for d in local] == [
        "2026-03-16",
        "2026-03-23",
        "2026-03-30",
        "2026-04-06",
    ]
    assert all((d.hour, d.minute, d.weekday()) == (0, 0, 0) for d in local)
    assert bounds[2] - bounds[1] == timedelta(days=7, hours=-1)  # the week that lost an hour
    assert bounds[2] <= now < bounds[3]
