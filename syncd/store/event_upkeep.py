"""The outbox over time: meetings announced as held when they end, and old events pruned.

``held`` is derived from the clock (a scheduled meeting whose end has passed), so no
write marks it: a periodic sweep finds the meetings that ended since the last sweep (the
``settings`` row below; ``records.ends_at`` is indexed) and emits ``record.updated`` for
each one whose latest event still showed it scheduled.  A meeting captured after it ended
was announced held already; one no event ever announced (captured before the outbox
existed) is none of the consumers' business.

Retention: the feed keeps every event unless ``[events] keep`` is set; ``contact.forgotten``
(the one event that names a forgotten address) is deleted by the webhook deliverer once
every endpoint has it (``drop_delivered_forgotten``) and, at the latest, after ``[events]
keep_forgotten`` (the feed's pull consumers' window; the bound for an endpoint that failed it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, or_, select

from syncd.schema.tables import (
    events,
    records,
    settings,
    suppressions,
    webhook_deliveries,
    webhook_endpoints,
)
from syncd.store import events as outbox_events
from syncd.store import outbox
from syncd.store.events import CONTACT_FORGOTTEN, RECORD_UPDATED
from syncd.store.sql import chunks, upsert

HELD_MARK = "events_held_swept_at"  # settings row: meetings that ended up to then are announced
# A transaction that rendered a meeting as scheduled just before it ended may commit a
# moment later: the sweep looks only at meetings that ended longer ago than this.
SETTLE = timedelta(minutes=1)
PRUNE_BATCH = 5000


def announce_held(conn: Connection, now: datetime) -> int:
    """``record.updated`` for every announced meeting that ended since the last sweep; the
    number of events emitted.  Several daemons may sweep at once: the outbox lock makes
    them take turns, and the second finds the mark moved and the events written."""
    outbox_events.lock(conn)
    upto = now - SETTLE
    mark = conn.scalar(select(settings.c.value).where(settings.c.name == HELD_MARK))
    if mark is not None:
        since: datetime | None = datetime.fromisoformat(mark)
    else:  # the first sweep: nothing ended before the first event was announced scheduled
        since = conn.scalar(select(events.c.created_at).order_by(events.c.id).limit(1))
    ended: list[int] = []
    if since is not None and since < upto:
        ended = list(
            conn.scalars(
                select(records.c.id).where(
                    records.c.ends_at > since,
                    records.c.ends_at <= upto,
                    records.c.kind == "meeting",
                    or_(records.c.status == "scheduled", records.c.status.is_(None)),
                )
            )
        )
    if since is None or since < upto:
        upsert(
            conn, settings, [{"name": HELD_MARK, "value": upto.isoformat()}], ["name"], ["value"]
        )
    held = [rid for rid in ended if _last_said_scheduled(conn, rid)]
    outbox.emit_records(conn, RECORD_UPDATED, held, now)
    return len(held)


def _last_said_scheduled(conn: Connection, record_id: int) -> bool:
    # ix_events_subject_id (subject, id): the newest event about the record, one index probe.
    data = conn.scalar(
        select(events.c.data)
        .where(events.c.subject == f"record:{record_id}")
        .order_by(events.c.id.desc())
        .limit(1)
    )
    return data is not None and json.loads(data).get("status") == "scheduled"


def prune_old(
    conn: Connection, keep: timedelta, now: datetime, endpoints: Sequence[str] = ()
) -> int:
    """Delete up to ``PRUNE_BATCH`` of the oldest events created before ``now - keep``;
    returns how many (call again while it returns ``PRUNE_BATCH``).  Walks the primary
    key from the oldest id, so no index on the time is needed.  An event one of the
    webhook ``endpoints`` has not taken yet, or still has pending, is kept: the deliverer
    reads what it sends from the outbox, and took an event gone from it for delivered.
    The deliveries of the events pruned (failed ones: pending ones keep their event) are
    deleted with them: they would name events nobody can replay, for ever."""
    cutoff = now - keep
    oldest = conn.execute(
        select(events.c.id, events.c.created_at).order_by(events.c.id).limit(PRUNE_BATCH)
    ).all()
    doomed = []
    for event_id, created_at in oldest:
        if created_at >= cutoff:
            break
        doomed.append(event_id)
    if endpoints and doomed:
        doomed = _undelivered_kept(conn, doomed, endpoints)
    names = list(conn.scalars(select(webhook_deliveries.c.endpoint).distinct()))
    for part in chunks(doomed):
        conn.execute(delete(events).where(events.c.id.in_(part)))
        if names:  # their failed deliveries (and any of an endpoint since removed) go too
            conn.execute(
                delete(webhook_deliveries).where(
                    webhook_deliveries.c.endpoint.in_(names),
                    webhook_deliveries.c.event_id.in_(part),
                )
            )
    if doomed and names:
        # Deliveries left behind by versions that pruned events alone: older than the
        # oldest event kept, they can only be orphans (a range of the primary key each).
        oldest_kept = conn.scalar(select(func.min(events.c.id)))
        below = oldest_kept if oldest_kept is not None else max(doomed) + 1
        for name in names:
            conn.execute(
                delete(webhook_deliveries).where(
                    webhook_deliveries.c.endpoint == name, webhook_deliveries.c.event_id < below
                )
            )
    return len(doomed)


def _undelivered_kept(conn: Connection, ids: list[int], endpoints: Sequence[str]) -> list[int]:
    """``ids`` without those an endpoint has still to deliver (untaken or pending)."""
    cursors = dict(
        conn.execute(
            select(webhook_endpoints.c.name, webhook_endpoints.c.last_event_id).where(
                webhook_endpoints.c.name.in_(list(endpoints))
            )
        ).all()
    )
    taken = min(int(cursors.get(name) or 0) for name in endpoints)  # no row yet: takes all
    ids = [i for i in ids if i <= taken]
    pending: set[int] = set()
    for part in chunks(ids):
        pending.update(
            conn.scalars(
                select(webhook_deliveries.c.event_id).where(
                    webhook_deliveries.c.endpoint.in_(list(endpoints)),
                    webhook_deliveries.c.state == "pending",
                    webhook_deliveries.c.event_id.in_(part),
                )
            )
        )
    return [i for i in ids if i not in pending]


def prune_forgotten(conn: Connection, keep: timedelta, now: datetime) -> int:
    """Delete the ``contact.forgotten`` events older than ``keep``; returns how many.  Found
    through the (few) suppressions: each forget's event is about ``contact:<digest>``."""
    cutoff = now - keep
    subjects = [
        f"contact:{digest}"
        for digest in conn.scalars(
            select(suppressions.c.digest).where(suppressions.c.created_at < cutoff)
        )
    ]
    doomed: list[int] = []
    for part in chunks(subjects):
        doomed += conn.scalars(
            select(events.c.id).where(
                events.c.subject.in_(part),
                events.c.type == CONTACT_FORGOTTEN,
                events.c.created_at < cutoff,
            )
        )
    for ids in chunks(doomed):
        conn.execute(delete(events).where(events.c.id.in_(ids)))
        # A failed or pending delivery of it would only ever send "erased": it goes too.
        conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.event_id.in_(ids)))
    return len(doomed)


def forgotten_event_ids(conn: Connection) -> list[int]:
    """The ``contact.forgotten`` events still stored, found through the (few) suppressions."""
    subjects = [f"contact:{digest}" for digest in conn.scalars(select(suppressions.c.digest))]
    found: list[int] = []
    for part in chunks(subjects):
        found += conn.scalars(
            select(events.c.id).where(
                events.c.subject.in_(part), events.c.type == CONTACT_FORGOTTEN
            )
        )
    return found


def drop_delivered_forgotten(conn: Connection, delivered_ids: Iterable[int]) -> int:
    """For the webhook deliverer: delete the ``contact.forgotten`` events among these ids,
    once every configured endpoint has them; returns how many.  Other types are kept.  On
    SQLite, call ``store.database.reclaim_freed_pages`` on a fresh connection after the
    commit, so that the address leaves the database file too (as ``events_upkeep`` does)."""
    dropped = 0
    for part in chunks(sorted(set(delivered_ids))):
        dropped += conn.execute(
            delete(events).where(events.c.id.in_(part), events.c.type == CONTACT_FORGOTTEN)
        ).rowcount
    return dropped


def count(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(events)) or 0)


def next_upkeep(
    conn: Connection, now: datetime, keep_forgotten: timedelta, keep: timedelta | None
) -> datetime | None:
    """The earliest time after ``now`` at which the upkeep above, the database unchanged,
    would do something: a scheduled meeting ends (``announce_held``), a ``contact.forgotten``
    event reaches ``keep_forgotten`` (``prune_forgotten``: its suppression's age counts too),
    the oldest event reaches ``keep`` (``prune_old``).  None: never."""
    found: list[datetime] = []
    ends = conn.scalar(
        select(func.min(records.c.ends_at)).where(
            records.c.kind == "meeting",
            records.c.ends_at > now - SETTLE,
            or_(records.c.status == "scheduled", records.c.status.is_(None)),
        )
    )
    if ends is not None:
        found.append(_aware(ends) + SETTLE)
    suppressed = {f"contact:{d}": _aware(at) for d, at in conn.execute(
        select(suppressions.c.digest, suppressions.c.created_at))}  # fmt: skip
    if suppressed:
        for subject, created_at in conn.execute(
            select(events.c.subject, events.c.created_at).where(events.c.type == CONTACT_FORGOTTEN)
        ):
            if subject in suppressed:
                found.append(max(_aware(created_at), suppressed[subject]) + keep_forgotten)
    if keep is not None:
        oldest = conn.scalar(select(events.c.created_at).order_by(events.c.id).limit(1))
        if oldest is not None:
            found.append(_aware(oldest) + keep)
    return min(found) if found else None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
