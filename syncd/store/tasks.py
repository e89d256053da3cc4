"""Tasks: what the rules want, what people decided, and the facts the rules read.

Rules only ever add a task that does not exist yet (one per rule and triggering record)
and close tasks that are open or snoozed: a task a person closed or dismissed stays so,
and a snoozed one comes back at its time, whatever the rules say.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from syncd.domain.addresses import domain_and_parents, domain_of
from syncd.domain.followups import (
    Closing,
    Email,
    Logged,
    Meeting,
    Person,
    Wanted,
    speaker_customer,
)
from syncd.domain.payloads import task_json
from syncd.schema.tables import (
    contacts,
    customer_domains,
    customers,
    participants,
    provenance,
    record_customers,
    records,
    tasks,
)
from syncd.store import outbox
from syncd.store.errors import NotFound
from syncd.store.events import TASK_CREATED, TASK_UPDATED, Event, emit_many
from syncd.store.sql import chunks, insert_ignore

ACTIVE = ("open", "snoozed")
# A task about a forgotten person whose VTODO must still leave the rep's task list: kept,
# with a redacted title, only until the next task sync deletes the VTODO, and shown nowhere.
FORGOTTEN = "forget"
_NOT_FORGOTTEN = or_(tasks.c.closed_by.is_(None), tasks.c.closed_by != FORGOTTEN)


def apply(
    conn: Connection,
    wanted: Iterable[Wanted],
    closings: Iterable[Closing],
    now: datetime | None = None,
) -> dict[str, int]:
    now = now or datetime.now(UTC)
    counts = {"created": 0, "closed": 0, "woken": 0}
    rows: list[dict[str, Any]] = [
        {
            "rule": w.rule, "record_id": w.record_id, "title": w.title[:500], "owner": w.owner,
            "customer_id": w.customer_id, "due_at": w.due_at, "status": "open",
            "created_at": now, "updated_at": now, "type": w.type, "priority": "normal",
        }
        for w in wanted
    ]  # fmt: skip
    # The tasks the rules made before: most wanted tasks exist already and most closings
    # concern no live task, so both are settled here instead of one statement each.
    known: dict[tuple[str, int], tuple[int, str]] = {
        (row.rule, row.record_id): (row.id, row.status)
        for row in conn.execute(
            select(tasks.c.id, tasks.c.rule, tasks.c.record_id, tasks.c.status).where(
                tasks.c.rule.is_not(None), tasks.c.record_id.is_not(None)
            )
        )
    }
    fresh = [r for r in rows if (r["rule"], r["record_id"]) not in known]
    insert_ignore(conn, tasks, fresh, ["rule", "record_id"])  # another daemon may race us
    counts["created"] = len(fresh)
    created = _created_now(conn, [r["record_id"] for r in fresh], now)
    updated: list[int] = []
    for closing in closings:
        task_id, status = known.get((closing.rule, closing.record_id), (None, None))
        if task_id is None or status not in ACTIVE:
            continue
        closed = conn.execute(
            update(tasks)
            .where(tasks.c.id == task_id, tasks.c.status.in_(ACTIVE))
            .values(
                status="done",
                closed_by_record_id=closing.closed_by,
                closed_at=now,
                closed_by="rule",
                snoozed_until=None,
                updated_at=now,
            )
        ).rowcount
        counts["closed"] += closed
        if closed:
            updated.append(task_id)
    due = (tasks.c.status == "snoozed", tasks.c.snoozed_until <= now)
    woken = list(conn.scalars(select(tasks.c.id).where(*due)))
    for part in chunks(woken):
        conn.execute(
            update(tasks)
            .where(tasks.c.id.in_(part), *due)
            .values(status="open", snoozed_until=None, updated_at=now)
        )
    counts["woken"] = len(woken)
    # Last: on PostgreSQL the outbox lock is held from here to the commit.
    emit_tasks(conn, TASK_CREATED, created)
    emit_tasks(conn, TASK_UPDATED, [*updated, *woken])
    return counts


def next_wake(conn: Connection, now: datetime) -> datetime | None:
    """When the next snoozed task wakes (``apply`` opens it then), if one is to."""
    found = conn.scalar(
        select(func.min(tasks.c.snoozed_until)).where(
            tasks.c.status == "snoozed", tasks.c.snoozed_until > now
        )
    )
    return None if found is None else _aware(found)


def _created_now(conn: Connection, record_ids: list[int], now: datetime) -> list[int]:
    """The rule tasks of these triggering records that this transaction made (stamped
    ``now``): a task another daemon made first is announced by that daemon."""
    out: list[int] = []
    for part in chunks(sorted(set(record_ids))):
        out.extend(
            conn.scalars(
                select(tasks.c.id).where(
                    tasks.c.record_id.in_(part),
                    tasks.c.rule.is_not(None),
                    tasks.c.created_at == now,
                )
            )
        )
    return out


def oldest_active_trigger(conn: Connection) -> datetime | None:
    """When the oldest record behind an open or snoozed rule task happened: closings must
    still see the mail after it, even beyond the lookback.  gone_quiet tasks are settled by
    their own query (store/quiet.py): their old triggers must not widen this read."""
    value = conn.scalar(
        select(func.min(records.c.occurred_at))
        .select_from(tasks.join(records, tasks.c.record_id == records.c.id))
        .where(tasks.c.status.in_(ACTIVE), tasks.c.rule.is_not(None), tasks.c.rule != "gone_quiet")
    )
    if value is None:
        return None
    return _aware(value)


def facts(
    conn: Connection, since: datetime, mailbox_owners: dict[str, str]
) -> tuple[list[Email], list[Meeting]]:
    """Emails and meetings since ``since``, with their people, matches and mailbox owners."""
    rows = conn.execute(
        select(
            records.c.id, records.c.kind, records.c.direction, records.c.subject,
            records.c.occurred_at, records.c.thread_key, records.c.message_id, records.c.status,
            records.c.ends_at, records.c.organizer,
        ).where(
            or_(
                and_(records.c.kind == "email", records.c.occurred_at >= since),
                and_(records.c.kind == "meeting", records.c.ends_at >= since),
            )
        )
    ).all()  # fmt: skip
    ids = [r.id for r in rows]
    people: dict[int, list[Person]] = defaultdict(list)
    linked: dict[int, list[int]] = defaultdict(list)
    owners: dict[int, list[str]] = defaultdict(list)
    for part in chunks(ids):
        for p in conn.execute(
            select(
                participants.c.record_id, participants.c.address, participants.c.name,
                participants.c.role, participants.c.external, participants.c.contact_id,
                contacts.c.customer_id,
            )
            .select_from(
                participants.outerjoin(contacts, participants.c.contact_id == contacts.c.id)
            )
            .where(participants.c.record_id.in_(part))
            .order_by(participants.c.id)
        ):  # fmt: skip
            people[p.record_id].append(
                Person(p.address, p.name, p.role, bool(p.external), p.contact_id, p.customer_id)
            )
        for link in conn.execute(
            select(record_customers.c.record_id, record_customers.c.customer_id)
            .where(record_customers.c.record_id.in_(part))
            .order_by(record_customers.c.customer_id)
        ):
            linked[link.record_id].append(link.customer_id)
        for source in conn.execute(
            select(provenance.c.record_id, provenance.c.mailbox)
            .where(provenance.c.record_id.in_(part))
            .order_by(provenance.c.id)
        ):
            owner = mailbox_owners.get(source.mailbox)
            if owner and owner not in owners[source.record_id]:
                owners[source.record_id].append(owner)
    # Someone at a customer's domain who is not a contact yet still speaks for the customer:
    # the customer owning their domain, not whichever customer the record is linked to first.
    domain_owners = _domain_owners(conn)
    # A meeting's task goes to its first linked customer: an active one before any the CRM
    # dropped (archived customers get no new task; see engine/followups.py).
    gone = archived_customers(conn)
    for found_links in linked.values():
        found_links.sort(key=lambda customer_id: (customer_id in gone, customer_id))
    for record_id, found in people.items():
        if linked.get(record_id):
            found[:] = [
                p if p.customer_id or not p.external
                else Person(
                    p.address, p.name, p.role, p.external, p.contact_id,
                    speaker_customer(_owners_of(p.address, domain_owners), linked[record_id]),
                )
                for p in found
            ]  # fmt: skip
    emails: list[Email] = []
    meetings: list[Meeting] = []
    for r in rows:
        if r.kind == "email":
            emails.append(
                Email(
                    r.id,
                    r.thread_key or r.message_id or str(r.id),
                    _aware(r.occurred_at),
                    r.direction,
                    r.subject,
                    tuple(people[r.id]),
                    tuple(owners[r.id]),
                )
            )
        elif r.ends_at is not None:
            meetings.append(
                Meeting(
                    r.id,
                    r.subject,
                    _aware(r.ends_at),
                    r.status or "scheduled",
                    r.organizer,
                    tuple(people[r.id]),
                    tuple(linked[r.id]),
                )
            )
    return emails, meetings


def logged_facts(conn: Connection, since: datetime) -> list[Logged]:
    """Logged calls and visits since ``since``, with their customers and contacts' addresses."""
    rows = conn.execute(
        select(records.c.id, records.c.kind, records.c.occurred_at, records.c.direction).where(
            records.c.kind.in_(("call", "visit")), records.c.occurred_at >= since
        )
    ).all()
    linked: dict[int, list[int]] = defaultdict(list)
    spoken: dict[int, list[str]] = defaultdict(list)
    for part in chunks([r.id for r in rows]):
        for rid, cid in conn.execute(
            select(record_customers.c.record_id, record_customers.c.customer_id)
            .where(record_customers.c.record_id.in_(part))
            .order_by(record_customers.c.customer_id)
        ):
            linked[rid].append(cid)
        for rid, address in conn.execute(
            select(participants.c.record_id, participants.c.address)
            .where(participants.c.record_id.in_(part), participants.c.external == 1)
            .order_by(participants.c.id)
        ):
            spoken[rid].append(address)
    return [
        Logged(r.id, r.kind, _aware(r.occurred_at), r.direction, tuple(linked[r.id]),
               tuple(spoken[r.id]))
        for r in rows
    ]  # fmt: skip


def archived_customers(conn: Connection) -> set[int]:
    """The ids of archived customers (a mirrored directory file no longer lists them)."""
    return set(conn.scalars(select(customers.c.id).where(customers.c.archived_at.is_not(None))))


def _domain_owners(conn: Connection) -> dict[str, set[int]]:
    owners: dict[str, set[int]] = defaultdict(set)
    for domain, customer_id in conn.execute(
        select(customer_domains.c.domain, customer_domains.c.customer_id)
    ):
        owners[domain].add(customer_id)
    return owners


def _owners_of(address: str, owners: dict[str, set[int]]) -> set[int]:
    """The customers owning the address's domain or its nearest owned parent domain."""
    for domain in domain_and_parents(domain_of(address)):
        if domain in owners:
            return owners[domain]
    return set()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- what people do ----------------------------------------------------------------------


def list_tasks(
    conn: Connection,
    *,
    owner: str | None = None,
    status: str | None = None,
    due_before: datetime | None = None,
    customer_id: int | None = None,
    ids: Iterable[int] | None = None,
    type_: str | None = None,
) -> list[dict[str, Any]]:
    """Tasks soonest due first, with their customer's name (``ids``: only these)."""
    query = (
        select(tasks, customers.c.name.label("customer"))
        .select_from(tasks.outerjoin(customers, tasks.c.customer_id == customers.c.id))
        .where(_NOT_FORGOTTEN)
        .order_by(tasks.c.due_at, tasks.c.id)
    )
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    if status is not None:
        query = query.where(tasks.c.status == status)
    if due_before is not None:
        query = query.where(tasks.c.due_at < due_before)
    if customer_id is not None:
        query = query.where(tasks.c.customer_id == customer_id)
    if type_ is not None:
        query = query.where(tasks.c.type == type_)
    if ids is None:
        return [dict(row) for row in conn.execute(query).mappings()]
    out: list[dict[str, Any]] = []
    for part in chunks(sorted(set(ids))):
        out.extend(dict(row) for row in conn.execute(query.where(tasks.c.id.in_(part))).mappings())
    return out


def set_status(
    conn: Connection,
    task_id: int,
    status: str,
    *,
    until: datetime | None = None,
    by: str = "person",
    announce: bool = True,
) -> bool:
    """Set a task's status; True if it changed.  ``announce=False``: the caller emits the
    ``task.updated`` event itself, last in its transaction (it writes more rows after)."""
    now = datetime.now(UTC)
    before = conn.execute(
        select(tasks.c.status, tasks.c.snoozed_until).where(tasks.c.id == task_id)
    ).first()
    if before is None:
        raise NotFound("task", task_id)
    closing = status in ("done", "dismissed")
    conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id)
        .values(
            status=status,
            snoozed_until=until if status == "snoozed" else None,
            closed_at=now if closing else None,
            closed_by=by if closing else None,
            updated_at=now,
        )
    )
    snoozed_until = until if status == "snoozed" else None
    changed = (before.status, before.snoozed_until) != (status, snoozed_until)
    if changed and announce:
        emit_tasks(conn, TASK_UPDATED, [task_id])
    return changed


def add_task(
    conn: Connection,
    *,
    title: str,
    owner: str,
    customer_id: int | None,
    due_at: datetime,
    type_: str = "todo",
    priority: str = "normal",
) -> int:
    now = datetime.now(UTC)
    result = conn.execute(
        tasks.insert().values(
            type=type_,
            priority=priority,
            rule=None,
            record_id=None,
            title=title,
            owner=owner,
            customer_id=customer_id,
            due_at=due_at,
            status="open",
            created_at=now,
            updated_at=now,
        )
    )
    task_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    emit_tasks(conn, TASK_CREATED, [task_id])
    return task_id


# --- VTODO bookkeeping --------------------------------------------------------------------


def vtodo_tasks(conn: Connection, owner: str) -> list[dict[str, Any]]:
    return [
        {**row, "due_at": _aware(row["due_at"]), "updated_at": _aware(row["updated_at"]),
         "closed_at": row["closed_at"] and _aware(row["closed_at"]),
         "vtodo_synced_at": row["vtodo_synced_at"] and _aware(row["vtodo_synced_at"])}
        for row in list_tasks(conn, owner=owner)
    ]  # fmt: skip


def vtodo_written(conn: Connection, task_id: int, href: str, etag: str, at: datetime) -> None:
    conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id)
        .values(vtodo_href=href, vtodo_etag=etag or None, vtodo_synced_at=at)
    )


def vtodo_seen(conn: Connection, task_id: int, etag: str) -> None:
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(vtodo_etag=etag))


def vtodo_gone(conn: Connection, task_id: int) -> None:
    conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id)
        .values(vtodo_href=None, vtodo_etag=None, vtodo_synced_at=datetime.now(UTC))
    )


def forgotten_vtodos(conn: Connection, owner: str) -> list[tuple[int, str]]:
    """(task id, VTODO href) of the owner's tasks about forgotten people still on the server."""
    return [
        (row.id, row.vtodo_href)
        for row in conn.execute(
            select(tasks.c.id, tasks.c.vtodo_href).where(
                tasks.c.owner == owner,
                tasks.c.closed_by == FORGOTTEN,
                tasks.c.vtodo_href.is_not(None),
            )
        )
    ]


def drop_task(conn: Connection, task_id: int) -> None:
    conn.execute(tasks.delete().where(tasks.c.id == task_id))


def forget_tasks(conn: Connection, record_ids: list[int], title: str) -> int:
    """Tasks about records being erased: gone now, or, when their VTODO is in a rep's task
    list, a redacted tombstone that the next task sync deletes there and here."""
    now = datetime.now(UTC)
    erased = 0
    for part in chunks(record_ids):
        erased += conn.execute(
            tasks.delete().where(tasks.c.record_id.in_(part), tasks.c.vtodo_href.is_(None))
        ).rowcount
        erased += conn.execute(
            update(tasks)
            .where(tasks.c.record_id.in_(part))
            .values(
                title=title, status="dismissed", closed_by=FORGOTTEN, closed_at=now,
                record_id=None, closed_by_record_id=None, snoozed_until=None, updated_at=now,
            )
        ).rowcount  # fmt: skip
    return erased


def task_events(conn: Connection, type_: str, task_ids: Iterable[int]) -> list[Event]:
    rows = sorted(list_tasks(conn, ids=task_ids), key=lambda row: row["id"])
    when = outbox.occurred_at(conn, [row["record_id"] for row in rows if row["record_id"]])
    return [
        Event(type_, f"task:{row['id']}", task_json(row), when.get(row["record_id"]))
        for row in rows
    ]


def emit_tasks(conn: Connection, type_: str, task_ids: Iterable[int]) -> None:
    """One ``type_`` event per task (its triggering record's time as ``occurred_at``)."""
    emit_many(conn, task_events(conn, type_, task_ids))
