"""Limits on one calendar object: size, occurrences, attendees, sub-hourly rules, CPU, and
values that fit the schema.  Every hostile object of the corpus, and random rules, are read
within a bound on time and memory, on both readers (the fast one and icalendar's)."""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.domain.addresses import (
    match_key,
    normalize_address,
    normalize_domain,
    registrable_domain,
)
from syncd.domain.bounds import (
    ADDRESS_MAX,
    NAME_MAX,
    UID_MAX,
    bound_sequence,
    bound_text,
    bound_uid,
)
from syncd.domain.calendar_limits import (
    CPU_BUDGET_SECONDS,
    MAX_ATTENDEES,
    MAX_OBJECT_BYTES,
    MAX_OCCURRENCES,
    MAX_SUB_HOURLY_OCCURRENCES,
    Budget,
    OverBudget,
)
from syncd.domain.meetings import BrokenCalendar, ObjectView, person_of, read_object

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "calendar"
# The window the corpus was written for (bench/hostile_calendar.py --write-corpus).
WINDOW = {
    "window_start": datetime(2026, 8, 27, tzinfo=UTC),
    "window_end": datetime(2026, 12, 25, tzinfo=UTC),
}
# Per object: the CPU budget, plus parsing before the first check, on a shared machine.
SECONDS = CPU_BUDGET_SECONDS + 2.0
MEGABYTES = 64


def clear_caches() -> None:
    for cached in (normalize_address, normalize_domain, match_key, registrable_domain):
        cached.cache_clear()


def bounded_read(text: str, *, traced: bool = True) -> ObjectView | BrokenCalendar:
    """read_object under the time and memory bound: its view, or why it was refused.

    Time and memory are two reads: tracemalloc slows Python code about ten times, so a
    read under it would measure tracemalloc (and could even blow the reader's own CPU budget
    where the untraced read stays well inside it).  Without ``traced``, only the time."""
    started = time.thread_time()
    try:
        outcome: ObjectView | BrokenCalendar = read_object(text, **WINDOW)
    except BrokenCalendar as err:
        outcome = err
    spent = time.thread_time() - started
    assert spent < SECONDS, f"{spent:.1f} s of CPU"
    if not traced:
        return outcome
    clear_caches()  # the traced read pays for what the first one cached, as a new object would
    tracemalloc.start()
    try:
        read_object(text, **WINDOW)
    except BrokenCalendar:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEGABYTES << 20, f"{peak >> 20} MB"
    return outcome


def assert_within_limits(view: ObjectView) -> None:
    assert len(view.occurrences) <= MAX_OCCURRENCES
    for o in view.occurrences:
        assert len(o.attendees) <= MAX_ATTENDEES
        assert len(o.uid) <= UID_MAX and o.uid.isprintable()
        assert "\x00" not in o.summary
        for person in (*o.attendees, *([o.organizer] if o.organizer else [])):
            assert len(person.address) <= ADDRESS_MAX and len(person.name) <= NAME_MAX


def test_the_corpus_is_there() -> None:
    assert len(list(CORPUS.glob("*.ics"))) >= 15


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.ics")), ids=lambda p: p.name)
def test_every_hostile_object_is_read_within_bounds(path: Path) -> None:
    text = path.read_bytes().decode()
    outcome = bounded_read(text)
    if isinstance(outcome, BrokenCalendar):
        assert str(outcome)  # quarantined, with a reason
        return
    assert_within_limits(outcome)
    if "MINUTELY" in text or "SECONDLY" in text:
        assert len(outcome.occurrences) <= MAX_SUB_HOURLY_OCCURRENCES
        assert outcome.cut.sub_hourly and "sub-hourly" in outcome.cut.reason()
    if path.name == "crowd-2000-daily.ics":
        assert outcome.cut.attendees == 2001 - MAX_ATTENDEES
        assert outcome.occurrences and all(
            len(o.attendees) == MAX_ATTENDEES for o in outcome.occurrences
        )


def test_the_weekly_reference_is_read_whole() -> None:
    view = bounded_read((CORPUS / "reference-weekly.ics").read_bytes().decode())
    assert isinstance(view, ObjectView) and not view.cut
    assert len(view.occurrences) == 17 and view.next_start is not None


def test_daily_from_1900_with_1000_exdates_is_read_not_walked_per_exdate() -> None:
    text = (CORPUS / "daily-1900-exdates.ics").read_bytes().decode()
    started = time.thread_time()
    view = read_object(text, **WINDOW)
    assert time.thread_time() - started < 1.0
    assert len(view.occurrences) == 120  # every day of the window, none cut


def test_an_object_over_the_size_limit_is_refused_unread() -> None:
    text = (CORPUS / "reference-weekly.ics").read_bytes().decode()
    big = text.replace("SUMMARY:Hostile", "DESCRIPTION:" + "x" * MAX_OBJECT_BYTES)
    with pytest.raises(BrokenCalendar, match="over the limit"):
        read_object(big, **WINDOW)


def test_the_budget_stops_an_object() -> None:
    budget = Budget(seconds=0.0)
    deadline = time.thread_time() + 0.01
    while time.thread_time() < deadline:
        pass
    with pytest.raises(OverBudget):
        budget.check()


def test_values_are_bounded_the_same_way_every_time() -> None:
    long = "x" * 1200
    assert bound_uid(long) == bound_uid(long) and len(bound_uid(long)) <= UID_MAX
    assert bound_uid(long) != bound_uid(long + "y")
    assert bound_uid("short-uid") == "short-uid"
    assert bound_text("a\x00b\nc", 10) == "ab\nc" and len(bound_text("y" * 500, 300)) == 300
    assert bound_sequence("abc") == 0 and bound_sequence("99999999999") == 2**31 - 1
    assert bound_sequence("-4") == 0 and bound_sequence("7") == 7
    assert person_of("mailto:" + "o" * 400 + "@acme.com", "", "ACCEPTED") is None
    found = person_of("mailto:Wile@Acme.com", "N" * 1000, "accepted")
    assert found is not None and found.address == "wile@acme.com" and len(found.name) <= 300


FREQS = st.sampled_from(["SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"])


def _values(low: int, high: int, most: int = 12) -> st.SearchStrategy[str]:
    return st.lists(st.integers(low, high), min_size=1, max_size=most, unique=True).map(
        lambda xs: ",".join(map(str, xs))
    )


RULES = st.fixed_dictionaries(
    {"FREQ": FREQS},
    optional={
        "INTERVAL": st.integers(1, 5).map(str),
        "COUNT": st.integers(1, 100_000).map(str),
        "BYSECOND": _values(0, 59, 60),
        "BYMINUTE": _values(0, 59, 60),
        "BYHOUR": _values(0, 23, 24),
        "BYDAY": st.lists(
            st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]), min_size=1, unique=True
        ).map(",".join),
        "BYMONTHDAY": _values(1, 31, 31),
        "BYMONTH": _values(1, 12, 12),
    },
)


# Parameter text repeated to any length, with or without the colon that ends it: the line
# reader must stay linear in it (a nested-list regex took 4.65 s on 109 bytes of this).
HOSTILE_PARAMS = st.tuples(
    st.text(alphabet=';=,":A', min_size=1, max_size=6), st.integers(0, 400), st.booleans()
).map(lambda t: t[0] * t[1] + (":mailto:h@acme.com" if t[2] else ""))


def _object(
    rule: dict[str, str], start: datetime, attendees: int, override: bool, hostile: str = ""
) -> str:
    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    extra = ""
    if override:  # a second VEVENT sends the object to icalendar's reader
        extra = (
            f"BEGIN:VEVENT\r\nUID:h\r\nDTSTAMP:20240101T000000Z\r\nRECURRENCE-ID:{stamp}\r\n"
            f"DTSTART:{stamp}\r\nSUMMARY:moved\r\nEND:VEVENT\r\n"
        )
    people = "".join(f"ATTENDEE:mailto:p{n}@acme.com\r\n" for n in range(attendees))
    people += f"ATTENDEE{hostile}\r\n" if hostile else ""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:h\r\n"
        f"DTSTAMP:20240101T000000Z\r\nDTSTART:{stamp}\r\nSUMMARY:s\r\n"
        f"RRULE:{';'.join(f'{k}={v}' for k, v in rule.items())}\r\n{people}"
        f"END:VEVENT\r\n{extra}END:VCALENDAR\r\n"
    )


ANY_OBJECT = {
    "rule": RULES,
    "start": st.datetimes(datetime(1900, 1, 1), datetime(2030, 1, 1)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC)
    ),
    "attendees": st.integers(0, 300),
    "override": st.booleans(),
    "hostile": st.one_of(st.just(""), HOSTILE_PARAMS),
}
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "derandomize": True}


# Time and limits on many objects; memory (a read under tracemalloc costs ten times the
# read) on fewer of the same kind, in the test after this one.
@settings(max_examples=60, **SETTINGS)  # type: ignore[arg-type]
@given(**ANY_OBJECT)
def test_any_rule_is_read_within_bounds(
    rule: dict[str, str], start: datetime, attendees: int, override: bool, hostile: str
) -> None:
    outcome = bounded_read(_object(rule, start, attendees, override, hostile), traced=False)
    if isinstance(outcome, BrokenCalendar):
        # Refused, with a reason; bounded_read has held it to its time.
        assert str(outcome)
        return
    assert_within_limits(outcome)
    if rule["FREQ"] in ("SECONDLY", "MINUTELY"):
        assert len(outcome.occurrences) <= MAX_SUB_HOURLY_OCCURRENCES + int(override)
    assert all(
        WINDOW["window_start"] - timedelta(days=1) <= o.ends_at
        and o.starts_at < WINDOW["window_end"]
        for o in outcome.occurrences
    )


@settings(max_examples=15, **SETTINGS)  # type: ignore[arg-type]
@given(**ANY_OBJECT)
def test_any_rule_is_read_within_memory(
    rule: dict[str, str], start: datetime, attendees: int, override: bool, hostile: str
) -> None:
    # bounded_read holds the read to MEGABYTES of peak allocation, refused or not.
    outcome = bounded_read(_object(rule, start, attendees, override, hostile))
    if not isinstance(outcome, BrokenCalendar):
        assert_within_limits(outcome)
