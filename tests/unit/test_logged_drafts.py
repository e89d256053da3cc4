"""Logged records on their own: what a valid call, visit or note is, the CSV reader, and the
follow-up rules a logged call or visit settles.  Pure; hostile values through Hypothesis."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.bounds import ADDRESS_MAX, SUBJECT_MAX
from syncd.domain.business_time import Span, WorkingWeek
from syncd.domain.followups import Email, Logged, Meeting, Person, Rules, evaluate
from syncd.domain.logged import (
    BODY_MAX,
    EXTERNAL_ID_MAX,
    LOCATION_MAX,
    BadDraft,
    RawFields,
    draft_from,
    parse_seconds,
    record_key,
    row_hash,
)
from syncd.domain.logged_file import CSV_HEADER, BadRecordsFile, parse_records_file
from syncd.errors import UserError

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)


def raw(**kw: object) -> RawFields:
    values: dict[str, object] = {
        "kind": "call", "owner": "alice@example.com", "subject": "Price", "occurred_at": AT,
        "contacts": ["Wile@Acme.com"],
    }  # fmt: skip
    values.update(kw)
    return RawFields(**values)  # type: ignore[arg-type]


def problems(**kw: object) -> list[str]:
    with pytest.raises(BadDraft) as err:
        draft_from(raw(**kw))
    return err.value.problems


def test_a_call_takes_duration_outcome_and_direction_and_nothing_else() -> None:
    draft = draft_from(raw(duration="15m", outcome="Voicemail", direction="in"))
    assert (draft.contacts, draft.duration_seconds, draft.outcome, draft.direction) == (
        ("wile@acme.com",), 900, "voicemail", "inbound",
    )  # fmt: skip
    assert problems(location="Plant") == ["a call has no location"]
    assert problems(kind="note", duration="5m", direction="out") == [
        "a note has no direction", "a note has no duration",
    ]  # fmt: skip
    assert problems(kind="visit", outcome="busy") == ["a visit has no outcome"]
    assert draft_from(raw(kind="note")).direction == "internal"
    assert draft_from(raw(kind="visit", location=" Plant ")).location == "Plant"


def test_every_problem_is_named_at_once() -> None:
    found = problems(kind="fax", owner="nobody", subject=" ", contacts=[], outcome="maybe")
    assert found == [
        "kind 'fax' is not one of call, visit, note",
        "owner 'nobody' is not an email address",
        "the subject is empty",
        "give a customer or a contact",
        "a fax has no outcome",
    ]


def test_durations_as_people_write_them() -> None:
    assert [parse_seconds(t) for t in ("90", "90s", "15m", "1h", "2 hours", "7d")] == [
        90, 90, 900, 3600, 7200, 604800,
    ]  # fmt: skip
    for bad in ("", "0m", "forever", "-5", "1.5h", "8d", "9" * 12):
        with pytest.raises(ValueError):
            parse_seconds(bad)


def test_keys_name_the_source_system_or_the_row() -> None:
    draft = draft_from(raw(external_id=" pbx-1 "))
    assert record_key(draft) == "logged:pbx-1"
    plain = draft_from(raw())
    assert record_key(plain, row_hash="ab") == "logged:row:ab"
    assert record_key(plain, fresh="f00") == "logged:new:f00"
    assert row_hash(["a", " b"]) == row_hash(["a ", "b"]) != row_hash(["a", "c"])


texts = st.text(st.characters(codec="utf-8") | st.sampled_from("\x00\ud800\x1b\n"), max_size=80)


@given(
    kind=st.sampled_from(["call", "visit", "note", "x"]),
    owner=texts | st.just("a" * 250 + "@example.com"),
    subject=texts | st.text(max_size=1).map(lambda c: c * (SUBJECT_MAX + 1)),
    contacts=st.lists(texts | st.emails(), max_size=3),
    body=st.none() | texts,
    duration=st.none() | texts | st.sampled_from(["15m", "604800", "604801"]),
    outcome=st.none() | texts | st.just("busy"),
    location=st.none() | texts | st.just("ł" * (LOCATION_MAX + 1)),
    external_id=st.none() | texts | st.just("x" * (EXTERNAL_ID_MAX + 1)),
)
def test_whatever_is_typed_a_draft_fits_the_schema_or_says_why_not(
    kind: str, owner: str, subject: str, contacts: list[str], body: str | None,
    duration: str | None, outcome: str | None, location: str | None, external_id: str | None,
) -> None:  # fmt: skip
    fields = RawFields(
        kind=kind, owner=owner, subject=subject, occurred_at=AT, contacts=contacts, body=body,
        duration=duration, outcome=outcome, location=location, external_id=external_id,
        has_customer=True,
    )  # fmt: skip
    try:
        draft = draft_from(fields)
    except BadDraft as err:
        assert err.problems and all(isinstance(p, str) and len(p) < 400 for p in err.problems)
        return
    stored = [draft.owner, draft.subject, *draft.contacts, draft.body or "",
              draft.location or "", draft.external_id or ""]  # fmt: skip
    for value in stored:
        value.encode("utf-8")  # no lone surrogate
        assert "\x00" not in value
    assert len(draft.owner) <= ADDRESS_MAX and all(len(c) <= ADDRESS_MAX for c in draft.contacts)
    assert 0 < len(draft.subject) <= SUBJECT_MAX
    assert len(draft.body or "") <= BODY_MAX
    assert len(draft.location or "") <= LOCATION_MAX
    assert len(draft.external_id or "") <= EXTERNAL_ID_MAX
    assert draft.duration_seconds is None or 0 < draft.duration_seconds <= 7 * 86400


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    return out.getvalue()


@given(st.lists(st.lists(texts, max_size=14), max_size=6))
def test_any_csv_is_read_row_by_row_without_surprises(rows: list[list[str]]) -> None:
    parsed = parse_records_file(csv_text(rows), "f.csv")
    try:
        parsed.fail({})
    except BadRecordsFile as err:
        assert all(p.startswith("line ") for p in err.problems)


def test_the_same_external_id_with_other_values_is_a_bad_row() -> None:
    row = ["call", "2026-03-02", "a@example.com", "Acme", "", "", "", "", "", "Hi", "", "x-1"]
    other = [*row[:9], "Other", "", "x-1"]
    parsed = parse_records_file(csv_text([row, row, other]))
    assert [r.problems for r in parsed.rows][:2] == [(), ()]
    with pytest.raises(BadRecordsFile) as err:
        parsed.fail({})
    assert err.value.problems == ["line 4: external_id 'x-1' is also on line 2 with other values"]
    with pytest.raises(UserError, match="the header is kind,occurred_at"):
        parse_records_file("kind,occurred_at\n")


# --- the rules -----------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
TUE = datetime(2026, 3, 3, 10, tzinfo=BERLIN)
ALICE = Person("alice@example.com", "Alice", "from", False, None, None)
HANK = Person("hank@globex.co.uk", "Hank", "to", True, 3, 2)
RULES = Rules(
    {"no_response": Span.parse("3 business days"), "after_meeting": Span.parse("1 business day")},
    TUE - timedelta(days=14),
    lambda _owner: WorkingWeek(BERLIN),
)


def pitch(id_: int = 1) -> Email:
    return Email(id_, "t", TUE, "outbound", "Proposal", (ALICE, HANK), ("alice@example.com",))


def talk(id_: int, when: datetime, customers: tuple[int, ...] = (2,), kind: str = "call",
         direction: str = "outbound", contacts: tuple[str, ...] = ()) -> Logged:  # fmt: skip
    return Logged(id_, kind, when, direction, customers, contacts)


def test_a_call_or_visit_with_the_customer_settles_no_response_and_its_type_is_call() -> None:
    now = TUE + timedelta(days=6)
    wanted, closings = evaluate([pitch()], [], RULES, now)
    assert [(w.rule, w.type) for w in wanted] == [("no_response", "call")]
    for kind, direction in (("call", "inbound"), ("visit", "outbound")):
        later = talk(9, TUE + timedelta(days=1), kind=kind, direction=direction)
        wanted, closings = evaluate([pitch()], [], RULES, now, [later])
        assert wanted == [] and [(c.rule, c.closed_by) for c in closings] == [("no_response", 9)]
    # Another customer, or a call before the email, settles nothing.
    for other in (talk(9, TUE + timedelta(days=1), customers=(5,)), talk(9, TUE - timedelta(1))):
        wanted, closings = evaluate([pitch()], [], RULES, now, [other])
        assert closings == [] and [w.rule for w in wanted] == ["no_response"]


def test_the_first_of_an_answer_and_a_call_is_what_settled_it() -> None:
    answer = Email(2, "t", TUE + timedelta(days=2), "inbound", "Re", (
        Person("hank@globex.co.uk", "Hank", "from", True, 3, 2), ALICE), ())  # fmt: skip
    now = TUE + timedelta(days=6)
    _, early_call = evaluate([pitch(), answer], [], RULES, now, [talk(9, TUE + timedelta(1))])
    assert [(c.rule, c.closed_by) for c in early_call if c.rule == "no_response"] == [
        ("no_response", 9)
    ]
    _, late_call = evaluate([pitch(), answer], [], RULES, now, [talk(9, TUE + timedelta(3))])
    assert [(c.rule, c.closed_by) for c in late_call if c.rule == "no_response"] == [
        ("no_response", 2)
    ]


def test_a_call_to_an_attendee_after_the_meeting_settles_after_meeting() -> None:
    meeting = Meeting(5, "Review", TUE, "scheduled", "alice@example.com",
                      (ALICE, HANK), (2,))  # fmt: skip
    now = TUE + timedelta(days=3)
    wanted, _ = evaluate([], [meeting], RULES, now)
    assert [(w.rule, w.type) for w in wanted] == [("after_meeting", "email")]
    call = talk(9, TUE + timedelta(hours=2), contacts=("hank@globex.co.uk",))
    wanted, closings = evaluate([], [meeting], RULES, now, [call])
    assert wanted == [] and [(c.rule, c.closed_by) for c in closings] == [("after_meeting", 9)]
    # A call before it ended, to someone else, or one Hank made to us, settles nothing.
    for other in (
        talk(9, TUE - timedelta(hours=1), contacts=("hank@globex.co.uk",)),
        talk(9, TUE + timedelta(hours=2), contacts=("wile@acme.com",)),
        talk(9, TUE + timedelta(hours=2), contacts=("hank@globex.co.uk",), direction="inbound"),
        talk(9, TUE + timedelta(hours=2), contacts=("hank@globex.co.uk",), kind="visit"),
    ):
        wanted, closings = evaluate([], [meeting], RULES, now, [other])
        assert closings == [] and [w.rule for w in wanted] == ["after_meeting"]


def test_a_task_s_priority_reaches_its_vtodo() -> None:
    import icalendar

    from syncd.domain.todos import render_todo

    def priority(value: str) -> int:
        text = render_todo(task_id=1, title="Call Hank", due_at=AT, status="open", customer=None,
                           closed_at=None, now=AT, priority=value)  # fmt: skip
        (todo,) = icalendar.Calendar.from_ical(text).walk("VTODO")
        return int(todo["PRIORITY"])

    assert [priority(p) for p in ("high", "normal", "low")] == [1, 5, 9]
