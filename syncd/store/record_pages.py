"""Records a page at a time, newest first, for the HTTP API: the filters of ``records list``
and more (several kinds, until, a rep's records) with a keyset position, so that a page
starts right after the last one given however many records were captured meanwhile."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, or_, select, tuple_

from syncd.schema.tables import meeting_sources, participants, record_customers, records, sources
from syncd.store.insight import Owned
from syncd.store.queries import _COLUMNS, _assemble
from syncd.store.sql import chunks


def of_rep(owner: Owned) -> ColumnElement[bool]:
    """A rep's records: they logged it, took part in it, or it came from their mailbox or
    calendar (a Bcc copy names nobody but reached their mailbox)."""
    parts: list[ColumnElement[bool]] = [
        records.c.owner == owner.address,
        records.c.id.in_(
            select(participants.c.record_id).where(participants.c.address == owner.address)
        ),
    ]
    if owner.mailboxes:
        parts.append(
            records.c.id.in_(
                select(sources.c.record_id).where(sources.c.mailbox.in_(sorted(owner.mailboxes)))
            )
        )
    if owner.calendars:
        parts.append(
            records.c.id.in_(
                select(meeting_sources.c.record_id).where(
                    meeting_sources.c.calendar.in_(sorted(owner.calendars))
                )
            )
        )
    return or_(*parts)


def page(
    conn: Connection,
    *,
    customer_id: int | None = None,
    contact_address: str | None = None,
    owners: Sequence[Owned] = (),
    kinds: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    ids: Sequence[int] | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Up to ``limit`` records newest first (then by id), older than ``after`` (the
    (occurred_at, id) of the last one given).  Each of ``owners`` must see the record (the
    ``owner`` filter and a rep token's own restriction)."""
    query = select(*_COLUMNS).order_by(records.c.occurred_at.desc(), records.c.id.desc())
    if customer_id is not None:
        query = query.where(
            records.c.id.in_(
                select(record_customers.c.record_id).where(
                    record_customers.c.customer_id == customer_id
                )
            )
        )
    if contact_address is not None:
        query = query.where(
            records.c.id.in_(
                select(participants.c.record_id).where(participants.c.address == contact_address)
            )
        )
    for owner in owners:
        query = query.where(of_rep(owner))
    if kinds:
        query = query.where(records.c.kind.in_(sorted(set(kinds))))
    if since is not None:
        query = query.where(records.c.occurred_at >= since)
    if until is not None:
        query = query.where(records.c.occurred_at < until)
    if ids is not None:
        query = query.where(records.c.id.in_(list(ids)))
    if after is not None:
        query = query.where(tuple_(records.c.occurred_at, records.c.id) < tuple_(*after))
    return _assemble(conn, conn.execute(query.limit(limit)).all())


def occurred(
    conn: Connection, record_ids: Sequence[int], owners: Sequence[Owned] = ()
) -> dict[int, datetime]:
    """When each of these records happened, for those every one of ``owners`` sees (a
    search's hits, narrowed to a rep token's records)."""
    out: dict[int, datetime] = {}
    for part in chunks(sorted(set(record_ids))):
        query = select(records.c.id, records.c.occurred_at).where(records.c.id.in_(part))
        for owner in owners:
            query = query.where(of_rep(owner))
        out.update((int(rid), when) for rid, when in conn.execute(query))
    return out


def visible(conn: Connection, record_id: int, owner: Owned) -> bool:
    """Whether ``owner`` sees this record."""
    query = select(records.c.id).where(records.c.id == record_id, of_rep(owner))
    return conn.execute(query).first() is not None
