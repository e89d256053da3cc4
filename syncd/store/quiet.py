"""Facts for the gone_quiet rule, read with a few indexed queries however many records exist.

Candidates come from two range scans of ``records(occurred_at)``: customers with a record
in the band where a quiet spell's task could fall due, minus customers with any later
record.  Only for those (a few among thousands, in a steady state) are the trigger, the
``min_records``-th most recent record and the rep looked up, per customer over
``record_customers(customer_id, record_id)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, literal_column, or_, select, type_coerce

from syncd.domain.followups import Closing
from syncd.domain.quiet import RULE, QuietCustomer, QuietRule, RecordPeople, rep_of
from syncd.schema.tables import (
    customers,
    meeting_sources,
    participants,
    provenance,
    record_customers,
    records,
    tasks,
)
from syncd.schema.types import UtcDateTime
from syncd.store.insight import ACTIVE, without_jit
from syncd.store.sql import chunks


def _contact(table: Any) -> Any:
    """A record that is contact: any email, call or visit, a meeting unless cancelled or
    declined (as the customer list counts last contact: a called-off meeting spoke to
    nobody); a note spoke to nobody either."""
    return and_(
        or_(table.c.status.is_(None), table.c.status == "scheduled"), table.c.kind != "note"
    )


def quiet_customers(
    conn: Connection,
    rule: QuietRule,
    *,
    now: datetime,
    lookback_start: datetime,
    mailbox_owners: Mapping[str, str],
    calendar_owners: Mapping[str, str],
) -> list[QuietCustomer]:
    """Customers whose last record lies where a gone_quiet task may be due now."""
    without_jit(conn)
    shortest, longest = rule.quiet_bounds()
    newest = now - shortest  # a later record: not quiet long enough
    oldest = lookback_start - longest  # an earlier last record: its task was due long ago
    if oldest > newest:
        return []
    through = record_customers.join(records, records.c.id == record_customers.c.record_id)
    later = (
        select(record_customers.c.customer_id)
        .select_from(through)
        .where(records.c.occurred_at > newest, _contact(records))
    )
    band = (
        select(
            record_customers.c.customer_id.label("customer_id"),
            type_coerce(func.max(records.c.occurred_at), UtcDateTime).label("last_at"),
        )
        .select_from(through)
        .where(records.c.occurred_at >= oldest, records.c.occurred_at <= newest)
        .where(_contact(records))
        .where(record_customers.c.customer_id.not_in(later))
        .group_by(record_customers.c.customer_id)
    )
    found = [(row.customer_id, _aware(row.last_at)) for row in conn.execute(band)]
    if not found:
        return []
    floor = oldest - rule.lookback  # an earlier record cannot count towards min_records
    out: list[QuietCustomer] = []
    for part in chunks(found, 200):
        ids = [cid for cid, _ in part]
        # An archived customer (gone from the directory) gets no new links, so it always
        # looks silent: nobody is to chase it.
        names = dict(
            conn.execute(
                select(customers.c.id, customers.c.name).where(
                    customers.c.id.in_(ids), customers.c.archived_at.is_(None)
                )
            ).all()
        )
        recent = _recent(conn, ids, floor, rule.min_records)
        reps = _reps(conn, {cid: rows[0][0] for cid, rows in recent.items()}, mailbox_owners,
                     calendar_owners)  # fmt: skip
        for cid, last_at in part:
            mine = recent.get(cid)
            if cid not in names or not mine:
                continue
            nth = mine[rule.min_records - 1][1] if len(mine) >= rule.min_records else None
            out.append(QuietCustomer(cid, names[cid], mine[0][0], last_at, nth, reps.get(cid)))
    return out


def next_quiet(conn: Connection, rule: QuietRule, now: datetime) -> datetime | None:
    """The earliest time a customer that ``quiet_customers`` leaves out now, its last
    record too recent, could be due: its last record plus the rule's shortest span."""
    shortest, _longest = rule.quiet_bounds()
    newest = now - shortest
    # A customer's last record is after ``newest`` exactly when one of its records is: so
    # only the records after it are read (through ix_records_occurred_at), not every record
    # ever captured (3 s for a million, on every full pass).
    through = record_customers.join(records, records.c.id == record_customers.c.record_id)
    last = (
        select(func.max(records.c.occurred_at).label("last_at"))
        .select_from(through)
        .where(records.c.occurred_at > newest, _contact(records))
        # ``+ 0``: grouped by the bare column, SQLite walks record_customers' customer
        # index (every link ever) to group in order; by an expression, it starts from the
        # records in the window and groups those few in a temporary tree.
        .group_by(record_customers.c.customer_id + literal_column("0"))
        .subquery()
    )
    found = conn.scalar(select(type_coerce(func.min(last.c.last_at), UtcDateTime)))
    return None if found is None else _aware(found) + shortest


def _recent(
    conn: Connection, customer_ids: Sequence[int], floor: datetime, n: int
) -> dict[int, list[tuple[int, datetime]]]:
    """Per customer, its ``n`` most recent records since ``floor``: (id, when), newest first;
    one statement for all of them."""
    rank = (
        func.row_number()
        .over(
            partition_by=record_customers.c.customer_id,
            order_by=(records.c.occurred_at.desc(), records.c.id.desc()),
        )
        .label("rank")
    )
    ranked = (
        select(record_customers.c.customer_id, records.c.id, records.c.occurred_at, rank)
        .select_from(record_customers.join(records, records.c.id == record_customers.c.record_id))
        .where(
            record_customers.c.customer_id.in_(customer_ids),
            records.c.occurred_at >= floor,
            _contact(records),
        )
        .subquery()
    )
    out: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
    for cid, rid, at, _ in conn.execute(
        select(ranked).where(ranked.c.rank <= n).order_by(ranked.c.customer_id, ranked.c.rank)
    ):
        out[cid].append((rid, _aware(at)))
    return out


def _reps(
    conn: Connection,
    triggers: Mapping[int, int],
    mailbox_owners: Mapping[str, str],
    calendar_owners: Mapping[str, str],
) -> dict[int, str]:
    """Per customer, the rep of its most recent record that names one of ours: its last
    record (``triggers``) nearly always does; for the others, the latest that does."""
    people = _people(conn, sorted(set(triggers.values())), mailbox_owners, calendar_owners)
    out: dict[int, str] = {}
    for cid, rid in triggers.items():
        rep = rep_of(people[rid]) if rid in people else None
        if rep:
            out[cid] = rep
    rest = [cid for cid in triggers if cid not in out]
    if not rest:
        return out
    inner = record_customers.alias("inner_links")
    theirs = records.alias("theirs")
    ours = or_(
        exists().where(participants.c.record_id == theirs.c.id, participants.c.external == 0),
        exists().where(provenance.c.record_id == theirs.c.id),
        exists().where(meeting_sources.c.record_id == theirs.c.id),
    )
    latest = (
        select(theirs.c.id)
        .select_from(inner.join(theirs, theirs.c.id == inner.c.record_id))
        .where(inner.c.customer_id == customers.c.id, ours)
        .order_by(theirs.c.occurred_at.desc(), theirs.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    chosen = dict(
        conn.execute(select(customers.c.id, latest).where(customers.c.id.in_(rest))).all()
    )
    record_ids = sorted({rid for rid in chosen.values() if rid is not None})
    people = _people(conn, record_ids, mailbox_owners, calendar_owners)
    for cid, rid in chosen.items():
        rep = rep_of(people[rid]) if rid in people else None
        if rep:
            out[cid] = rep
    return out


def _people(
    conn: Connection,
    record_ids: Sequence[int],
    mailbox_owners: Mapping[str, str],
    calendar_owners: Mapping[str, str],
) -> dict[int, RecordPeople]:
    kinds: dict[int, tuple[str, str | None]] = {}
    internal: dict[int, list[tuple[str, str]]] = defaultdict(list)
    boxes: dict[int, list[str]] = defaultdict(list)
    cals: dict[int, list[str]] = defaultdict(list)
    for part in chunks(record_ids):
        for rid, kind, organizer in conn.execute(
            select(records.c.id, records.c.kind, records.c.organizer).where(records.c.id.in_(part))
        ):
            kinds[rid] = (kind, organizer)
        for rid, address, role in conn.execute(
            select(participants.c.record_id, participants.c.address, participants.c.role)
            .where(participants.c.record_id.in_(part), participants.c.external == 0)
            .order_by(participants.c.id)
        ):
            internal[rid].append((address, role))
        for rid, mailbox in conn.execute(
            select(provenance.c.record_id, provenance.c.mailbox)
            .where(provenance.c.record_id.in_(part))
            .order_by(provenance.c.id)
        ):
            owner = mailbox_owners.get(mailbox)
            if owner and owner not in boxes[rid]:
                boxes[rid].append(owner)
        for rid, calendar in conn.execute(
            select(meeting_sources.c.record_id, meeting_sources.c.calendar)
            .where(meeting_sources.c.record_id.in_(part))
            .order_by(meeting_sources.c.id)
        ):
            owner = calendar_owners.get(calendar)
            if owner and owner not in cals[rid]:
                cals[rid].append(owner)
    return {
        rid: RecordPeople(
            kind, tuple(boxes[rid]), tuple(cals[rid]), organizer, tuple(internal[rid])
        )
        for rid, (kind, organizer) in kinds.items()
    }


def settled(conn: Connection) -> list[Closing]:
    """Open or snoozed gone_quiet tasks whose customer has a record after the trigger: each
    with the first such record."""
    trigger = records.alias("trigger")
    after = records.alias("after")
    first_after = (
        select(after.c.id)
        .select_from(record_customers.join(after, after.c.id == record_customers.c.record_id))
        .where(
            record_customers.c.customer_id == tasks.c.customer_id,
            _contact(after),
            or_(
                after.c.occurred_at > trigger.c.occurred_at,
                and_(after.c.occurred_at == trigger.c.occurred_at, after.c.id > trigger.c.id),
            ),
        )
        .order_by(after.c.occurred_at, after.c.id)
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(tasks.c.record_id, first_after)
        .select_from(tasks.join(trigger, trigger.c.id == tasks.c.record_id))
        .where(tasks.c.rule == RULE, tasks.c.status.in_(ACTIVE), tasks.c.customer_id.is_not(None))
    )
    return [
        Closing(RULE, trigger_id, closer)
        for trigger_id, closer in conn.execute(query)
        if closer is not None
    ]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
