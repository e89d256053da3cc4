"""Meeting records of one calendar batch: what the store knows, and applying the change.

``load_known`` reads what ``domain/meeting_changes.plan_batch`` needs to decide; ``apply``
writes the plan (records, participants, links, resource sources, cancellations) inside
the batch's transaction.  No rule is decided here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, tuple_

from syncd.domain.items import MeetingItem
from syncd.domain.meeting_changes import BatchChange, Known, StoredMeeting, keys_to_load
from syncd.schema.tables import (
    meeting_sources,
    participants,
    record_customers,
    record_unlinks,
    records,
)
from syncd.store import search_index
from syncd.store.capture import created_ids, record_ids, write_people
from syncd.store.sql import chunks, insert_ignore

# Statements built once: an IN list given as an expanding parameter costs one compile,
# where a literal list is coerced element by element on every call.
_RECORD_COLUMNS = (
    records.c.id,
    records.c.key,
    records.c.organizer,
    records.c.fingerprint,
    records.c.sequence,
    records.c.starts_at,
    records.c.status,
)
_RECORDS_BY_KEY = select(*_RECORD_COLUMNS).where(
    records.c.key.in_(bindparam("keys", expanding=True))
)
_SOURCES_BY_HREF = (
    select(meeting_sources.c.href, *_RECORD_COLUMNS)
    .join(records, records.c.id == meeting_sources.c.record_id)
    .where(
        meeting_sources.c.calendar == bindparam("calendar"),
        meeting_sources.c.url == bindparam("url"),
        meeting_sources.c.href.in_(bindparam("hrefs", expanding=True)),
    )
)
_SOURCES_OF_RECORDS = select(
    meeting_sources.c.record_id,
    meeting_sources.c.calendar,
    meeting_sources.c.url,
    meeting_sources.c.href,
).where(meeting_sources.c.record_id.in_(bindparam("ids", expanding=True)))
_UNLINKS_OF = select(record_unlinks.c.record_id, record_unlinks.c.customer_id).where(
    record_unlinks.c.record_id.in_(bindparam("ids", expanding=True))
)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _stored(row: Any) -> StoredMeeting:
    return StoredMeeting(
        record_id=row.id,
        key=row.key,
        organizer=row.organizer,
        fingerprint=row.fingerprint,
        sequence=row.sequence or 0,
        starts_at=_aware(row.starts_at),
        status=row.status or "",
    )


def load_known(
    conn: Connection,
    calendar: str,
    url: str,
    objects: Mapping[str, list[MeetingItem]],
    deleted: Iterable[str],
) -> Known:
    """The records a batch may touch, the resources that produced them, and how many other
    resources still show each of them."""
    stored: dict[str, StoredMeeting] = {}
    keys = sorted(keys_to_load(i for found in objects.values() for i in found))
    for key_part in chunks(keys):
        for row in conn.execute(_RECORDS_BY_KEY, {"keys": list(key_part)}):
            stored[row.key] = _stored(row)
    touched = sorted({*objects, *deleted})
    sources: dict[str, set[str]] = {}
    for href_part in chunks(touched):
        sourced = conn.execute(
            _SOURCES_BY_HREF, {"calendar": calendar, "url": url, "hrefs": list(href_part)}
        )
        for source in sourced:
            sources.setdefault(source.href, set()).add(source.key)
            stored.setdefault(source.key, _stored(source))
    # Only records that may lose a resource matter for "is it shown anywhere else".
    by_id = {stored[k].record_id: k for keys_ in sources.values() for k in keys_}
    elsewhere: dict[str, int] = {}
    here = set(touched)
    for id_part in chunks(sorted(by_id)):
        for rid, cal, u, href in conn.execute(_SOURCES_OF_RECORDS, {"ids": list(id_part)}):
            if not (cal == calendar and u == url and href in here):
                elsewhere[by_id[rid]] = elsewhere.get(by_id[rid], 0) + 1
    return Known(
        records=stored,
        sources={href: frozenset(keys_) for href, keys_ in sources.items()},
        elsewhere=elsewhere,
    )


def _record_values(item: MeetingItem, now: datetime) -> dict[str, Any]:
    return {
        "key": item.key,
        "kind": "meeting",
        "direction": item.direction,
        "subject": item.summary,
        "snippet": None,
        "occurred_at": item.starts_at,
        "created_at": now,
        "status": item.status,
        "starts_at": item.starts_at,
        "ends_at": item.ends_at,
        "ical_uid": item.uid,
        "recurrence_id": item.recurrence_id,
        "organizer": item.organizer,
        "sequence": item.sequence,
        "fingerprint": item.fingerprint,
    }


def _unlinked(conn: Connection, ids: list[int]) -> frozenset[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for part in chunks(ids):
        out.update((rid, cid) for rid, cid in conn.execute(_UNLINKS_OF, {"ids": list(part)}))
    return frozenset(out)


def apply(
    conn: Connection,
    calendar: str,
    url: str,
    change: BatchChange,
    known: Known,
    now: datetime,
) -> tuple[list[int], list[int]]:
    """Write the plan: new records, rewritten ones, participants, resource links, and
    cancellations.  Records are never deleted.  Returns the ids of the records created and
    of those changed (moved, declined, cancelled...), for the caller's events."""
    insert_ignore(conn, records, [_record_values(i, now) for i in change.create.values()], ["key"])
    _, created = created_ids(conn, change.create, now)
    ids = record_ids(conn, [i.key for i in change.items])
    ids.update((k, r.record_id) for k, r in known.records.items() if k not in ids)
    for item in change.update.values():
        values = _record_values(item, now)
        for column in ("key", "kind", "created_at"):
            values.pop(column)
        conn.execute(records.update().where(records.c.id == ids[item.key]).values(**values))
    # Who takes part may have changed: rewrite participants and rule-made links of changed
    # records; manual links and unlinks stay as people left them.
    redo = [ids[k] for k in change.update]
    for part in chunks(redo):
        conn.execute(delete(participants).where(participants.c.record_id.in_(part)))
        conn.execute(
            delete(record_customers).where(
                record_customers.c.record_id.in_(part), record_customers.c.link != "manual"
            )
        )
    rewrite = {**change.create, **change.update}
    write_people(
        conn,
        ((ids[k], item.participants) for k, item in rewrite.items()),
        unlinked=_unlinked(conn, [ids[k] for k in rewrite]),
    )
    # The same meeting in another rep's calendar: make sure this calendar's owner takes part.
    write_people(
        conn,
        (
            (ids[k], [(p, m) for p, m in i.participants if not p.external])
            for k, i in change.unchanged.items()
        ),
    )
    insert_ignore(
        conn,
        meeting_sources,
        [
            {"record_id": ids[key], "calendar": calendar, "url": url, "href": href}
            for href, key in change.link
        ],
        ["record_id", "calendar", "url", "href"],
    )
    pairs = [(ids[key], href) for href, key in change.unlink]
    for pair_part in chunks(pairs):
        conn.execute(
            delete(meeting_sources).where(
                meeting_sources.c.calendar == calendar,
                meeting_sources.c.url == url,
                tuple_(meeting_sources.c.record_id, meeting_sources.c.href).in_(pair_part),
            )
        )
    cancelled = [ids[k] for k in change.cancel]
    for part in chunks(cancelled):
        conn.execute(
            records.update()
            .where(records.c.id.in_(part), records.c.status != "cancelled")
            .values(status="cancelled")
        )
    newly_cancelled = {
        ids[k]
        for k in change.cancel
        if k not in known.records or known.records[k].status != "cancelled"
    }
    # The same meeting now shown by another resource (another rep's calendar, say): its
    # sources, and perhaps its people, changed, so the CRM hears of it as well.
    shown_anew = {
        ids[key] for href, key in change.link if key not in known.sources.get(href, frozenset())
    }
    # Their summary, location or people may have changed: the index follows in this
    # transaction (an unchanged meeting may have gained this calendar's owner).
    search_index.reindex_records(conn, [ids[k] for k in (*rewrite, *change.unchanged)])
    changed = ({ids[k] for k in change.update} | newly_cancelled | shown_anew) - set(created)
    return created, sorted(changed)
