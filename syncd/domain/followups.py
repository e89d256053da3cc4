"""Follow-up rules: which tasks should exist, and which tasks the mail has since settled.

Pure: captured emails and meetings in, wanted tasks and closings out.  The store makes
both idempotent (one task per rule and triggering record; only open or snoozed tasks
close), so the rules may run after every sync and on a timer without doubling anything.

- unanswered_inbound: a customer contact wrote and nobody on our side answered in the
  thread within ``after``: "Reply to <contact>: <subject>", for the rep who received it.
  Settled by any later outbound email in the thread, from any rep.
- no_response: we wrote to a customer and the customer did not answer in the thread within
  ``after``: "Follow up with <contact>: <subject>", for the sender.  Settled by the
  customer's answer, or by the rep's next email in the thread (which starts its own wait).
- after_meeting: a customer meeting was held: "Follow up on <meeting>", for the organiser
  (or the first internal attendee), due ``after`` its end.  Settled by an email to one of
  its external attendees sent after it ended, or a logged call to one of them.

A logged call or visit with the customer (store/logged_records.py) settles ``no_response``
as the customer's answer would.  Each rule gives its task the type that fits what is to do
(``TASK_TYPES``): an email to answer, a customer to call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncd.domain.business_time import Span, WorkingWeek


@dataclass(frozen=True, slots=True)
class Person:
    address: str
    name: str
    role: str  # from | to | cc | attendee
    external: bool
    contact_id: int | None
    customer_id: int | None

    @property
    def label(self) -> str:
        return self.name or self.address


@dataclass(frozen=True, slots=True)
class Email:
    id: int
    thread: str
    occurred_at: datetime
    direction: str  # inbound | outbound | internal
    subject: str
    people: tuple[Person, ...]
    owners: tuple[str, ...]  # owners of the mailboxes it was captured from, first first

    @property
    def sender(self) -> Person | None:
        return next((p for p in self.people if p.role == "from"), None)

    @property
    def recipients(self) -> list[Person]:
        return [p for p in self.people if p.role in ("to", "cc")]


@dataclass(frozen=True, slots=True)
class Meeting:
    id: int
    summary: str
    ends_at: datetime
    status: str  # scheduled | cancelled | declined
    organizer: str | None
    people: tuple[Person, ...]
    customer_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Logged:
    """A logged call or visit, as the rules see it."""

    id: int
    kind: str  # call | visit
    occurred_at: datetime
    direction: str  # inbound | outbound
    customer_ids: tuple[int, ...]  # every customer it is linked to
    contacts: tuple[str, ...]  # the addresses of the people spoken to


# What a rule's task asks the rep to do (tasks.type): call, email, visit or todo.
TASK_TYPES = {
    "unanswered_inbound": "email",
    "no_response": "call",
    "after_meeting": "email",
    "gone_quiet": "call",
}


@dataclass(frozen=True, slots=True)
class Wanted:
    rule: str
    record_id: int
    owner: str
    customer_id: int | None
    title: str
    due_at: datetime

    @property
    def type(self) -> str:
        return TASK_TYPES.get(self.rule, "todo")


@dataclass(frozen=True, slots=True)
class Closing:
    rule: str
    record_id: int  # the record that triggered the task
    closed_by: int  # the record that settled it


@dataclass(frozen=True, slots=True)
class Rules:
    after: dict[str, Span]  # enabled rules only
    lookback_start: datetime  # records before this create no task
    week_of: Callable[[str], WorkingWeek]  # a rep's working week


def evaluate(
    emails: Iterable[Email],
    meetings: Iterable[Meeting],
    rules: Rules,
    now: datetime,
    logged: Iterable[Logged] = (),
    horizon: list[datetime] | None = None,
) -> tuple[list[Wanted], list[Closing]]:
    """The tasks the rules want now and the closings the records make.  ``horizon`` collects
    each time after ``now`` at which, the records unchanged, the answer would change (a
    task falling due, a meeting ending): `syncd sync`'s first look runs the rules again
    only from the earliest of them (engine/first_look.py)."""
    horizon = [] if horizon is None else horizon
    wanted: list[Wanted] = []
    talks = sorted(logged, key=lambda t: (t.occurred_at, t.id))
    closings: list[Closing] = []
    threads: dict[str, list[Email]] = defaultdict(list)
    mail = sorted(emails, key=lambda e: (e.occurred_at, e.id))
    for email in mail:
        threads[email.thread].append(email)
    for thread in threads.values():
        for index, email in enumerate(thread):
            rest = thread[index + 1 :]
            if email.direction == "inbound":
                _unanswered(email, rest, rules, now, wanted, closings, horizon)
            elif email.direction == "outbound":
                _no_response(email, rest, talks, rules, now, wanted, closings, horizon)
    outbound = [e for e in mail if e.direction == "outbound"]
    calls = [t for t in talks if t.kind == "call" and t.direction == "outbound"]
    for meeting in meetings:
        _after_meeting(meeting, outbound, calls, rules, now, wanted, closings, horizon)
    return wanted, closings


def _customer_contact(email: Email) -> Person | None:
    """The sender, when they speak for a customer (a contact, or at a customer's domain)."""
    sender = email.sender
    if sender is None or not sender.external or sender.customer_id is None:
        return None
    return sender


def _unanswered(
    email: Email,
    later: list[Email],
    rules: Rules,
    now: datetime,
    wanted: list[Wanted],
    closings: list[Closing],
    horizon: list[datetime],
) -> None:
    rule = "unanswered_inbound"
    contact = _customer_contact(email)
    if contact is None:
        return
    reply = next((e for e in later if e.direction == "outbound"), None)
    if reply is not None:
        closings.append(Closing(rule, email.id, reply.id))
        return
    if rule not in rules.after or not email.owners or email.occurred_at < rules.lookback_start:
        return
    owner = email.owners[0]
    due = rules.week_of(owner).add(email.occurred_at, rules.after[rule])
    if now >= due:
        wanted.append(
            Wanted(rule, email.id, owner, contact.customer_id, f"Reply to {contact.label}: {email.subject}", due)
        )  # fmt: skip
    else:
        horizon.append(due)


def _no_response(
    email: Email,
    later: list[Email],
    talks: list[Logged],
    rules: Rules,
    now: datetime,
    wanted: list[Wanted],
    closings: list[Closing],
    horizon: list[datetime],
) -> None:
    rule = "no_response"
    customers = {p.customer_id for p in email.recipients if p.external and p.customer_id}
    sender = email.sender
    if not customers or sender is None or sender.external:
        return
    # A call or visit with the customer after the email speaks as an answer would.
    talk = next(
        (t for t in talks if t.occurred_at > email.occurred_at and customers & set(t.customer_ids)),
        None,
    )
    for following in later:
        if talk is not None and talk.occurred_at <= following.occurred_at:
            break
        answer = _customer_contact(following)
        if (
            following.direction == "inbound"
            and answer is not None
            and answer.customer_id in customers
        ):
            closings.append(Closing(rule, email.id, following.id))
            return
        if following.direction == "outbound" and any(
            p.customer_id in customers for p in following.recipients
        ):
            closings.append(Closing(rule, email.id, following.id))  # the rep followed up
            return
    if talk is not None:
        closings.append(Closing(rule, email.id, talk.id))
        return
    if rule not in rules.after or email.occurred_at < rules.lookback_start:
        return
    due = rules.week_of(sender.address).add(email.occurred_at, rules.after[rule])
    if now < due:
        horizon.append(due)
    else:
        contact = next(
            (p for p in email.recipients if p.external and p.customer_id in customers),
            email.recipients[0],
        )
        wanted.append(
            Wanted(
                rule,
                email.id,
                sender.address,
                contact.customer_id,
                f"Follow up with {contact.label}: {email.subject}",
                due,
            )
        )


def _after_meeting(
    meeting: Meeting,
    outbound: list[Email],
    calls: list[Logged],
    rules: Rules,
    now: datetime,
    wanted: list[Wanted],
    closings: list[Closing],
    horizon: list[datetime],
) -> None:
    rule = "after_meeting"
    if meeting.status != "scheduled" or not meeting.customer_ids:
        return  # cancelled or declined
    if meeting.ends_at > now:
        horizon.append(meeting.ends_at)  # not held yet: it wants a task, or closes one, then
        return
    attendees = {p.address for p in meeting.people if p.external}
    email = next(
        (
            e
            for e in outbound
            if e.occurred_at >= meeting.ends_at and attendees & {p.address for p in e.recipients}
        ),
        None,
    )
    call = next(
        (c for c in calls if c.occurred_at >= meeting.ends_at and attendees & set(c.contacts)),
        None,
    )
    firsts = [(f.occurred_at, f.id) for f in (email, call) if f is not None]
    if firsts:
        closings.append(Closing(rule, meeting.id, min(firsts)[1]))
        return
    if rule not in rules.after or meeting.ends_at < rules.lookback_start:
        return
    internal = [p.address for p in meeting.people if not p.external]
    if not internal:
        return
    owner = meeting.organizer if meeting.organizer in internal else internal[0]
    due = rules.week_of(owner).add(meeting.ends_at, rules.after[rule])
    wanted.append(
        Wanted(rule, meeting.id, owner, meeting.customer_ids[0], f"Follow up on {meeting.summary}", due)
    )  # fmt: skip


def speaker_customer(domain_owners: Collection[int], linked: Sequence[int]) -> int | None:
    """The customer a non-contact external person speaks for: the one owning their domain.

    A domain owned by several customers is settled by the record's own links (the lowest id
    among the owners it is linked to, so every run agrees); a person at no customer's domain
    speaks for none, whatever else the record is linked to.
    """
    through_sender = sorted(set(domain_owners) & set(linked))
    if through_sender:
        return through_sender[0]
    if len(domain_owners) == 1:
        return next(iter(domain_owners))
    return None


def lookback_start(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
