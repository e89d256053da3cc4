"""The outbox: events written in the caller's transaction, read in id order.

Writers call :func:`emit` (or :func:`emit_many` for a batch) on the connection that makes
the change, so the change and its event commit or roll back together.  Readers (the feed,
the webhook deliverer) page by ``id``.  On PostgreSQL a sequence hands out ids before the
transactions that took them commit, in any order, so a reader could see id 11 before id 10
commits and page past it for ever.  Writers therefore take one transaction-scoped advisory
lock before their first event and keep it until they commit: ids become visible in order.
Emit last in a transaction, so the lock is held only for the commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, text

from syncd.domain.bounds import clean_text
from syncd.domain.payloads import iso
from syncd.schema.tables import events
from syncd.store.sql import insert_many

RECORD_CREATED = "record.created"
RECORD_UPDATED = "record.updated"
RECORD_DELETED = "record.deleted"
TASK_CREATED = "task.created"
TASK_UPDATED = "task.updated"
CONTACT_FORGOTTEN = "contact.forgotten"
TYPES = (
    RECORD_CREATED,
    RECORD_UPDATED,
    RECORD_DELETED,
    TASK_CREATED,
    TASK_UPDATED,
    CONTACT_FORGOTTEN,
)

# Any constant will do as long as nothing else in the database uses it: "syncdevt" in ASCII.
_OUTBOX_LOCK = 0x73796E6364657674


@dataclass(frozen=True)
class Event:
    type: str
    subject: str  # "record:<id>" | "task:<id>" | "contact:<digest>"
    data: dict[str, Any]
    occurred_at: datetime | None = None  # the record's own time, for a webhook's `since`


@dataclass(frozen=True)
class StoredEvent:
    id: int
    type: str
    subject: str
    occurred_at: datetime | None
    created_at: datetime
    data: dict[str, Any]


def emit(conn: Connection, event: Event) -> None:
    emit_many(conn, [event])


def emit_many(conn: Connection, batch: Iterable[Event]) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "type": event.type,
            "subject": event.subject,
            "occurred_at": event.occurred_at,
            "created_at": now,
            "data": dumps(event.data),
        }
        for event in batch
    ]
    if not rows:
        return
    lock(conn)
    insert_many(conn, events, rows)


def dumps(data: dict[str, Any]) -> str:
    """How ``data`` is stored: compact JSON, text as is (not \\u-escaped).  orjson: the
    standard library's encoder alone cost a 20,000-message backfill 3 % of its speed.

    Valid UTF-8 by construction: a lone surrogate the bounds missed becomes U+FFFD here.
    Stored escaped (as ``json.dumps`` once did), it made an event no reader could decode
    and no sender could encode: `events list` crashed and its endpoint stalled."""
    try:
        return orjson.dumps(data, default=str).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps(_clean(data), default=str).decode()


def _clean(value: Any) -> Any:
    """``value`` with every string (keys too) made storable: lone surrogates as U+FFFD."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def load_data(text: str) -> dict[str, Any]:
    """A stored event's data; ValueError when it is not a JSON object.  Text stored before
    ``dumps`` cleaned it may hold an escaped lone surrogate, which orjson refuses: read
    with the standard library then, and cleaned, so that it can be printed and sent."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = _clean(json.loads(text))  # ValueError if not JSON at all
    if not isinstance(data, dict):
        raise ValueError("the stored event data is not a JSON object")
    return data


def unreadable(text: str) -> dict[str, Any]:
    """What readers show for stored data that is not JSON (hand-edited, a bug): they go on."""
    return {"unreadable": True, "length": len(text)}


def lock(conn: Connection) -> None:
    """Take the outbox's writer lock until this transaction ends (PostgreSQL; SQLite has
    one writer at a time, so its ids commit in order by themselves)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _OUTBOX_LOCK})


def read(
    conn: Connection,
    *,
    after: int = 0,
    types: Sequence[str] = (),
    limit: int = 1000,
) -> list[StoredEvent]:
    """Committed events with ``id > after``, oldest first."""
    query = select(events).where(events.c.id > after).order_by(events.c.id).limit(limit)
    if types:
        query = query.where(events.c.type.in_(list(types)))
    return [
        StoredEvent(
            id=row.id,
            type=row.type,
            subject=row.subject,
            occurred_at=row.occurred_at,
            created_at=row.created_at,
            data=_readable(row.data),
        )
        for row in conn.execute(query)
    ]


def _readable(text: str) -> dict[str, Any]:
    try:
        return load_data(text)
    except ValueError:
        return unreadable(text)


def envelope(event: StoredEvent) -> dict[str, Any]:
    """The event as consumers get it, in the feed (``syncd events list --json``) and as a
    webhook's POST body: ``{"id", "type", "created_at", "data"}``; the id is a string (it is
    the Standard Webhooks ``webhook-id``), the time ISO 8601 UTC to the second."""
    return {
        "id": str(event.id),
        "type": event.type,
        "created_at": iso(event.created_at),
        "data": event.data,
    }


def last_id(conn: Connection) -> int:
    """The newest committed event's id (0 when there is none): where a follower starts."""
    return int(conn.scalar(select(func.max(events.c.id))) or 0)
