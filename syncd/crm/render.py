"""The records and tasks a push sends, read from the store as they are now, in bulk.

The outbox's events only say that a subject changed; what goes to the CRM is the subject's
state when it is pushed, so a burst of changes costs one request and a record whose events
were redacted or pruned is still sent whole.  A subject that is gone (deleted, erased by
``forget``) renders as None: its CRM copy is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from syncd.domain.payloads import iso
from syncd.schema.tables import customers, records, tasks
from syncd.store.queries import records_by_id
from syncd.store.sql import chunks
from syncd.store.tasks import FORGOTTEN

_LOGGED = (
    records.c.id,
    records.c.owner,
    records.c.origin,
    records.c.external_id,
    records.c.duration_seconds,
    records.c.outcome,
    records.c.location,
    records.c.body,
)


def render_records(conn: Connection, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """``id -> record`` in the ``records list --json`` shape plus the logged records' fields
    (owner, body, duration_seconds, outcome, location, origin, external_id)."""
    wanted = sorted(set(ids))
    shaped = {row["id"]: dict(row) for row in records_by_id(conn, wanted)}
    for part in chunks(list(shaped)):
        for logged in conn.execute(select(*_LOGGED).where(records.c.id.in_(list(part)))):
            shaped[logged.id].update(logged._mapping)
    for record in shaped.values():
        record["occurred_at"] = iso(record["occurred_at"])
    return shaped


def render_tasks(conn: Connection, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """``id -> task`` with its customer's id and name, type and priority; tasks kept only so
    that a forgotten person's VTODO can be deleted count as gone."""
    out: dict[int, dict[str, Any]] = {}
    for part in chunks(sorted(set(ids))):
        query = (
            select(
                tasks.c.id, tasks.c.title, tasks.c.owner, tasks.c.customer_id, tasks.c.due_at,
                tasks.c.status, tasks.c.type, tasks.c.priority, tasks.c.record_id,
                tasks.c.closed_by, customers.c.name.label("customer"),
            )
            .select_from(tasks.outerjoin(customers, tasks.c.customer_id == customers.c.id))
            .where(tasks.c.id.in_(list(part)))
        )  # fmt: skip
        for row in conn.execute(query).mappings():
            if row["closed_by"] == FORGOTTEN:
                continue
            out[row["id"]] = dict(row)
    return out
