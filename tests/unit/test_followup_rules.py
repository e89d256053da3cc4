"""The follow-up rules on their own: which tasks they want, which tasks mail settles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from syncd.domain.business_time import Span, WorkingWeek
from syncd.domain.followups import Email, Meeting, Person, Rules, evaluate

BERLIN = ZoneInfo("Europe/Berlin")
TUE = datetime(2026, 3, 3, 10, tzinfo=BERLIN)  # a Tuesday, 10:00 in Berlin
ALICE = Person("alice@example.com", "Alice", "to", False, None, None)
WILE = Person("wile@acme.com", "Wile Coyote", "from", True, 7, 1)
RULES = {
    "unanswered_inbound": Span.parse("1 business day"),
    "no_response": Span.parse("3 business days"),
    "after_meeting": Span.parse("1 business day"),
}


def rules(now: datetime, after: dict[str, Span] = RULES, lookback_days: int = 14) -> Rules:
    return Rules(after, now - timedelta(days=lookback_days), lambda _owner: WorkingWeek(BERLIN))


def inbound(id_: int, when: datetime, thread: str = "t1", sender: Person = WILE) -> Email:
    return Email(id_, thread, when, "inbound", "Quote", (sender, ALICE), ("alice@example.com",))


def outbound(id_: int, when: datetime, thread: str = "t1", to: Person | None = None) -> Email:
    sender = Person("bob@example.com", "Bob", "from", False, None, None)
    recipient = to or Person("wile@acme.com", "Wile Coyote", "to", True, 7, 1)
    return Email(
        id_, thread, when, "outbound", "Re: Quote", (sender, recipient), ("bob@example.com",)
    )


def test_unanswered_inbound_waits_one_business_day_then_asks_the_receiving_rep() -> None:
    mail = [inbound(1, TUE)]
    assert evaluate(mail, [], rules(TUE + timedelta(hours=23)), TUE + timedelta(hours=23)) == (
        [],
        [],
    )
    now = TUE + timedelta(days=1, minutes=1)
    (task,), closings = evaluate(mail, [], rules(now), now)
    assert closings == []
    assert (task.rule, task.record_id, task.owner, task.customer_id) == (
        "unanswered_inbound", 1, "alice@example.com", 1,
    )  # fmt: skip
    assert task.title == "Reply to Wile Coyote: Quote"
    assert task.due_at == (TUE + timedelta(days=1)).astimezone(UTC)


def test_a_reply_from_any_rep_settles_it() -> None:
    now = TUE + timedelta(days=8)
    wanted, closings = evaluate(
        [inbound(1, TUE), outbound(2, TUE + timedelta(days=2))], [], rules(now), now
    )
    assert [w.rule for w in wanted] == ["no_response"]  # the reply itself now waits for an answer
    assert [(c.rule, c.record_id, c.closed_by) for c in closings] == [("unanswered_inbound", 1, 2)]


def test_mail_from_nobody_we_know_or_from_colleagues_makes_no_task() -> None:
    now = TUE + timedelta(days=5)
    stranger = Person("x@unknown.org", "", "from", True, None, None)
    colleague = Person("carol@example.com", "", "from", False, None, None)
    mail = [inbound(1, TUE, sender=stranger), inbound(2, TUE, "t2", sender=colleague)]
    assert evaluate(mail, [], rules(now), now) == ([], [])


def test_no_response_after_three_business_days_for_the_sender() -> None:
    now = TUE + timedelta(days=7)  # the next Tuesday
    (task,), _ = evaluate([outbound(1, TUE)], [], rules(now), now)
    assert (task.rule, task.owner, task.title) == (
        "no_response", "bob@example.com", "Follow up with Wile Coyote: Re: Quote",
    )  # fmt: skip
    assert task.due_at == datetime(2026, 3, 6, 10, tzinfo=BERLIN).astimezone(UTC)  # Friday


def test_no_response_is_settled_by_the_customer_or_by_the_next_follow_up() -> None:
    now = TUE + timedelta(days=20)
    answered = [outbound(1, TUE), inbound(2, TUE + timedelta(days=1))]
    _, closings = evaluate(answered, [], rules(now), now)
    assert ("no_response", 1, 2) in [(c.rule, c.record_id, c.closed_by) for c in closings]
    chased = [outbound(1, TUE, "t9"), outbound(3, TUE + timedelta(days=5), "t9")]
    now = TUE + timedelta(days=12)
    wanted, closings = evaluate(chased, [], rules(now), now)
    assert [(c.record_id, c.closed_by) for c in closings] == [(1, 3)]
    assert [w.record_id for w in wanted] == [3]  # the newest email waits for its answer


def test_the_lookback_keeps_old_mail_from_making_tasks_but_still_settles_them() -> None:
    now = TUE + timedelta(days=30)
    assert evaluate([inbound(1, TUE)], [], rules(now), now) == ([], [])
    _, closings = evaluate([inbound(1, TUE), outbound(2, now)], [], rules(now), now)
    assert [(c.rule, c.closed_by) for c in closings] == [("unanswered_inbound", 2)]


def test_switched_off_rules_make_nothing() -> None:
    now = TUE + timedelta(days=7)
    only_meetings = {"after_meeting": RULES["after_meeting"]}
    assert evaluate(
        [inbound(1, TUE), outbound(2, TUE, "t2")], [], rules(now, only_meetings), now
    ) == ([], [])


def meeting(
    status: str = "scheduled", ends: datetime = TUE, organizer: str = "bob@example.com"
) -> Meeting:
    people = (
        Person("bob@example.com", "Bob", "attendee", False, None, None),
        Person("alice@example.com", "Alice", "attendee", False, None, None),
        Person("wile@acme.com", "Wile", "attendee", True, 7, 1),
    )
    return Meeting(50, "Quarterly review", ends, status, organizer, people, (1,))


def test_a_held_meeting_gets_a_follow_up_for_its_organiser() -> None:
    now = TUE + timedelta(minutes=5)
    (task,), _ = evaluate([], [meeting()], rules(now), now)
    assert (task.rule, task.owner, task.title) == (
        "after_meeting",
        "bob@example.com",
        "Follow up on Quarterly review",
    )
    assert task.due_at == (TUE + timedelta(days=1)).astimezone(UTC)
    # An external organiser: the first internal attendee owns it.
    (task,), _ = evaluate([], [meeting(organizer="wile@acme.com")], rules(now), now)
    assert task.owner == "bob@example.com"


def test_cancelled_declined_or_future_meetings_make_none() -> None:
    now = TUE + timedelta(minutes=5)
    for m in (meeting("cancelled"), meeting("declined"), meeting(ends=now + timedelta(hours=1))):
        assert evaluate([], [m], rules(now), now) == ([], [])


def test_an_email_to_the_attendees_after_the_meeting_settles_it() -> None:
    now = TUE + timedelta(days=1)
    before = outbound(7, TUE - timedelta(hours=2), "x")
    after = outbound(8, TUE + timedelta(hours=3), "y")
    wanted, closings = evaluate([before, after], [meeting()], rules(now), now)
    assert [(c.rule, c.record_id, c.closed_by) for c in closings if c.rule == "after_meeting"] == [
        ("after_meeting", 50, 8)
    ]
    assert not [w for w in wanted if w.rule == "after_meeting"]


def test_the_horizon_is_when_the_answer_would_change_with_the_records_unchanged() -> None:
    """`syncd sync`'s first look evaluates again only from the earliest of these times
    (engine/first_look.py): each one a task falls due or a meeting ends."""
    now = TUE + timedelta(hours=2)
    mail = [inbound(1, TUE), outbound(2, TUE + timedelta(hours=1), thread="t2")]
    ends = TUE + timedelta(hours=5)
    horizon: list[datetime] = []
    assert evaluate(mail, [meeting(ends=ends)], rules(now), now, horizon=horizon) == ([], [])
    assert sorted(horizon) == [
        ends,  # the meeting ends: a task is wanted from then
        TUE + timedelta(days=1),  # the question is due a business day later
        TUE + timedelta(days=3, hours=1),  # the rep's email three business days later
    ]
    # At the earliest of them, the answer changes; a moment before it, it does not.
    assert evaluate(mail, [meeting(ends=ends)], rules(ends), ends - timedelta(seconds=1)) == (
        [],
        [],
    )
    wanted, _ = evaluate(mail, [meeting(ends=ends)], rules(ends), ends)
    assert [w.rule for w in wanted] == ["after_meeting"]
    # Nothing pending, nothing to come: an answered question, a meeting that was cancelled.
    horizon = []
    answered = [inbound(1, TUE), outbound(2, TUE + timedelta(hours=1))]
    evaluate(answered[:1], [meeting("cancelled", ends)], rules(now), now, horizon=horizon)
    assert horizon == [TUE + timedelta(days=1)]
    horizon = []
    evaluate([answered[0]], [], rules(TUE + timedelta(days=2)), TUE + timedelta(days=2),
             horizon=horizon)  # fmt: skip
    assert horizon == []  # due already: wanted now, nothing later
