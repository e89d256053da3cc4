"""`syncd forget`: erase a person, redact what must stay, and suppress their address.

After a forget nothing syncd stores or pushes names the address or the person's display
names: the records only they took part in are deleted with their tasks; kept records,
task titles, audit rows and error texts are redacted; the address is remembered only as a
keyed fingerprint, so that later mail and meetings naming it never store it again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, String, Table, delete, func, or_, select, update

from syncd.domain.addresses import match_key
from syncd.domain.matching import Directory, match_address
from syncd.domain.privacy import (
    MIN_NAME_LENGTH,
    Redactor,
    address_digest,
    audit_label,
    legacy_fingerprint,
)
from syncd.domain.search_text import MAX_TERMS, Query, Term, tokens
from syncd.schema.tables import (
    audit_log,
    contact_addresses,
    contacts,
    directory_fingerprints,
    exclusions,
    metadata,
    participants,
    quarantine,
    records,
    settings,
    source_health,
    source_states,
    suppressions,
    tasks,
    unmatched_addresses,
    webhook_deliveries,
    webhook_endpoints,
)
from syncd.schema.tables import events as events_table
from syncd.store import audit, event_privacy, search_index
from syncd.store import tasks as task_store
from syncd.store.directory import clean_address, installation_secret
from syncd.store.reconcile import _drop_from_queue, _record_ids_of, _spellings
from syncd.store.sql import chunks, insert_ignore

# Free text, where the person's display name is redacted as well as the address.  Elsewhere
# (keys, hrefs, owners, mailbox names) only the address is: a name such as "Sam" must not
# rewrite a rep's sam@ address or a mailbox called sam.
_FREE_TEXT = {
    f"{c.table.name}.{c.name}"
    for c in (
        records.c.subject, records.c.snippet, records.c.body, records.c.location,
        tasks.c.title, audit_log.c.target, audit_log.c.detail,
        participants.c.name, contacts.c.name, unmatched_addresses.c.name,
        quarantine.c.reason, source_states.c.last_error, source_health.c.reason,
    )
}  # fmt: skip
# The secret and the fingerprints; events are JSON, redacted value by value (event_privacy).
_NOT_SWEPT = {settings.name, suppressions.name, events_table.name}
TASK_TITLE = "Follow-up about a forgotten person"


def forget(
    conn: Connection, address: str, directory: Directory, *, names_out: list[str] | None = None
) -> dict[str, int]:
    """Erase a person; idempotent (a second run finds nothing and says so).  The display
    names redacted in the person's records are appended to ``names_out``."""
    address = clean_address(address)
    plus = directory.plus_addressing
    key = match_key(address, plus)
    digest = address_digest(installation_secret(conn), key)
    counts = {
        "contacts": 0, "participants": 0, "records": 0, "queue_entries": 0, "tasks": 0,
        "redacted": 0, "suppressed": 0,
    }  # fmt: skip
    touched = _record_ids_of(conn, key, plus)
    spellings, names = _who(conn, key, plus, touched)
    # The address is swept everywhere; display names only where the person took part.  A
    # name is whatever a sender wrote (``To: "Invoice" <jane@...>``): swept everywhere, it
    # would redact a common word from every record of the database.
    redactor = Redactor.build({address, key, *spellings}, names)
    # Found before anything is redacted (and while the index still holds the address).
    stale = _found_by(conn, touched, {address, key, *spellings})
    if names_out is not None:
        names_out.extend(sorted({n.strip() for n in names if len(n.strip()) >= MIN_NAME_LENGTH}))

    counts["contacts"] = _drop_contacts(conn, key, plus)
    directory.contacts.pop(key, None)
    for part in chunks(touched):
        counts["participants"] += conn.execute(
            delete(participants).where(
                participants.c.record_id.in_(part), participants.c.address.in_(spellings)
            )
        ).rowcount
    doomed = _records_left_without_customer(conn, touched, directory)
    before = event_privacy.Before(conn, touched, doomed, TASK_TITLE)
    counts["tasks"] = task_store.forget_tasks(conn, doomed, TASK_TITLE)
    for ids in chunks(doomed):
        counts["records"] += conn.execute(delete(records).where(records.c.id.in_(ids))).rowcount
    for addrs in chunks(sorted(spellings)):
        # The keyed label, not NULL: a record without an organizer is claimed by the next
        # copy of its UID from anyone (store.meetings._claim_keys); the person's own copies
        # get the same label (calendar_sync), others a record of their own.
        conn.execute(
            update(records)
            .where(records.c.organizer.in_(addrs))
            .values(organizer=audit_label(digest))
        )
        conn.execute(delete(exclusions).where(exclusions.c.entry.in_(addrs)))
    counts["queue_entries"] = _drop_from_queue(conn, [key])
    # Audit rows about the address (an assign, an ignore, an earlier forget's unkeyed and
    # guessable hash) keep their place in the history under the keyed fingerprint.
    conn.execute(
        update(audit_log)
        .where(audit_log.c.target.in_([*sorted(spellings), legacy_fingerprint(key)]))
        .values(target=audit_label(digest))
    )
    counts["redacted"] = sweep(conn, Redactor.build({address, key, *spellings}, ()))
    counts["redacted"] += _redact_their_records(conn, redactor, touched)
    counts["redacted"] += _redact_receiver_answers(conn, redactor, touched, before.task_ids)
    # The erased records' lines go too (on PostgreSQL a deletion leaves the index to this).
    _reindex(conn, stale | set(doomed))
    exists = conn.scalar(select(suppressions.c.digest).where(suppressions.c.digest == digest))
    if exists is None:
        insert_ignore(
            conn, suppressions, [{"digest": digest, "created_at": datetime.now(UTC)}], ["digest"]
        )
        counts["suppressed"] = 1
    if any(counts.values()):
        audit.record(conn, "forget", audit_label(digest), **counts)
    event_privacy.announce(
        conn, before, address=address, digest=digest, spellings=spellings,
        theirs=redactor, everywhere=Redactor.build({address, key, *spellings}, ()),
        first=bool(counts["suppressed"]),
    )  # fmt: skip
    return counts


def _found_by(conn: Connection, touched: list[int], spellings: set[str]) -> set[int]:
    """The records whose index entries change: theirs, and every other record the index
    finds by the address (the sweep will redact it there)."""
    stale = set(touched)
    for spelling in sorted(spellings):
        found = tokens(spelling, MAX_TERMS * 4)
        if found:
            stale |= search_index.matching_ids(conn, Query((Term(tuple(found)),)))
    return stale


def _reindex(conn: Connection, stale: set[int]) -> None:
    """The search index follows: the records as redacted (the erased ones leave it)."""
    search_index.reindex_records(conn, stale)
    # FTS5 keeps a deleted entry's words in older segments until they merge: merge now.
    search_index.merge(conn)


def _who(conn: Connection, key: str, plus: bool, touched: list[int]) -> tuple[set[str], set[str]]:
    """Every spelling of the address syncd stored, and every display name it was seen with."""
    spellings = {key}
    names: set[str] = set()
    for part in chunks(touched):
        found = _spellings(conn, part, key, plus)
        spellings.update(found)
        names.update(
            conn.scalars(
                select(participants.c.name).where(
                    participants.c.record_id.in_(part), participants.c.address.in_(found)
                )
            )
        )
    for contact_id, addr in conn.execute(
        select(contact_addresses.c.contact_id, contact_addresses.c.address)
    ).all():
        if match_key(addr, plus) == key:
            spellings.add(addr)
            names.update(conn.scalars(select(contacts.c.name).where(contacts.c.id == contact_id)))
    names.update(
        conn.scalars(select(unmatched_addresses.c.name).where(unmatched_addresses.c.address == key))
    )
    for entry in conn.scalars(select(exclusions.c.entry)):
        if "@" in entry and not entry.startswith("@") and match_key(entry, plus) == key:
            spellings.add(entry)
    return spellings, {n for n in names if n}


def _drop_contacts(conn: Connection, key: str, plus: bool) -> int:
    """The address's contact rows; a contact left with no address goes too."""
    dropped = 0
    for contact_id, addr in conn.execute(
        select(contact_addresses.c.contact_id, contact_addresses.c.address)
    ).all():
        if match_key(addr, plus) != key:
            continue
        conn.execute(delete(contact_addresses).where(contact_addresses.c.address == addr))
        # The last directory mirror's digest of the contact's customer covered the address.
        conn.execute(
            delete(directory_fingerprints).where(
                directory_fingerprints.c.customer_id
                == select(contacts.c.customer_id)
                .where(contacts.c.id == contact_id)
                .scalar_subquery()
            )
        )
        left = conn.scalar(
            select(func.count())
            .select_from(contact_addresses)
            .where(contact_addresses.c.contact_id == contact_id)
        )
        if not left:
            conn.execute(delete(contacts).where(contacts.c.id == contact_id))
            dropped += 1
    return dropped


def _records_left_without_customer(
    conn: Connection, touched: list[int], directory: Directory
) -> list[int]:
    """Records in which no other external party is a contact or at a customer's domain."""
    doomed = []
    for record_id in touched:
        others = conn.execute(
            select(participants.c.address, participants.c.contact_id).where(
                participants.c.record_id == record_id, participants.c.external == 1
            )
        ).all()
        if not any(
            contact_id is not None or match_address(addr, directory).customer_id is not None
            for addr, contact_id in others
        ):
            doomed.append(record_id)
    return doomed


def sweep(conn: Connection, redactor: Redactor) -> int:
    """Redact the person from every text column of every table; returns rows changed.

    The database narrows the search (a case-insensitive substring match per needle); the
    redactor decides, so a name only counts as a whole word.
    """
    changed = 0
    now = datetime.now(UTC)
    address_only = Redactor.build([n for n in redactor.needles if "@" in n], ())
    for table in metadata.sorted_tables:
        if table.name in _NOT_SWEPT:
            continue
        columns = {
            c.name: redactor if f"{table.name}.{c.name}" in _FREE_TEXT else address_only
            for c in table.columns
            if isinstance(c.type, String)
        }
        for row in _candidates(conn, table, columns):
            new: dict[str, object] = {
                name: fixed
                for name, rule in columns.items()
                if isinstance(row[name], str) and (fixed := rule.redact(row[name])) != row[name]
            }
            if not new:
                continue
            if table is tasks:
                new["updated_at"] = now  # so that the next task sync rewrites the VTODO
            where = [pk == row[pk.name] for pk in table.primary_key.columns]
            changed += conn.execute(update(table).where(*where).values(**new)).rowcount
    return changed


def _redact_their_records(conn: Connection, redactor: Redactor, touched: list[int]) -> int:
    """Redact the person's names (and address) from the free text of the records they took
    part in, those records' participants and tasks; returns rows changed."""
    changed = 0
    now = datetime.now(UTC)
    scoped = (
        (
            records,
            records.c.id,
            (records.c.subject, records.c.snippet, records.c.body, records.c.location),
        ),
        (participants, participants.c.record_id, (participants.c.name,)),
        (tasks, tasks.c.record_id, (tasks.c.title,)),
    )
    for part in chunks(touched):
        for table, record_id, columns in scoped:
            keys = list(table.primary_key.columns)
            query = select(*keys, *columns).where(record_id.in_(part))
            for row in conn.execute(query).mappings():
                new: dict[str, object] = {
                    c.name: fixed
                    for c in columns
                    if isinstance(row[c.name], str)
                    and (fixed := redactor.redact(row[c.name])) != row[c.name]
                }
                if not new:
                    continue
                if table is tasks:
                    new["updated_at"] = now  # so that the next task sync rewrites the VTODO
                where = [pk == row[pk.name] for pk in keys]
                changed += conn.execute(update(table).where(*where).values(**new)).rowcount
    return changed


def _redact_receiver_answers(
    conn: Connection, redactor: Redactor, touched: list[int], task_ids: set[int]
) -> int:
    """A webhook receiver's answer (kept as a delivery's or an endpoint's last error) may
    echo the payload it refused, names and all: the person's names leave the errors of
    deliveries about their records and tasks (``task_ids``: read before the forget deleted
    or detached the tasks of the records it erased), and the endpoints' last errors (a
    handful of rows, where redacting a common word costs nothing)."""
    changed = 0
    subjects = [f"record:{i}" for i in touched] + [f"task:{i}" for i in sorted(task_ids)]
    D = webhook_deliveries
    for about in chunks(subjects):
        rows = conn.execute(
            select(D.c.endpoint, D.c.event_id, D.c.last_error).where(
                D.c.subject.in_(about), D.c.last_error.is_not(None)
            )
        ).all()
        for endpoint, event_id, error in rows:
            if (fixed := redactor.redact(error)) != error:
                changed += conn.execute(
                    update(D)
                    .where(D.c.endpoint == endpoint, D.c.event_id == event_id)
                    .values(last_error=fixed)
                ).rowcount
    E = webhook_endpoints
    for name, error, reason in conn.execute(select(E.c.name, E.c.last_error, E.c.reason)).all():
        new = {
            column: fixed
            for column, text in (("last_error", error), ("reason", reason))
            if isinstance(text, str) and (fixed := redactor.redact(text)) != text
        }
        if new:
            changed += conn.execute(update(E).where(E.c.name == name).values(**new)).rowcount
    return changed


def _candidates(conn: Connection, table: Table, columns: dict[str, Redactor]) -> list[Any]:
    tests = [
        func.lower(table.c[name]).contains(needle, autoescape=True)
        for name, rule in columns.items()
        for needle in rule.needles
    ]
    if not tests:
        return []
    keys = [c.name for c in table.primary_key.columns]
    wanted = [table.c[n] for n in dict.fromkeys([*keys, *columns])]
    return list(conn.execute(select(*wanted).where(or_(*tests))).mappings())
