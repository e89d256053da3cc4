"""Writing one batch of a folder: records, participants, links, sources and the cursor.

Everything for a batch commits in one transaction together with the folder cursor,
so after a crash the batch is either wholly there or wholly fetched again, and
replaying it inserts nothing twice (unique keys + ON CONFLICT DO NOTHING).  Values
arrive bounded to the columns (``domain/bounds``); a batch the database refuses anyway
is cut into smaller batches (``FolderBatch.halves``) by the caller until the refused
message is alone and quarantined (``engine/mail_sync.save_or_split``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, case, func, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from syncd.domain.addresses import match_key
from syncd.domain.bounds import bound_name, bound_reason

# The types live in the domain; re-exported for the engine and tests that import them here.
from syncd.domain.items import CapturedMessage as CapturedMessage
from syncd.domain.items import email_key as email_key
from syncd.domain.matching import LinkKind, Match
from syncd.domain.search_text import index_terms
from syncd.domain.threads import thread_key
from syncd.schema.tables import (
    folder_cursors,
    participants,
    provenance,
    quarantine,
    record_customers,
    records,
    skipped_messages,
    unmatched_addresses,
    unmatched_sightings,
)
from syncd.store import events, outbox, search_index
from syncd.store.events import RECORD_UPDATED
from syncd.store.sql import chunks, insert_ignore, upsert
from syncd.store.state import QUARANTINE_KEY, counted, quarantine_row

if TYPE_CHECKING:
    # Only named in annotations: the store writes participants, it never parses a message.
    from syncd.domain.capture import Participant

    Sighting = tuple[str, datetime, list[tuple[Participant, Match]]]  # record key, when, people

_LINK_RANK: dict[LinkKind, int] = {"manual": 3, "contact": 2, "domain": 1}


@dataclass(slots=True)
class FolderBatch:
    """What one batch of UIDs writes, and the cursor it moves to (``last_uid``)."""

    mailbox: str
    folder: str
    uidvalidity: int
    last_uid: int
    highestmodseq: int | None
    captured: list[CapturedMessage] = field(default_factory=list)
    known: list[tuple[int, str]] = field(default_factory=list)  # (uid, record key) already stored
    skipped: int = 0
    # (uid, rule) of each skipped message, so that `syncd verify` can name why it is not a record.
    skipped_uids: list[tuple[int, str]] = field(default_factory=list)
    quarantined: list[tuple[int, str]] = field(default_factory=list)
    # Messages kept as no record ([capture] only_matched) whose unknown addresses are still queued.
    queued_only: list[CapturedMessage] = field(default_factory=list)
    plus_addressing: bool = True
    # A pass that re-attaches the folder's own messages after a UIDVALIDITY reset: the
    # records it finds are not new to the folder, whatever their sources say meanwhile.
    reidentifying: bool = False

    def uids(self) -> list[int]:
        """The UIDs this batch writes something for (skipped mail writes nothing)."""
        found = {m.uid for m in self.captured}
        found.update(m.uid for m in self.queued_only)
        found.update(uid for uid, _ in self.known)
        found.update(uid for uid, _ in self.quarantined)
        return sorted(found)

    def part(self, low: int, high: int, last_uid: int, skipped: int = 0) -> FolderBatch:
        """The writes of UIDs ``low``..``high``, moving the cursor to ``last_uid``."""
        return FolderBatch(
            mailbox=self.mailbox,
            folder=self.folder,
            uidvalidity=self.uidvalidity,
            last_uid=last_uid,
            highestmodseq=self.highestmodseq,
            captured=[m for m in self.captured if low <= m.uid <= high],
            known=[(u, k) for u, k in self.known if low <= u <= high],
            skipped=skipped,
            skipped_uids=[(u, r) for u, r in self.skipped_uids if low <= u <= high],
            quarantined=[(u, r) for u, r in self.quarantined if low <= u <= high],
            queued_only=[m for m in self.queued_only if low <= m.uid <= high],
            plus_addressing=self.plus_addressing,
            reidentifying=self.reidentifying,
        )

    def halves(self) -> tuple[FolderBatch, FolderBatch] | None:
        """The batch cut in two by UID, each half moving the cursor to its own end, in
        order; None when it writes for one UID only and cannot be cut."""
        uids = self.uids()
        if len(uids) < 2:
            return None
        mid = uids[len(uids) // 2 - 1]
        # From 0: skipped messages below the first written UID keep their skip rows.
        first = self.part(0, mid, last_uid=mid)
        second = self.part(mid + 1, self.last_uid, self.last_uid, skipped=self.skipped)
        return first, second

    def as_quarantined(self, uid: int, reason: str) -> FolderBatch:
        """This one-UID batch written as a quarantine entry instead."""
        held = self.part(uid, uid, self.last_uid, skipped=self.skipped)
        held.captured, held.known, held.queued_only = [], [], []
        held.quarantined = [(uid, reason)]
        # The cursor moves past this part's whole range: the skip rows of the skipped mail
        # in it (which write no UID of their own) go with it, or `verify` finds them missing.
        held.skipped_uids = [(u, r) for u, r in self.skipped_uids if u != uid]
        return held


# SQLSTATE classes that mean "these values", never "this connection": data exception,
# integrity constraint violation, program limit exceeded (an index entry too large).
_DATA_SQLSTATE = frozenset({"22", "23", "54"})


def refused_values(err: BaseException) -> str | None:
    """Why the database refused the values of a write, or None when ``err`` is anything else.

    A lost connection, a timeout, a lock or a bug is not about one message: quarantining
    would throw good mail away, so those return None and propagate.  The reason names the
    error class and the first line of its message, never the SQL or the values.
    """
    orig: BaseException = err
    if isinstance(err, StatementError) and err.orig is not None:
        orig = err.orig
    if isinstance(orig, UnicodeEncodeError):  # the driver cannot encode a value
        return bound_reason(f"store refused: UnicodeEncodeError: {orig.encoding} {orig.reason}")
    if not isinstance(err, DBAPIError) or err.connection_invalidated:
        return None
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and len(state) == 5:
        if state[:2] not in _DATA_SQLSTATE:
            return None
    elif not isinstance(err, (DataError, IntegrityError)):
        return None
    first_line = (str(orig).strip().splitlines() or [""])[0][:200]
    kind, detail = type(err).__name__, type(orig).__name__
    named = kind if kind == detail else f"{kind} ({detail})"  # IntegrityError (NotNullViolation)
    return bound_reason(f"store refused: {named}: {first_line}")


# Built once: an expanding IN parameter compiles once instead of coercing every element.
_IDS_BY_KEY = select(records.c.key, records.c.id).where(
    records.c.key.in_(bindparam("keys", expanding=True))
)
# Whether this transaction made the row, decided by the database (no time parsed per row).
_IDS_AND_BIRTH_BY_KEY = select(
    records.c.key, records.c.id, (records.c.created_at == bindparam("now")).label("mine")
).where(records.c.key.in_(bindparam("keys", expanding=True)))
_THREADS_BY_MESSAGE_ID = select(records.c.message_id, records.c.thread_key).where(
    records.c.message_id.in_(bindparam("ids", expanding=True))
)


def record_ids(conn: Connection, keys: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in chunks(sorted(set(keys))):
        rows = conn.execute(_IDS_BY_KEY, {"keys": list(part)})
        out.update((key, record_id) for key, record_id in rows)
    return out


def created_ids(
    conn: Connection, keys: Iterable[str], now: datetime
) -> tuple[dict[str, int], list[int]]:
    """{key: id} of the records with these keys, and the ids of those this transaction
    created (stamped ``now``): an insert that lost a race with another daemon's
    transaction (ON CONFLICT DO NOTHING) created nothing, and announces nothing."""
    ids: dict[str, int] = {}
    mine: list[int] = []
    for part in chunks(sorted(set(keys))):
        found = conn.execute(_IDS_AND_BIRTH_BY_KEY, {"keys": list(part), "now": now})
        for key, record_id, made_now in found:
            ids[key] = record_id
            if made_now:
                mine.append(record_id)
    return ids, mine


def _known_threads(conn: Connection, message_ids: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in chunks(sorted(message_ids)):
        rows = conn.execute(_THREADS_BY_MESSAGE_ID, {"ids": list(part)})
        out.update((mid, thread) for mid, thread in rows if thread)
    return out


def _new_records(
    conn: Connection, batch: FolderBatch, existing: dict[str, int], now: datetime
) -> tuple[list[CapturedMessage], list[int], list[dict[str, Any]]]:
    """Insert records not stored yet; return the messages whose records were not stored,
    the ids of the records this batch created, and the rows it inserted."""
    fresh: dict[str, CapturedMessage] = {}
    for msg in batch.captured:
        if msg.key not in existing and msg.key not in fresh:
            fresh[msg.key] = msg
    if not fresh:
        return [], [], []
    wanted: set[str] = set()
    for msg in fresh.values():
        wanted.update(msg.references)
        if msg.in_reply_to:
            wanted.add(msg.in_reply_to)
        wanted.add(msg.message_id)
    known = _known_threads(conn, wanted)
    rows: list[dict[str, Any]] = []
    for msg in sorted(fresh.values(), key=lambda m: m.occurred_at):
        thread = thread_key(msg.message_id, msg.in_reply_to, msg.references, known)
        known[msg.message_id] = thread  # later messages of this batch join the same thread
        rows.append(
            {
                "key": msg.key,
                "kind": "email",
                "direction": msg.direction,
                "subject": msg.subject,
                "snippet": msg.snippet,
                "body": msg.body,
                "occurred_at": msg.occurred_at,
                "message_id": msg.message_id,
                "thread_key": thread,
                "created_at": now,
            }
        )
    insert_ignore(conn, records, rows, ["key"])
    ids, created = created_ids(conn, fresh, now)
    existing.update(ids)
    return list(fresh.values()), created, rows


def write_people(
    conn: Connection,
    items: Iterable[tuple[int, list[tuple[Participant, Match]]]],
    *,
    unlinked: frozenset[tuple[int, int]] = frozenset(),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Participants of records and the customer links their matches imply (best kind wins),
    never a link a person removed (``unlinked``: (record, customer) pairs).  Returns the
    participant and link rows it wrote, in order (a row already stored is kept as it was)."""
    people: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for record_id, matched in items:
        best: dict[int, LinkKind] = {}
        for person, match in matched:
            if match.reason == "suppressed":
                continue  # a forgotten address is never written again
            people.append(_person_row(record_id, person, match))
            if match.customer_id is not None and match.link is not None:
                current = best.get(match.customer_id)
                if current is None or _LINK_RANK[match.link] > _LINK_RANK[current]:
                    best[match.customer_id] = match.link
        links.extend(
            {"record_id": record_id, "customer_id": cid, "link": link}
            for cid, link in best.items()
            if (record_id, cid) not in unlinked
        )
    insert_ignore(conn, participants, people, ["record_id", "address", "role"])
    insert_ignore(conn, record_customers, links, ["record_id", "customer_id"])
    return people, links


def _person_row(record_id: int, person: Participant, match: Match) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "address": person.address,
        "name": bound_name(person.name),
        "role": person.role,
        "external": int(person.external),
        "contact_id": match.contact_id,
    }


def index_entry(msg: CapturedMessage) -> tuple[str, bytes]:
    """The search index entry of the record ``msg`` creates: its terms and their SQLite
    packing, from the values ``save_batch`` writes for it (the record's row and its
    participant rows).  Worked out ahead by a backlog's parse worker, off the saving
    process's critical path; the save works it out itself for a message without one."""
    row = {"subject": msg.subject, "snippet": msg.snippet, "body": msg.body}
    people = [_person_row(0, p, m) for p, m in msg.participants if m.reason != "suppressed"]
    terms = index_terms(search_index.record_parts(row, people))
    return terms, search_index.pack(terms)


def queue_sightings(
    conn: Connection, source: str, items: Iterable[Sighting], *, plus_addressing: bool
) -> None:
    """Record where each unknown external address was seen, then refresh its queue entry.

    Sightings are keyed by (address, message or meeting, source), so counts stay exact
    however often a batch is replayed and whichever mailboxes or calendars hold the item.
    """
    sightings: dict[tuple[str, str], dict[str, Any]] = {}
    names: dict[str, str] = {}
    for record_key, occurred_at, people in items:
        for person, match in people:
            if not person.external or not match.queued:
                continue
            key = match_key(person.address, plus_addressing)
            sightings[(key, record_key)] = {
                "address": key,
                "message_key": record_key,
                "mailbox": source,
                "occurred_at": occurred_at,
            }
            if person.name:
                names[key] = bound_name(person.name)
    if not sightings:
        return
    insert_ignore(
        conn, unmatched_sightings, sightings.values(), ["address", "message_key", "mailbox"]
    )
    refresh_queue(conn, sorted({key for key, _ in sightings}), names)


def refresh_queue(conn: Connection, addresses: list[str], names: dict[str, str]) -> None:
    """Recompute the queue entries of ``addresses`` from their sightings."""
    s = unmatched_sightings.c
    rows: list[dict[str, Any]] = []
    for part in chunks(addresses):
        for address, count, first, last in conn.execute(
            select(
                s.address,
                func.count(func.distinct(s.message_key)),
                func.min(s.occurred_at),
                func.max(s.occurred_at),
            )
            .where(s.address.in_(part))
            .group_by(s.address)
        ):
            rows.append(
                {
                    "address": address,
                    "name": names.get(address, ""),
                    "count": count,
                    "first_seen": _utc(first),
                    "last_seen": _utc(last),
                }
            )
    t = unmatched_addresses.c
    upsert(
        conn,
        unmatched_addresses,
        rows,
        ["address"],
        lambda ex: {
            "count": ex.count,
            "first_seen": ex.first_seen,
            "last_seen": ex.last_seen,
            "name": case((ex.name != "", ex.name), else_=t.name),
        },
    )


def _utc(value: Any) -> datetime:
    """Aggregates skip the column type on some engines: make sure we hand back aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


def save_batch(conn: Connection, batch: FolderBatch) -> int:
    """Persist a batch and advance the folder cursor; returns how many sources were added.
    Every record it creates is announced by a ``record.created`` event."""
    now = datetime.now(UTC)
    keys = [m.key for m in batch.captured] + [key for _, key in batch.known]
    ids = record_ids(conn, keys)
    fresh, created, record_rows = _new_records(conn, batch, ids, now)
    people: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    if fresh:
        # Another daemon's copy of a message won the insert: its people are written once more
        # (ON CONFLICT DO NOTHING), as they always were; only the creator announces it.
        people, links = write_people(conn, ((ids[m.key], m.participants) for m in fresh))
    queue_sightings(
        conn,
        batch.mailbox,
        ((m.key, m.occurred_at, m.participants) for m in [*batch.captured, *batch.queued_only]),
        plus_addressing=batch.plus_addressing,
    )
    source_rows: list[dict[str, Any]] = [
        {
            "record_id": ids[key],
            "mailbox": batch.mailbox,
            "folder": batch.folder,
            "uidvalidity": batch.uidvalidity,
            "uid": uid,
        }
        for uid, key in [(m.uid, m.key) for m in batch.captured] + batch.known
        if key in ids
    ]
    mine = set(created)
    # A record that existed before this batch and now shows up in another place (the same
    # message in a second rep's mailbox) changed: its sources, and the CRM hears of it.  The
    # same place again (a UIDVALIDITY reset re-identifying the folder, whose old sources
    # were dropped before this pass) is bookkeeping.
    shown_anew = (
        _new_places(conn, {row["record_id"] for row in source_rows} - mine, batch)
        if not batch.reidentifying
        else set()
    )
    insert_ignore(conn, provenance, source_rows, ["mailbox", "folder", "uidvalidity", "uid"])
    insert_ignore(
        conn,
        quarantine,
        [
            quarantine_row(
                "mailbox",
                batch.mailbox,
                batch.folder,
                str(uid),
                str(batch.uidvalidity),
                bound_reason(reason),
                now,
            )
            for uid, reason in batch.quarantined
        ],
        QUARANTINE_KEY,
    )
    record_skips(conn, batch.mailbox, batch.folder, batch.uidvalidity, batch.skipped_uids)
    advance_cursor(
        conn,
        batch.mailbox,
        batch.folder,
        uidvalidity=batch.uidvalidity,
        last_uid=batch.last_uid,
        highestmodseq=batch.highestmodseq,
        captured=len(source_rows),
        skipped=batch.skipped,
    )
    if created:
        _index_created(conn, record_rows, people, ids, mine, fresh)
    if created:
        # Last: on PostgreSQL the outbox lock is held from here to the commit.  The records
        # are shaped from the rows this transaction just wrote, not read back: a backfill's
        # events then cost it a few per cent (bench/capture.py).
        outbox.emit_created_emails(
            conn,
            [dict(row, id=ids[row["key"]]) for row in record_rows if ids.get(row["key"]) in mine],
            people,
            links,
            source_rows,
            now,
        )
    if shown_anew:
        # Read under the outbox lock (taken by the created events above, or here): two
        # daemons adding sources to one record at once each read the other's committed
        # source, so the newest event holds both.
        events.lock(conn)
        outbox.emit_records(conn, RECORD_UPDATED, sorted(shown_anew), now)
    return len(source_rows)


def _index_created(
    conn: Connection,
    record_rows: list[dict[str, Any]],
    people: list[dict[str, Any]],
    ids: dict[str, int],
    mine: set[int],
    fresh: list[CapturedMessage],
) -> None:
    """Index the records this batch created, from the rows it just wrote (no read back), or
    from the entries worked out ahead from the same values (``index_entry``)."""
    ahead = {m.key: m.indexed for m in fresh if m.indexed is not None}
    by_record: dict[int, list[dict[str, Any]]] = {}
    if len(ahead) < len(fresh):
        for person in people:
            by_record.setdefault(person["record_id"], []).append(person)
    terms: dict[int, str] = {}
    packed: dict[int, bytes] = {}
    for row in record_rows:
        record_id = ids.get(row["key"])
        if record_id in mine:
            entry = ahead.get(row["key"])
            if entry is not None:
                terms[record_id], packed[record_id] = entry
            else:
                parts = search_index.record_parts(row, by_record.get(record_id, ()))
                terms[record_id] = index_terms(parts)
    search_index.add(conn, terms, packed)


def _new_places(conn: Connection, record_ids: set[int], batch: FolderBatch) -> set[int]:
    """Those of ``record_ids`` with no source yet in the batch's mailbox and folder."""
    there: set[int] = set()
    for part in chunks(sorted(record_ids)):
        there.update(
            conn.scalars(
                select(provenance.c.record_id)
                .where(
                    provenance.c.record_id.in_(part),
                    provenance.c.mailbox == batch.mailbox,
                    provenance.c.folder == batch.folder,
                )
                .distinct()
            )
        )
    return record_ids - there


def record_skips(
    conn: Connection, mailbox: str, folder: str, uidvalidity: int, skips: list[tuple[int, str]]
) -> None:
    """Which UIDs a capture rule skipped, and by which rule (replays insert nothing twice)."""
    insert_ignore(
        conn,
        skipped_messages,
        [
            {
                "mailbox": mailbox,
                "folder": folder,
                "uidvalidity": uidvalidity,
                "uid": uid,
                "rule": rule,
            }
            for uid, rule in skips
        ],
        ["mailbox", "folder", "uidvalidity", "uid"],
    )


def advance_cursor(
    conn: Connection,
    mailbox: str,
    folder: str,
    *,
    uidvalidity: int,
    last_uid: int,
    highestmodseq: int | None,
    captured: int = 0,
    skipped: int = 0,
) -> None:
    t = folder_cursors.c
    upsert(
        conn,
        folder_cursors,
        [
            {
                "mailbox": mailbox,
                "folder": folder,
                "uidvalidity": uidvalidity,
                "last_uid": last_uid,
                "highestmodseq": highestmodseq,
            }
        ],
        ["mailbox", "folder"],
        lambda ex: {
            "uidvalidity": ex.uidvalidity,
            # A replayed or concurrent older batch must never move the cursor backwards.
            "last_uid": case(
                (t.uidvalidity != ex.uidvalidity, ex.last_uid),
                (ex.last_uid > t.last_uid, ex.last_uid),
                else_=t.last_uid,
            ),
            "highestmodseq": func.coalesce(ex.highestmodseq, t.highestmodseq),
        },
    )
    counted(conn, "mailbox", mailbox, folder, captured=captured, skipped=skipped)
