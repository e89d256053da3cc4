"""Writing meeting occurrences from one calendar: records, participants, links, sources, token.

Everything learnt from one sync of one calendar commits in one transaction with the
new sync token and ETags, so a crash repeats the sync and replaying it changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, select
from sqlalchemy.exc import StatementError

from syncd.domain.bounds import bound_reason
from syncd.domain.capture import Participant
from syncd.domain.matching import Match
from syncd.schema.tables import (
    calendar_objects,
    calendar_quarantine,
    calendar_states,
    meeting_sources,
    participants,
    record_customers,
    record_unlinks,
    records,
)
from syncd.store.capture import queue_sightings, record_ids, refused_values, write_people
from syncd.store.sql import chunks, insert_ignore, upsert


@dataclass(slots=True)
class MeetingItem:
    key: str
    uid: str
    recurrence_id: str
    summary: str
    starts_at: datetime
    ends_at: datetime
    status: str
    sequence: int
    organizer: str | None
    direction: str
    fingerprint: str
    participants: list[tuple[Participant, Match]]


@dataclass(slots=True)
class CalendarBatch:
    calendar: str
    url: str
    token: str | None
    window_start: datetime
    window_end: datetime
    objects: dict[str, tuple[str, list[MeetingItem]]] = field(
        default_factory=dict
    )  # href -> etag, items
    broken: dict[str, tuple[str, str]] = field(default_factory=dict)  # href -> etag, reason
    # Objects stored with some of their content cut by the limits: href -> reason.  Listed
    # with the quarantine (so `syncd status` shows them) though their meetings are kept.
    capped: dict[str, str] = field(default_factory=dict)
    next_starts: dict[str, datetime | None] = field(default_factory=dict)  # href -> after window
    unread: dict[str, str] = field(default_factory=dict)  # href -> etag: history, not downloaded
    deleted: list[str] = field(default_factory=list)
    plus_addressing: bool = True


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


# Statements built once: an IN list given as an expanding parameter costs one compile,
# where a literal list is coerced element by element on every call.
_UNLINKS_OF = select(record_unlinks.c.record_id, record_unlinks.c.customer_id).where(
    record_unlinks.c.record_id.in_(bindparam("ids", expanding=True))
)
_SOURCES_BY_HREF = (
    select(meeting_sources.c.href, records.c.id, records.c.key)
    .join(records, records.c.id == meeting_sources.c.record_id)
    .where(
        meeting_sources.c.calendar == bindparam("calendar"),
        meeting_sources.c.url == bindparam("url"),
        meeting_sources.c.href.in_(bindparam("hrefs", expanding=True)),
    )
)
_ORGANIZERS_BY_KEY = select(records.c.key, records.c.organizer).where(
    records.c.key.in_(bindparam("keys", expanding=True))
)
_RECORDS_BY_KEY = select(
    records.c.id, records.c.key, records.c.fingerprint, records.c.sequence
).where(records.c.key.in_(bindparam("keys", expanding=True)))
_UNQUARANTINE = delete(calendar_quarantine).where(
    calendar_quarantine.c.calendar == bindparam("calendar"),
    calendar_quarantine.c.url == bindparam("url"),
    calendar_quarantine.c.href.in_(bindparam("hrefs", expanding=True)),
)


def _unlinked(conn: Connection, ids: list[int]) -> frozenset[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for part in chunks(ids):
        out.update((rid, cid) for rid, cid in conn.execute(_UNLINKS_OF, {"ids": list(part)}))
    return frozenset(out)


def _sources_of(conn: Connection, calendar: str, url: str, href: str) -> dict[int, str]:
    """{record id: record key} of the records a calendar resource produced so far."""
    rows = conn.execute(
        select(records.c.id, records.c.key)
        .join(meeting_sources, meeting_sources.c.record_id == records.c.id)
        .where(
            meeting_sources.c.calendar == calendar,
            meeting_sources.c.url == url,
            meeting_sources.c.href == href,
        )
    )
    return {rid: key for rid, key in rows}


def _sources_by_href(
    conn: Connection, calendar: str, url: str, hrefs: list[str]
) -> dict[str, dict[int, str]]:
    """{href: {record id: record key}} for many resources in a few queries."""
    out: dict[str, dict[int, str]] = {}
    for part in chunks(hrefs):
        rows = conn.execute(
            _SOURCES_BY_HREF, {"calendar": calendar, "url": url, "hrefs": list(part)}
        )
        for href, rid, key in rows:
            out.setdefault(href, {})[rid] = key
    return out


def _cancel_orphans(conn: Connection, record_ids_: list[int], now: datetime) -> int:
    """Records with no calendar resource left are cancelled, never deleted."""
    cancelled = 0
    for rid in record_ids_:
        left = conn.scalar(
            select(func.count())
            .select_from(meeting_sources)
            .where(meeting_sources.c.record_id == rid)
        )
        if not left:
            cancelled += conn.execute(
                records.update()
                .where(records.c.id == rid, records.c.status != "cancelled")
                .values(status="cancelled")
            ).rowcount
    return cancelled


def organizer_key(key: str, organizer: str | None) -> str:
    """The record key of a copy of a meeting from an organizer other than the one who owns
    ``key``: its own record, stable across syncs, within records.key's 1,100 characters."""
    digest = hashlib.sha256((organizer or "").encode()).hexdigest()[:16]
    return f"{key}|org:{digest}"


def _claim_keys(conn: Connection, items: list[MeetingItem]) -> None:
    """The first organizer seen for a meeting owns its record.  A copy naming a different
    organizer (a reused or spoofed UID) becomes a record of its own and never rewrites the
    owner's summary, time or participants.  A record without an organizer is claimed by
    the first copy that names one."""
    owner: dict[str, str | None] = {}
    for part in chunks(sorted({i.key for i in items})):
        owner.update(
            (key, organizer)
            for key, organizer in conn.execute(_ORGANIZERS_BY_KEY, {"keys": list(part)})
        )
    for item in items:
        current = owner.get(item.key)
        if current is None:  # unknown, or owned by nobody yet
            owner[item.key] = item.organizer
        elif current != item.organizer:
            item.key = organizer_key(item.key, item.organizer)


def save_isolating(
    engine: Engine, batch: CalendarBatch, *, fence: Callable[[Connection], None] | None = None
) -> dict[str, int]:
    """Save a calendar's batch in one transaction; when the database refuses its values,
    find the objects it refuses (halving the batch in rolled-back trials), quarantine
    those, and commit the rest.  A failure that is not about the values (a lost connection,
    a lock, a lost lease) or that no single object causes is raised as it was.

    ``fence`` runs first in every committing transaction (the lease check)."""
    try:
        with engine.begin() as conn:
            if fence is not None:
                fence(conn)
            return save_calendar_batch(conn, batch)
    except StatementError as err:
        if not batch.objects or refused_values(err) is None:
            raise
        failure = err
    bad = _refused(engine, batch, sorted(batch.objects))
    if not bad:
        raise failure
    for href, reason in bad.items():
        etag, _ = batch.objects.pop(href)
        batch.broken[href] = (etag, reason)
        batch.capped.pop(href, None)
    with engine.begin() as conn:
        if fence is not None:
            fence(conn)
        return save_calendar_batch(conn, batch)


def _refused(engine: Engine, batch: CalendarBatch, hrefs: list[str]) -> dict[str, str]:
    reason = _trial(engine, batch, hrefs)
    if reason is None:
        return {}
    if len(hrefs) == 1:
        return {hrefs[0]: reason}
    half = len(hrefs) // 2
    return {**_refused(engine, batch, hrefs[:half]), **_refused(engine, batch, hrefs[half:])}


def _trial(engine: Engine, batch: CalendarBatch, hrefs: list[str]) -> str | None:
    """Why the database refuses these objects' values alone (rolled back either way), or
    None; any other failure propagates."""
    trial = replace(
        batch,
        objects={h: batch.objects[h] for h in hrefs},
        broken={},
        capped={},
        deleted=[],
        unread={},
    )
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            save_calendar_batch(conn, trial)
        except StatementError as err:
            reason = refused_values(err)
            if reason is None:
                raise
            return reason
        finally:
            transaction.rollback()
    return None


def save_calendar_batch(conn: Connection, batch: CalendarBatch) -> dict[str, int]:
    now = datetime.now(UTC)
    counts = {"created": 0, "updated": 0, "cancelled": 0, "quarantined": len(batch.broken)}
    items = [item for _, found in batch.objects.values() for item in found]
    _claim_keys(conn, items)
    existing = {
        row.key: row
        for part in chunks([i.key for i in items])
        for row in conn.execute(_RECORDS_BY_KEY, {"keys": list(part)})
    }
    fresh = {i.key: i for i in items if i.key not in existing}
    insert_ignore(conn, records, [_record_values(i, now) for i in fresh.values()], ["key"])
    ids = record_ids(conn, [i.key for i in items])
    counts["created"] = len(fresh)

    changed: dict[str, MeetingItem] = {}
    for item in items:
        row = existing.get(item.key)
        if row is not None and (
            row.fingerprint != item.fingerprint or (row.sequence or 0) < item.sequence
        ):
            changed[item.key] = item
    for item in changed.values():
        values = _record_values(item, now)
        for column in ("key", "kind", "created_at"):
            values.pop(column)
        conn.execute(records.update().where(records.c.id == ids[item.key]).values(**values))
    counts["updated"] = len(changed)
    # Who takes part may have changed: rewrite participants and rule-made links of changed
    # records; manual links and unlinks stay as people left them.
    redo = [ids[k] for k in changed]
    for part in chunks(redo):
        conn.execute(delete(participants).where(participants.c.record_id.in_(part)))
        conn.execute(
            delete(record_customers).where(
                record_customers.c.record_id.in_(part), record_customers.c.link != "manual"
            )
        )
    rewrite = {**{k: fresh[k] for k in fresh}, **changed}
    write_people(
        conn,
        ((ids[k], item.participants) for k, item in rewrite.items()),
        unlinked=_unlinked(conn, [ids[k] for k in rewrite]),
    )
    # The same meeting in another rep's calendar: make sure this calendar's owner takes part.
    write_people(
        conn,
        (
            (ids[i.key], [(p, m) for p, m in i.participants if not p.external])
            for i in items
            if i.key not in rewrite
        ),
    )

    previous = _sources_by_href(conn, batch.calendar, batch.url, list(batch.objects))
    insert_ignore(
        conn,
        meeting_sources,
        [
            {"record_id": ids[i.key], "calendar": batch.calendar, "url": batch.url, "href": href}
            for href, (_, found) in batch.objects.items()
            for i in found
        ],
        ["record_id", "calendar", "url", "href"],
    )
    for href, (_, found) in batch.objects.items():
        keys_now = {i.key for i in found}
        for rid, key in previous.get(href, {}).items():
            if key in keys_now:
                continue
            # An occurrence that vanished from its resource inside the window was cancelled
            # (an added EXDATE, a shortened rule); outside the window it merely left our view.
            starts = conn.scalar(select(records.c.starts_at).where(records.c.id == rid))
            conn.execute(
                delete(meeting_sources).where(
                    meeting_sources.c.record_id == rid,
                    meeting_sources.c.calendar == batch.calendar,
                    meeting_sources.c.url == batch.url,
                    meeting_sources.c.href == href,
                )
            )
            if starts is not None and batch.window_start <= _aware(starts) <= batch.window_end:
                counts["cancelled"] += _cancel_orphans(conn, [rid], now)
    _remember(conn, batch, {href: etag for href, (etag, _) in batch.objects.items()})
    _remember(conn, batch, batch.unread)
    for hrefs in chunks(list(batch.objects)):
        conn.execute(
            _UNQUARANTINE, {"calendar": batch.calendar, "url": batch.url, "hrefs": list(hrefs)}
        )

    for href in batch.deleted:
        before = _sources_of(conn, batch.calendar, batch.url, href)
        conn.execute(
            delete(meeting_sources).where(
                meeting_sources.c.calendar == batch.calendar,
                meeting_sources.c.url == batch.url,
                meeting_sources.c.href == href,
            )
        )
        conn.execute(
            delete(calendar_objects).where(
                calendar_objects.c.calendar == batch.calendar,
                calendar_objects.c.url == batch.url,
                calendar_objects.c.href == href,
            )
        )
        counts["cancelled"] += _cancel_orphans(conn, list(before), now)

    _remember(conn, batch, {href: etag for href, (etag, _) in batch.broken.items()})
    listed = {
        **{href: (batch.objects[href][0], reason) for href, reason in batch.capped.items()},
        **batch.broken,
    }
    for href, (etag, reason) in listed.items():  # not fetched again until it changes
        upsert(
            conn,
            calendar_quarantine,
            [
                {
                    "calendar": batch.calendar,
                    "url": batch.url,
                    "href": href,
                    "etag": etag,
                    "reason": bound_reason(reason),
                    "created_at": now,
                }
            ],
            ["calendar", "url", "href"],
            ["etag", "reason", "created_at"],
        )

    queue_sightings(
        conn,
        batch.calendar,
        ((i.key, i.starts_at, i.participants) for i in rewrite.values()),
        plus_addressing=batch.plus_addressing,
    )
    t = calendar_states.c
    upsert(
        conn,
        calendar_states,
        [
            {
                "calendar": batch.calendar,
                "url": batch.url,
                "sync_token": batch.token,
                "last_success_at": now,
                "last_error": None,
                "last_error_at": None,
                "meetings_captured": counts["created"],
            }
        ],
        ["calendar", "url"],
        lambda ex: {
            "sync_token": ex.sync_token,
            "last_success_at": ex.last_success_at,
            "last_error": None,
            "last_error_at": None,
            "meetings_captured": t.meetings_captured + ex.meetings_captured,
        },
    )
    return counts


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _remember(conn: Connection, batch: CalendarBatch, etags: dict[str, str]) -> None:
    upsert(
        conn,
        calendar_objects,
        [
            {
                "calendar": batch.calendar,
                "url": batch.url,
                "href": h,
                "etag": e,
                "next_start_at": batch.next_starts.get(h),
            }
            for h, e in etags.items()
        ],
        ["calendar", "url", "href"],
        ["etag", "next_start_at"],
    )


def due_again(conn: Connection, calendar: str, url: str, window_end: datetime) -> dict[str, str]:
    """{href: ETag} of unchanged objects whose next occurrence the window now reaches."""
    rows = conn.execute(
        select(calendar_objects.c.href, calendar_objects.c.etag).where(
            calendar_objects.c.calendar == calendar,
            calendar_objects.c.url == url,
            calendar_objects.c.next_start_at <= window_end,
        )
    )
    return {href: etag for href, etag in rows}


def known_etags(conn: Connection, calendar: str, url: str) -> dict[str, str]:
    rows = conn.execute(
        select(calendar_objects.c.href, calendar_objects.c.etag).where(
            calendar_objects.c.calendar == calendar, calendar_objects.c.url == url
        )
    )
    return {href: etag for href, etag in rows}


def stored_calendars(conn: Connection, calendar: str) -> list[dict[str, Any]]:
    return [
        dict(row)
        for row in conn.execute(
            select(calendar_states).where(
                calendar_states.c.calendar == calendar, calendar_states.c.url != ""
            )
        ).mappings()
    ]


def remember_calendars(conn: Connection, calendar: str, found: Iterable[tuple[str, str]]) -> None:
    now = datetime.now(UTC)
    upsert(
        conn,
        calendar_states,
        [
            {
                "calendar": calendar,
                "url": url,
                "display_name": name,
                "discovered_at": now,
                "meetings_captured": 0,
            }
            for url, name in found
        ],
        ["calendar", "url"],
        ["display_name", "discovered_at"],
    )


def calendar_failed(conn: Connection, calendar: str, url: str, error: str) -> None:
    now = datetime.now(UTC)
    upsert(
        conn,
        calendar_states,
        [
            {
                "calendar": calendar,
                "url": url,
                "display_name": "",
                "last_error": error,
                "last_error_at": now,
                "meetings_captured": 0,
            }
        ],
        ["calendar", "url"],
        ["last_error", "last_error_at"],
    )


def calendar_ok(conn: Connection, calendar: str) -> None:
    """The account-level row: login and discovery worked."""
    now = datetime.now(UTC)
    upsert(
        conn,
        calendar_states,
        [
            {
                "calendar": calendar,
                "url": "",
                "display_name": "",
                "last_success_at": now,
                "meetings_captured": 0,
            }
        ],
        ["calendar", "url"],
        lambda ex: {
            "last_success_at": ex.last_success_at,
            "last_error": None,
            "last_error_at": None,
        },
    )
