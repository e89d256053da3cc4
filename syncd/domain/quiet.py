"""The gone_quiet follow-up rule: a customer we used to talk to has heard nothing for a while.

Pure: per customer whose last record is old enough, the store hands over that last record
(the trigger), when the ``min_records``-th most recent record happened, and the rep of the
most recent record that has one; this module decides whether a task is due.

- A customer has gone quiet when no record with it happened for ``after`` (default 30 days)
  since its last one, and it had at least ``min_records`` (default 3) records in the
  ``lookback`` (default 90 days) up to that last one: a one-off exchange going silent is no news.
- The task is for the rep with the most recent record on the customer, due ``after`` the
  last record in that rep's working time ("30 business days" counts their working days).
- Its trigger is the customer's last record, so each quiet spell makes at most one task (the
  store keeps one per rule and record), a task a person closed stays closed, and a new spell
  after new contact is a new trigger and a new task.  Any record with the customer after the
  trigger closes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncd.domain.business_time import Span, WorkingWeek
from syncd.domain.followups import Wanted

RULE = "gone_quiet"
QUIET_MIN_RECORDS = 3
QUIET_LOOKBACK = "90 days"


@dataclass(frozen=True, slots=True)
class QuietRule:
    after: Span
    min_records: int
    lookback: timedelta

    def quiet_bounds(self) -> tuple[timedelta, timedelta]:
        """(shortest, longest) calendar time ``after`` can mean, whatever the rep's week: the
        store reads only customers whose last record lies between them."""
        hours = self.after.amount * (24 if self.after.unit == "day" else 1)
        if not self.after.business:
            return timedelta(hours=hours), timedelta(hours=hours)
        # A business day is at least a calendar day away (a business hour at least an
        # hour); at most a whole week per working day plus a year of holidays.
        whole = int(self.after.amount) if self.after.unit == "day" else 0
        shortest = timedelta(days=whole) if whole else timedelta(hours=self.after.amount)
        return shortest, timedelta(days=7 * (int(self.after.amount) + 1) + 366)


@dataclass(frozen=True, slots=True)
class QuietCustomer:
    customer_id: int
    name: str
    last_record_id: int  # the trigger
    last_at: datetime
    nth_last_at: datetime | None  # the min_records-th most recent record; None: fewer
    rep: str | None  # the rep of the most recent record that has one


def gone_quiet(
    customer: QuietCustomer,
    rule: QuietRule,
    week_of: Callable[[str], WorkingWeek],
    now: datetime,
    lookback_start: datetime,
    horizon: list[datetime] | None = None,
) -> Wanted | None:
    """The task this customer's silence calls for, if any.

    ``lookback_start`` is the ``[tasks] lookback_days`` guard of every rule: a spell whose
    task would have been due before it is left alone, so a first backfill of years of mail
    does not bury reps under the customers that went quiet long ago.  ``horizon`` gets the
    due time of a task not due yet (see ``followups.evaluate``).
    """
    if customer.rep is None or customer.nth_last_at is None:
        return None
    if customer.nth_last_at < customer.last_at - rule.lookback:
        return None  # too few records before the silence
    week = week_of(customer.rep)
    due = week.add(customer.last_at, rule.after)
    if due > now and horizon is not None:
        horizon.append(due)
    if due > now or due < lookback_start:
        return None
    since = customer.last_at.astimezone(week.zone).date().isoformat()
    return Wanted(
        RULE,
        customer.last_record_id,
        customer.rep,
        customer.customer_id,
        f"Get back in touch with {customer.name}: nothing since {since}",
        due,
    )


@dataclass(frozen=True, slots=True)
class RecordPeople:
    """Who on our side took part in a record: enough to name its rep."""

    kind: str  # email | meeting
    mailbox_owners: tuple[str, ...]  # owners of the mailboxes it came from, first first
    calendar_owners: tuple[str, ...]  # owners of the calendars it came from, first first
    organizer: str | None
    internal: tuple[tuple[str, str], ...]  # (address, role) of internal participants, in order


def rep_of(record: RecordPeople) -> str | None:
    """The rep a record belongs to, as the other rules choose them: for an email, the owner
    of the mailbox it was captured from (``unanswered_inbound``) or else our sender; for a
    meeting, the organiser when internal or else the first internal attendee
    (``after_meeting``) or the calendar's owner."""
    internal = [address for address, _ in record.internal]
    if record.kind == "meeting":
        if record.organizer in internal:
            return record.organizer
        if internal:
            return internal[0]
        return record.calendar_owners[0] if record.calendar_owners else None
    if record.mailbox_owners:
        return record.mailbox_owners[0]
    sender = next((address for address, role in record.internal if role == "from"), None)
    return sender or (internal[0] if internal else None)
