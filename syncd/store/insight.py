"""Read side of customer insight: per-customer activity, first responses, weekly counts.

Every number is an aggregate the database computes over indexed columns (migration 0015):
one grouped pass over ``record_customers`` joined to ``records`` for the customer list, a
window over ``records(thread_key, occurred_at, id, direction)`` pairing each inbound email
with its first reply.  Python receives one row per customer, per inbound email or
per week, never the records themselves.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union,
)

from syncd.schema.tables import (
    customer_domains,
    customers,
    meeting_sources,
    participants,
    provenance,
    record_customers,
    records,
    tasks,
)
from syncd.schema.types import UtcDateTime
from syncd.store.sql import chunks

ACTIVE = ("open", "snoozed")
# A meeting counts as contact unless it was called off or every customer attendee declined.
_HELD_OR_PLANNED = or_(records.c.status.is_(None), records.c.status == "scheduled")
# Contact is any record that reached the customer: a note (written about them) did not.
_REACHED = and_(_HELD_OR_PLANNED, records.c.kind != "note")


@dataclass(frozen=True, slots=True)
class Owned:
    """How to tell a rep's records: their address as an internal participant, and the
    mailboxes and calendars they own (a Bcc copy names nobody)."""

    address: str
    mailboxes: Collection[str] = ()
    calendars: Collection[str] = ()


def without_jit(conn: Connection) -> None:
    """PostgreSQL compiles a query whose estimated cost is high (these aggregates over every
    record) before running it: a quarter of a second of compiling for a query that runs in
    less.  Off for the rest of this transaction only."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")


def customer_overview(
    conn: Connection,
    *,
    now: datetime,
    window_start: datetime,
    owner: Owned | None = None,
    archived: bool | None = False,
) -> list[dict[str, Any]]:
    """Active customers (``archived=False``), archived ones (True) or all (None), or of those
    the ones ``owner`` has records with, by name, with its domains and
    activity: last contact (any email, call or visit, or meeting not cancelled or declined,
    up to now), last inbound and outbound, the next planned meeting, open tasks, and
    emails, meetings, calls and visits from ``window_start`` to now."""
    without_jit(conn)
    past = records.c.occurred_at <= now
    in_window = and_(records.c.occurred_at >= window_start, past)
    # Contact is what happened: a meeting called off (or declined by the customer) spoke to
    # nobody, so it must not make a silent customer look recently reached.
    contact = and_(past, _REACHED)
    activity = (
        select(
            record_customers.c.customer_id.label("customer_id"),
            _latest(contact),
            _latest(and_(contact, records.c.direction == "inbound"), "last_inbound_at"),
            _latest(and_(contact, records.c.direction == "outbound"), "last_outbound_at"),
            type_coerce(
                func.min(
                    case(
                        (
                            and_(
                                records.c.kind == "meeting",
                                _HELD_OR_PLANNED,
                                records.c.starts_at > now,
                            ),
                            records.c.starts_at,
                        )
                    )
                ),
                UtcDateTime,
            ).label("next_meeting_at"),
            _count(and_(records.c.kind == "email", in_window)).label("emails"),
            _count(and_(records.c.kind == "meeting", _HELD_OR_PLANNED, in_window)).label(
                "meetings"
            ),
            _count(and_(records.c.kind == "call", in_window)).label("calls"),
            _count(and_(records.c.kind == "visit", in_window)).label("visits"),
        )
        .select_from(record_customers.join(records, records.c.id == record_customers.c.record_id))
        .group_by(record_customers.c.customer_id)
    )
    open_tasks = (
        select(tasks.c.customer_id, func.count().label("open_tasks"))
        .where(tasks.c.customer_id.is_not(None), tasks.c.status.in_(ACTIVE))
        .group_by(tasks.c.customer_id)
    )
    chosen = select(customers.c.id, customers.c.name, customers.c.archived_at).order_by(
        customers.c.name
    )
    if archived is not None:
        chosen = chosen.where(
            customers.c.archived_at.is_not(None) if archived else customers.c.archived_at.is_(None)
        )
    if owner is not None:
        theirs = _customers_of(owner)
        chosen = chosen.where(customers.c.id.in_(theirs))
        activity = activity.where(record_customers.c.customer_id.in_(theirs))
    found = {row.customer_id: row for row in conn.execute(activity)}
    counts: dict[int, int] = {cid: int(n) for cid, n in conn.execute(open_tasks)}
    domains: dict[int, list[str]] = {}
    for cid, domain in conn.execute(
        select(customer_domains.c.customer_id, customer_domains.c.domain).order_by(
            customer_domains.c.domain
        )
    ):
        domains.setdefault(cid, []).append(domain)
    out: list[dict[str, Any]] = []
    for cid, name, archived_at in conn.execute(chosen):
        row = found.get(cid)
        out.append(
            {
                "id": cid,
                "name": name,
                "domains": domains.get(cid, []),
                "archived_at": archived_at,
                "last_contact_at": row.last_contact_at if row else None,
                "last_inbound_at": row.last_inbound_at if row else None,
                "last_outbound_at": row.last_outbound_at if row else None,
                "next_meeting_at": row.next_meeting_at if row else None,
                "open_tasks": int(counts.get(cid, 0)),
                "emails": int(row.emails or 0) if row else 0,
                "meetings": int(row.meetings or 0) if row else 0,
                "calls": int(row.calls or 0) if row else 0,
                "visits": int(row.visits or 0) if row else 0,
            }
        )
    return out


def _latest(condition: ColumnElement[bool], label: str = "last_contact_at") -> Any:
    return type_coerce(func.max(case((condition, records.c.occurred_at))), UtcDateTime).label(label)


def _count(condition: ColumnElement[bool]) -> Any:
    return func.sum(case((condition, 1), else_=0))


def _customers_of(owner: Owned) -> Any:
    """Ids of the customers ``owner`` has records with."""
    through = record_customers.c.record_id
    parts = [
        select(record_customers.c.customer_id)
        .select_from(record_customers.join(participants, participants.c.record_id == through))
        .where(participants.c.address == owner.address, participants.c.external == 0)
    ]
    if owner.mailboxes:
        parts.append(
            select(record_customers.c.customer_id)
            .select_from(record_customers.join(provenance, provenance.c.record_id == through))
            .where(provenance.c.mailbox.in_(sorted(owner.mailboxes)))
        )
    if owner.calendars:
        parts.append(
            select(record_customers.c.customer_id)
            .select_from(
                record_customers.join(meeting_sources, meeting_sources.c.record_id == through)
            )
            .where(meeting_sources.c.calendar.in_(sorted(owner.calendars)))
        )
    return union(*parts) if len(parts) > 1 else parts[0]


# --- first responses -----------------------------------------------------------------------


class Asked(NamedTuple):
    """An inbound customer email, its first reply in the thread, and who it reached (a tuple:
    a year of mail makes a hundred thousand of them)."""

    record_id: int
    asked_at: datetime
    replied_at: datetime | None
    mailbox: str | None  # the first mailbox it was captured from
    recipient: str | None  # the first internal participant (when no mailbox is known)
    customer_id: int
    customer: str


def first_replies(
    conn: Connection, *, since: datetime, until: datetime, mailboxes: Collection[str] = ()
) -> list[Asked]:
    """Inbound emails linked to a customer, from ``since`` to ``until``, each with the first
    outbound email after it in its thread: the reply that settles ``unanswered_inbound``.
    One row per (email, customer) link.  An email from none of ``mailboxes`` (the configured
    ones) carries its first internal participant instead."""
    without_jit(conn)
    # One ordered pass over the thread index: per email, the first outbound email after it
    # in its thread (later rows of the same thread, by time then id).  Only emails have a
    # thread, so no kind test (which would read the table); replies come after ``since``.
    following = func.min(case((records.c.direction == "outbound", records.c.occurred_at))).over(
        partition_by=records.c.thread_key,
        order_by=(records.c.occurred_at, records.c.id),
        rows=(1, None),
    )
    mail = (
        select(
            records.c.id,
            records.c.occurred_at,
            records.c.direction,
            following.label("replied_at"),
        )
        .where(records.c.thread_key.is_not(None), records.c.occurred_at >= since)
        .subquery("mail")
    )
    first_mailbox = (
        select(provenance.c.mailbox)
        .where(provenance.c.record_id == mail.c.id)
        .order_by(provenance.c.id)
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(
            mail.c.id,
            type_coerce(mail.c.occurred_at, UtcDateTime),
            type_coerce(mail.c.replied_at, UtcDateTime),
            first_mailbox.label("mailbox"),
            record_customers.c.customer_id,
        )
        .select_from(mail.join(record_customers, record_customers.c.record_id == mail.c.id))
        .where(mail.c.direction == "inbound", mail.c.occurred_at <= until)
    )
    rows = conn.execute(query).all()
    names = dict(conn.execute(select(customers.c.id, customers.c.name)).all())
    unowned = sorted({row[0] for row in rows if row[3] not in mailboxes})
    recipients = _first_internal(conn, unowned)
    # UtcDateTime hands back aware datetimes already.
    return [
        Asked(rid, at, replied, box, recipients.get(rid), cid, names[cid])
        for rid, at, replied, box, cid in rows
    ]


def _first_internal(conn: Connection, record_ids: Sequence[int]) -> dict[int, str]:
    """Per record, its first internal participant (for mail from unconfigured mailboxes)."""
    out: dict[int, str] = {}
    for part in chunks(record_ids):
        for rid, address in conn.execute(
            select(participants.c.record_id, participants.c.address)
            .where(participants.c.record_id.in_(part), participants.c.external == 0)
            .order_by(participants.c.id.desc())
        ):
            out[rid] = address  # the lowest id comes last and stays
    return out


# --- weekly activity -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Week:
    starts_at: datetime
    emails_in: int = 0
    emails_out: int = 0
    meetings: int = 0
    calls: int = 0


def weekly_activity(conn: Connection, customer_id: int, bounds: Sequence[datetime]) -> list[Week]:
    """Emails in, emails out, meetings and calls of one customer per week; ``bounds`` are the
    weeks' starts and the last week's end (exact instants: a DST change moves none)."""
    occurred = records.c.occurred_at
    week = case(
        *((occurred < end, literal(index)) for index, end in enumerate(bounds[1:])),
        else_=literal(-1),
    ).label("week")
    what = case(
        (and_(records.c.kind == "email", records.c.direction == "inbound"), literal("in")),
        (and_(records.c.kind == "email", records.c.direction == "outbound"), literal("out")),
        (and_(records.c.kind == "meeting", _HELD_OR_PLANNED), literal("meeting")),
        (records.c.kind == "call", literal("call")),
        else_=literal("other"),
    ).label("what")
    # Grouped outside: PostgreSQL would not see the CASE in GROUP BY as the one selected
    # (each carries its own bound parameters).
    rows = (
        select(week, what)
        .select_from(record_customers.join(records, records.c.id == record_customers.c.record_id))
        .where(
            record_customers.c.customer_id == customer_id,
            occurred >= bounds[0],
            occurred < bounds[-1],
        )
        .subquery()
    )
    query = select(rows.c.week, rows.c.what, func.count()).group_by(rows.c.week, rows.c.what)
    counts: dict[tuple[int, str], int] = {
        (int(index), str(kind)): int(n) for index, kind, n in conn.execute(query)
    }
    return [
        Week(
            start,
            counts.get((index, "in"), 0),
            counts.get((index, "out"), 0),
            counts.get((index, "meeting"), 0),
            counts.get((index, "call"), 0),
        )
        for index, start in enumerate(bounds[:-1])
    ]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
