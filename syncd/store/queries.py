"""Read side: records with their customers, participants and sources; sync status.

The sync status queries themselves are in store/status_read.py (plain SQL, so that
``syncd status`` starts without SQLAlchemy); these run them on a SQLAlchemy connection.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Select, bindparam, func, select

from syncd.schema.tables import (
    contact_addresses,
    customers,
    meeting_sources,
    participants,
    provenance,
    record_customers,
    records,
)
from syncd.store import status_read
from syncd.store.sql import chunks


def list_records(
    conn: Connection,
    *,
    customer_id: int | None = None,
    contact_address: str | None = None,
    since: datetime | None = None,
    kind: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Records newest first, each with customers, participants and sources, as plain dicts
    with datetimes; a meeting's ``status`` is the stored one (the CLI shows ``held`` once
    it has ended)."""
    when = records.c.occurred_at
    query = select(*_COLUMNS).order_by(when.desc(), records.c.id.desc())
    if customer_id is not None:
        # The customer's links newest first, from their index (each carries its record's
        # occurred_at), each record read as it comes: a limit reads that many, not every
        # record of the customer sorted.  Ties in the same order (the id after the time).
        when = record_customers.c.occurred_at
        query = (
            select(*_COLUMNS)
            .join_from(records, record_customers, record_customers.c.record_id == records.c.id)
            .where(record_customers.c.customer_id == customer_id)
            .order_by(when.desc(), record_customers.c.record_id.desc())
        )
    if contact_address is not None:
        query = query.where(
            records.c.id.in_(
                select(participants.c.record_id).where(participants.c.address == contact_address)
            )
        )
    if since is not None:
        query = query.where(when >= since)
    if kind is not None:
        query = query.where(records.c.kind == kind)
    if limit is not None:
        query = query.limit(limit)
    return _assemble(conn, conn.execute(query).all())


def records_by_id(conn: Connection, record_ids: Iterable[int]) -> list[dict[str, Any]]:
    """The records with these ids, in the shape of ``list_records``, by id: five queries
    per 500 records, however many there are (the outbox renders a whole batch at once)."""
    rows: list[Any] = []
    for part in chunks(sorted(set(record_ids))):
        stmt, params = _select(part)
        wanted = set(part)
        rows.extend(row for row in conn.execute(stmt.records, params).all() if row.id in wanted)
    return _assemble(conn, sorted(rows, key=lambda row: row.id))


# Rows come as tuples from statements built once.  The ids of one batch's new records are
# consecutive: a range (BETWEEN, on the same indexes) costs the driver and SQLAlchemy far
# less than an IN list of 500 parameters, and what else falls in the range is dropped.
_COLUMNS = (
    records.c.id, records.c.kind, records.c.direction, records.c.subject, records.c.snippet,
    records.c.body, records.c.occurred_at, records.c.thread_key, records.c.message_id,
    records.c.status, records.c.starts_at, records.c.ends_at, records.c.ical_uid,
    records.c.recurrence_id, records.c.organizer, records.c.owner, records.c.origin,
    records.c.external_id, records.c.duration_seconds, records.c.outcome, records.c.location,
)  # fmt: skip


class RecordRow(NamedTuple):
    """A records row as ``_COLUMNS`` reads it (for rows known without reading them)."""

    id: int
    kind: str
    direction: str
    subject: str
    snippet: str | None
    body: str | None
    occurred_at: datetime
    thread_key: str | None
    message_id: str | None
    status: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    ical_uid: str | None = None
    recurrence_id: str | None = None
    organizer: str | None = None
    owner: str | None = None
    origin: str | None = None
    external_id: str | None = None
    duration_seconds: int | None = None
    outcome: str | None = None
    location: str | None = None


class _Statements(NamedTuple):
    records: Select[Any]
    links: Select[Any]
    people: Select[Any]
    calendar_sources: Select[Any]
    mail_sources: Select[Any]


def _statements(by: Callable[[Any], Any]) -> _Statements:
    return _Statements(
        records=select(*_COLUMNS).where(by(records.c.id)),
        links=select(
            record_customers.c.record_id, customers.c.id, customers.c.name, record_customers.c.link
        )
        .join(customers, customers.c.id == record_customers.c.customer_id)
        .where(by(record_customers.c.record_id))
        .order_by(customers.c.name),
        people=select(
            participants.c.record_id, participants.c.address, participants.c.name,
            participants.c.role, participants.c.contact_id,
        )
        .where(by(participants.c.record_id))
        .order_by(participants.c.id),
        calendar_sources=select(
            meeting_sources.c.record_id, meeting_sources.c.calendar, meeting_sources.c.url,
            meeting_sources.c.href,
        )
        .where(by(meeting_sources.c.record_id))
        .order_by(meeting_sources.c.id),
        mail_sources=select(provenance.c.record_id, provenance.c.mailbox, provenance.c.folder, provenance.c.uid)
        .where(by(provenance.c.record_id))
        .order_by(provenance.c.mailbox, provenance.c.folder),
    )  # fmt: skip


_BY_LIST = _statements(lambda column: column.in_(bindparam("ids", expanding=True)))
_BY_RANGE = _statements(lambda column: column.between(bindparam("lo"), bindparam("hi")))


def _select(part: Sequence[int]) -> tuple[_Statements, dict[str, Any]]:
    """The statements and parameters for these ids (sorted)."""
    if part[-1] - part[0] < 2 * len(part):
        return _BY_RANGE, {"lo": part[0], "hi": part[-1]}
    return _BY_LIST, {"ids": list(part)}


def _assemble(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Records rows (``_COLUMNS``) with their customers, participants and sources."""
    links: list[Any] = []
    people: list[Any] = []
    calendar_sources: list[Any] = []
    mail_sources: list[Any] = []
    for part in chunks(sorted(row.id for row in rows)):
        stmt, params = _select(part)
        links.extend(conn.execute(stmt.links, params).all())
        people.extend(conn.execute(stmt.people, params).all())
        calendar_sources.extend(conn.execute(stmt.calendar_sources, params).all())
        mail_sources.extend(conn.execute(stmt.mail_sources, params).all())
    return shape(rows, links, people, calendar_sources, mail_sources)


def shape(
    rows: Iterable[Any],
    links: Iterable[tuple[int, int, str, str]],
    people: Iterable[tuple[int, str, str, str, int | None]],
    calendar_sources: Iterable[tuple[int, str, str, str]],
    mail_sources: Iterable[tuple[int, str, str, int]],
) -> list[dict[str, Any]]:
    """The one shape of a record for ``list_records`` and the outbox, from the tuples the
    statements above read (``rows``: ``_COLUMNS``; participants in the order they were
    written).  Rows about records not in ``rows`` are ignored.  Customers are sorted by name
    and mail sources by mailbox and folder here, not by each database's collation."""
    wanted = {row.id for row in rows}
    linked: dict[int, list[dict[str, Any]]] = defaultdict(list)
    who: dict[int, list[dict[str, Any]]] = defaultdict(list)
    where: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rid, cid, name, link in sorted(links, key=lambda link: link[2]):
        if rid in wanted:
            linked[rid].append({"id": cid, "name": name, "link": link})
    for rid, address, name, role, contact_id in people:
        if rid in wanted:
            who[rid].append(
                {"address": address, "name": name, "role": role, "contact_id": contact_id}
            )
    for rid, calendar, url, href in calendar_sources:
        if rid in wanted:
            where[rid].append({"calendar": calendar, "url": url, "href": href})
    for rid, mailbox, folder, uid in sorted(mail_sources, key=lambda s: (s[1], s[2])):
        if rid in wanted:
            where[rid].append({"mailbox": mailbox, "folder": folder, "uid": uid})
    empty: list[dict[str, Any]] = []
    return [
        record_dict(
            row, linked.get(row.id, empty), who.get(row.id, empty), where.get(row.id, empty)
        )
        for row in rows
    ]


def record_dict(
    row: Any,
    linked: list[dict[str, Any]],
    participants: list[dict[str, Any]],
    sources: list[dict[str, Any]],
) -> dict[str, Any]:
    """One record in the one shape (``shape``), from its row and its lists in order."""
    return {
        "id": row.id,
        "kind": row.kind,
        "direction": row.direction,
        "subject": row.subject,
        "snippet": row.snippet,
        "body": row.body,
        "occurred_at": row.occurred_at,
        "customers": linked,
        "participants": participants,
        "thread_id": row.thread_key,
        "message_id": row.message_id,
        "sources": sources,
        # Logged records (call, visit, note); null on captured ones and where the kind
        # takes no such value.
        "owner": row.owner,
        "origin": row.origin,
        "external_id": row.external_id,
        "duration_seconds": row.duration_seconds,
        "outcome": row.outcome,
        "location": row.location,
        **(_meeting_fields(row) if row.kind == "meeting" else {}),
    }


def _meeting_fields(row: Any) -> dict[str, Any]:
    return {
        "status": row.status,
        "starts_at": row.starts_at,
        "ends_at": row.ends_at,
        "ical_uid": row.ical_uid,
        "recurrence_id": row.recurrence_id or None,
        "organizer": row.organizer,
    }


def contact_exists(conn: Connection, address: str) -> bool:
    return (
        conn.execute(
            select(contact_addresses.c.id).where(contact_addresses.c.address == address)
        ).first()
        is not None
    )


def sync_status(conn: Connection, mailbox_names: list[str]) -> list[dict[str, Any]]:
    """Per configured mailbox: its state and, per folder, the cursor and counters."""
    return status_read.sync_status(status_read.Reader.of(conn), mailbox_names)


def record_count(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(records)) or 0)


def calendar_status(conn: Connection, names: list[str]) -> list[dict[str, Any]]:
    """Per configured [[calendar]]: account state, and per calendar its last sync and errors."""
    return status_read.calendar_status(status_read.Reader.of(conn), names)
