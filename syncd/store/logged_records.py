"""Logged records (calls, visits, notes): the one place that writes them.

Every write (``add``, ``edit``, ``delete``, ``import_rows``) takes a connection inside the
caller's transaction and the actor the audit names, and does, in this order: the record
row, its participants (the rep as ``owner``, each contact as ``contact``) and customer
links (a contact's customer as for mail, ``manual`` for the customers a person named),
``_records_changed`` (the search index's hook), the audit row, then the outbox event
(last: on PostgreSQL the outbox lock is held from there to the commit).

A captured email or meeting belongs to its mailbox or calendar: editing or deleting one
here is refused (``store.errors.CapturedRecord``, exit 2).  ``record_object`` turns a record into the
object ``syncd records list --json`` prints, for the CLI, the API and the connectors.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from syncd.domain.addresses import is_internal
from syncd.domain.logged import (
    KINDS,
    BadDraft,
    LoggedDraft,
    RawFields,
    changed_fields,
    draft_from,
    record_key,
)
from syncd.domain.logged_file import BadRecordsFile, FileRow, RecordsFile
from syncd.domain.matching import Directory, match_address
from syncd.domain.payloads import record_json
from syncd.errors import UserError
from syncd.schema.tables import (
    contacts,
    customers,
    participants,
    record_customers,
    record_unlinks,
    records,
    tasks,
)
from syncd.store import audit, events, outbox, search_index
from syncd.store.directory import find_customer
from syncd.store.errors import CapturedRecord, KeyTaken, NotFound
from syncd.store.events import (
    RECORD_CREATED,
    RECORD_DELETED,
    RECORD_UPDATED,
    TASK_UPDATED,
    Event,
)
from syncd.store.queries import records_by_id
from syncd.store.sql import chunks

OWNER_ROLE = "owner"
CONTACT_ROLE = "contact"


@dataclass
class ImportResult:
    rows: int = 0
    added: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: int = 0
    skipped: int = 0  # rows about a forgotten person alone

    @property
    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": self.unchanged,
            "skipped": self.skipped,
        }


def _records_changed(conn: Connection, record_ids: Sequence[int]) -> None:
    """Called after every write of logged records, in the same transaction, with the ids
    written or deleted: the search index follows them (a deleted id leaves it)."""
    search_index.reindex_records(conn, record_ids)


# --- reading -------------------------------------------------------------------------------


def record_object(conn: Connection, record_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The record as ``syncd records list --json`` prints it (and events carry it)."""
    found = records_by_id(conn, [record_id])
    if not found:
        raise NotFound("record", record_id)
    return record_json(found[0], now)


def draft_of(conn: Connection, record_id: int) -> LoggedDraft:
    """A logged record as the draft that would write it again; CapturedRecord for an email
    or meeting.  Its customers are its ``manual`` links (the others follow its contacts)."""
    kind = conn.scalar(select(records.c.kind).where(records.c.id == record_id))
    if kind is None:
        raise NotFound("record", record_id)
    if kind not in KINDS:
        raise CapturedRecord(record_id, kind)
    return drafts_of(conn, [record_id])[record_id]


def drafts_of(conn: Connection, record_ids: Sequence[int]) -> dict[int, LoggedDraft]:
    """``draft_of`` for many logged records at once (three queries per 500); records that
    are not logged ones are left out."""
    rows: dict[int, Any] = {}
    manual: dict[int, list[int]] = defaultdict(list)
    people: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for part in chunks(sorted(set(record_ids))):
        rows.update(
            (row["id"], row)
            for row in conn.execute(
                select(records).where(records.c.id.in_(part), records.c.kind.in_(KINDS))
            ).mappings()
        )
        for rid, cid in conn.execute(
            select(record_customers.c.record_id, record_customers.c.customer_id)
            .where(record_customers.c.record_id.in_(part), record_customers.c.link == "manual")
            .order_by(record_customers.c.customer_id)
        ):
            manual[rid].append(cid)
        for rid, address, role in conn.execute(
            select(participants.c.record_id, participants.c.address, participants.c.role)
            .where(participants.c.record_id.in_(part))
            .order_by(participants.c.id)
        ):
            people[rid].append((address, role))
    out: dict[int, LoggedDraft] = {}
    for rid, row in rows.items():
        occurred = row["occurred_at"]
        out[rid] = LoggedDraft(
            kind=row["kind"],
            owner=row["owner"] or next((a for a, r in people[rid] if r == OWNER_ROLE), ""),
            subject=row["subject"],
            occurred_at=occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC),
            customer_ids=tuple(manual[rid]),
            contacts=tuple(a for a, r in people[rid] if r == CONTACT_ROLE),
            direction=row["direction"],
            body=row["body"],
            duration_seconds=row["duration_seconds"],
            outcome=row["outcome"],
            location=row["location"],
            external_id=row["external_id"],
            origin=row["origin"] or "cli",
        )
    return out


# --- writing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _People:
    participants: list[dict[str, Any]]
    links: dict[int, str]  # customer id -> contact | domain | manual


@dataclass
class _Lookups:
    """What deciding a record's people reads from the database, read once for a batch: the
    named customers (id -> archived_at) and the matched contacts' names."""

    directory: Directory
    internal: frozenset[str]
    customers: dict[int, datetime | None] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        conn: Connection,
        drafts: Iterable[LoggedDraft],
        directory: Directory,
        internal: Collection[str],
    ) -> _Lookups:
        drafts = list(drafts)
        out = cls(directory, frozenset(internal))
        customer_ids = sorted({cid for d in drafts for cid in d.customer_ids})
        contact_ids = sorted(
            {
                cid
                for d in drafts
                for address in d.contacts
                if (cid := match_address(address, directory).contact_id) is not None
            }
        )
        for part in chunks(customer_ids):
            out.customers.update(
                conn.execute(
                    select(customers.c.id, customers.c.archived_at).where(customers.c.id.in_(part))
                ).all()
            )
        for part in chunks(contact_ids):
            out.names.update(
                conn.execute(
                    select(contacts.c.id, contacts.c.name).where(contacts.c.id.in_(part))
                ).all()
            )
        return out

    def forgotten(self, address: str) -> bool:
        """Whether ``syncd forget`` suppressed the address: it is never stored again."""
        return match_address(address, self.directory).reason == "suppressed"

    def people(self, draft: LoggedDraft, problems: list[str]) -> _People:
        """Who took part and which customers that links, as capture decides for mail; what
        cannot be stored (a forgotten address, one of ours as a contact, an unknown or
        archived customer) goes to ``problems``."""
        for cid in draft.customer_ids:
            if cid not in self.customers:
                problems.append(f"no customer {cid}")
            elif self.customers[cid] is not None:
                problems.append(
                    f"customer {cid} is archived (the directory file no longer lists it)"
                )
        people = [
            {"address": draft.owner, "name": "", "role": OWNER_ROLE, "external": 0,
             "contact_id": None},
        ]  # fmt: skip
        links: dict[int, str] = {}
        for address in draft.contacts:
            if is_internal(address, self.internal) or address == draft.owner:
                problems.append(
                    f"contact {address} is one of our own addresses: give it as the owner"
                )
                continue
            match = match_address(address, self.directory)
            if match.reason == "suppressed":
                problems.append(
                    f"contact {address} was forgotten (syncd forget): never stored again"
                )
                continue
            contact_id = match.contact_id
            people.append(
                {
                    "address": address,
                    "name": self.names.get(contact_id, "") if contact_id else "",
                    "role": CONTACT_ROLE,
                    "external": 1,
                    "contact_id": contact_id,
                }
            )
            found = match.customer_id
            if found is not None and match.link is not None and links.get(found) != "contact":
                links[found] = match.link
        for cid in draft.customer_ids:
            links[cid] = "manual"
        return _People(people, links)


def _values(draft: LoggedDraft, now: datetime) -> dict[str, Any]:
    return {
        "kind": draft.kind,
        "direction": draft.direction,
        "subject": draft.subject,
        "snippet": None,
        "body": draft.body,
        "occurred_at": draft.occurred_at,
        "owner": draft.owner,
        "origin": draft.origin,
        "external_id": draft.external_id,
        "duration_seconds": draft.duration_seconds,
        "outcome": draft.outcome,
        "location": draft.location,
        "updated_at": now,
    }


def _write_people(conn: Connection, written: Sequence[tuple[int, _People]], *, fresh: bool) -> None:
    """Write (``fresh``: new records) or replace the participants and links of records: a
    person's unlinks stay respected (no contact's customer comes back where a person
    removed it); a customer a person names again is theirs to link."""
    ids = [rid for rid, _ in written]
    unlinked: dict[int, set[int]] = defaultdict(set)
    if not fresh:
        for part in chunks(ids):
            conn.execute(delete(participants).where(participants.c.record_id.in_(part)))
            conn.execute(delete(record_customers).where(record_customers.c.record_id.in_(part)))
            for rid, cid in conn.execute(
                select(record_unlinks.c.record_id, record_unlinks.c.customer_id).where(
                    record_unlinks.c.record_id.in_(part)
                )
            ):
                unlinked[rid].add(cid)
    people_rows: list[dict[str, Any]] = []
    link_rows: list[dict[str, Any]] = []
    for rid, people in written:
        people_rows.extend({"record_id": rid, **p} for p in people.participants)
        gone = unlinked.get(rid, set())
        for cid, link in sorted(people.links.items()):
            if link == "manual" and cid in gone:
                conn.execute(
                    delete(record_unlinks).where(
                        record_unlinks.c.record_id == rid, record_unlinks.c.customer_id == cid
                    )
                )
            if link == "manual" or cid not in gone:
                link_rows.append({"record_id": rid, "customer_id": cid, "link": link})
    if people_rows:
        conn.execute(participants.insert(), people_rows)
    if link_rows:
        conn.execute(record_customers.insert(), link_rows)


def _taken(conn: Connection, keys: Iterable[str]) -> dict[str, int]:
    """The records already holding these keys: key -> id."""
    out: dict[str, int] = {}
    for part in chunks(sorted(set(keys))):
        out.update(
            conn.execute(select(records.c.key, records.c.id).where(records.c.key.in_(part))).all()
        )
    return out


def _fail(problems: list[str]) -> None:
    if problems:
        raise UserError("; ".join(problems))


def _insert(
    conn: Connection, batch: Sequence[tuple[str, LoggedDraft, _People]], now: datetime
) -> list[int]:
    """New records with their people, in one statement per table; their ids, in order."""
    if not batch:
        return []
    result = conn.execute(
        records.insert().returning(records.c.id, sort_by_parameter_order=True),
        [{"key": key, "created_at": now, **_values(draft, now)} for key, draft, _ in batch],
    )
    ids = [int(rid) for rid in result.scalars()]
    _write_people(conn, [(rid, people) for rid, (_, _, people) in zip(ids, batch, strict=True)],
                  fresh=True)  # fmt: skip
    return ids


def check(
    conn: Connection,
    draft: LoggedDraft,
    *,
    directory: Directory,
    internal_domains: Collection[str] = (),
) -> list[str]:
    """What ``add`` or ``edit`` would refuse in ``draft`` against the database (an unknown
    or archived customer, a forgotten contact, one of ours as a contact), every problem;
    the API answers them all at once, field by field."""
    problems: list[str] = []
    _Lookups.load(conn, [draft], directory, internal_domains).people(draft, problems)
    return problems


def add(
    conn: Connection,
    draft: LoggedDraft,
    *,
    actor: str | None,
    directory: Directory,
    internal_domains: Collection[str] = (),
) -> int:
    """Store a new logged record; its id.  KeyTaken when its external id is known already;
    a UserError naming everything that cannot be stored."""
    key = record_key(draft, fresh=secrets.token_hex(16))
    taken = _taken(conn, [key]).get(key)
    if taken is not None:
        raise KeyTaken(draft.external_id or key, taken)
    problems: list[str] = []
    people = _Lookups.load(conn, [draft], directory, internal_domains).people(draft, problems)
    _fail(problems)
    now = datetime.now(UTC)
    (record_id,) = _insert(conn, [(key, draft, people)], now)
    _records_changed(conn, [record_id])
    audit.record_as(
        conn, actor, "log-record", f"record {record_id}", kind=draft.kind, origin=draft.origin
    )
    outbox.emit_records(conn, RECORD_CREATED, [record_id], now)
    return record_id


def edit(
    conn: Connection,
    record_id: int,
    draft: LoggedDraft,
    *,
    actor: str | None,
    directory: Directory,
    internal_domains: Collection[str] = (),
) -> list[str]:
    """Make the logged record ``record_id`` what ``draft`` says; the names of the fields
    that changed (none: nothing written, no event)."""
    before = draft_of(conn, record_id)
    draft = replace(draft, origin=before.origin)
    changed = changed_fields(before, draft)
    if not changed:
        return []
    problems: list[str] = []
    people = _Lookups.load(conn, [draft], directory, internal_domains).people(draft, problems)
    _fail(problems)
    values = _values(draft, datetime.now(UTC))
    if draft.external_id != before.external_id:
        key = record_key(draft, fresh=secrets.token_hex(16))
        taken = _taken(conn, [key]).get(key)
        if taken is not None and taken != record_id:
            raise KeyTaken(draft.external_id or key, taken)
        values["key"] = key
    conn.execute(update(records).where(records.c.id == record_id).values(**values))
    _write_people(conn, [(record_id, people)], fresh=False)
    _records_changed(conn, [record_id])
    audit.record_as(conn, actor, "edit-record", f"record {record_id}", changed=changed)
    outbox.emit_records(conn, RECORD_UPDATED, [record_id])
    return changed


def delete_record(conn: Connection, record_id: int, *, actor: str | None) -> str:
    """Delete a logged record (its participants and links go with it; tasks it triggered or
    closed keep going without it); its kind."""
    draft = draft_of(conn, record_id)  # NotFound, CapturedRecord
    when = conn.scalar(select(records.c.occurred_at).where(records.c.id == record_id))
    conn.execute(delete(records).where(records.c.id == record_id))
    _records_changed(conn, [record_id])
    audit.record_as(conn, actor, "delete-record", f"record {record_id}", kind=draft.kind)
    events.emit(
        conn,
        Event(RECORD_DELETED, f"record:{record_id}", {"id": record_id, "kind": draft.kind}, when),
    )
    return draft.kind


def import_rows(
    conn: Connection,
    parsed: RecordsFile,
    *,
    actor: str | None,
    directory: Directory,
    internal_domains: Collection[str] = (),
    dry_run: bool = False,
) -> ImportResult:
    """Import a parsed file: each row is the record keyed by its external id (else by the
    row's hash); a known key is left alone when nothing differs, else updated.  A forgotten
    person is left out of a row (a row about them alone is skipped).  Every row is
    checked against the database first (its customer, its contacts); BadRecordsFile with
    every bad row, and nothing written, if any is bad.  A few statements per 500 rows."""
    result = ImportResult(rows=len(parsed.rows))
    customer_ids: dict[str, int] = {}
    found: dict[int, list[str]] = {}
    checked: list[tuple[FileRow, LoggedDraft]] = []
    for row in parsed.rows:
        mine: list[str] = []
        ids: tuple[int, ...] = ()
        if row.customer is not None:
            cid = customer_ids.get(row.customer)
            if cid is None:
                try:
                    customer = find_customer(conn, row.customer)
                except NotFound:
                    mine.append(f"no customer {row.customer[:100]!r}")
                else:
                    if customer.archived:
                        mine.append(f"customer {customer.name!r} is archived")
                    else:
                        cid = customer_ids[row.customer] = customer.id
            if cid is not None:
                ids = (cid,)
        if mine:
            found[row.line] = mine
        elif not row.problems:
            checked.append((row, row.draft(ids)))
    lookups = _Lookups.load(conn, [d for _, d in checked], directory, internal_domains)
    drafts: list[tuple[FileRow, LoggedDraft, str, _People]] = []
    for row, draft in checked:
        # A forgotten person in an export is left out, as capture leaves them out of mail:
        # the row keeps what else it says, and one about them alone is not kept at all.
        kept = tuple(a for a in draft.contacts if not lookups.forgotten(a))
        if kept != draft.contacts:
            if not kept and not draft.customer_ids:
                result.skipped += 1
                continue
            draft = replace(draft, contacts=kept)
        mine = []
        people = lookups.people(draft, mine)
        if mine:
            found[row.line] = mine
        else:
            drafts.append((row, draft, record_key(draft, row_hash=row.row_hash), people))
    parsed.fail(found)
    existing = _taken(conn, [key for _, _, key, _ in drafts])
    before = drafts_of(conn, sorted(set(existing.values())))
    fresh: list[tuple[str, LoggedDraft, _People]] = []
    changes: list[tuple[int, LoggedDraft, _People]] = []
    done: set[str] = set()
    for row, draft, key, people in drafts:
        if key in done:
            result.unchanged += 1  # the same row twice in the file
            continue
        done.add(key)
        record_id = existing.get(key)
        if record_id is None:
            fresh.append((key, draft, people))
        elif record_id not in before:
            raise BadRecordsFile(
                parsed.where, [f"line {row.line}: its key names a captured record"]
            )
        elif draft.external_id is None or not changed_fields(
            before[record_id], replace(draft, origin=before[record_id].origin)
        ):
            result.unchanged += 1  # the same row (its hash is its key), or the same values
        else:
            changes.append((record_id, replace(draft, origin=before[record_id].origin), people))
    if dry_run:
        result.added = [0] * len(fresh)
        result.updated = [rid for rid, _, _ in changes]
        return result
    now = datetime.now(UTC)
    for part in chunks(fresh):
        result.added.extend(_insert(conn, part, now))
    for record_id, draft, _ in changes:
        conn.execute(update(records).where(records.c.id == record_id).values(**_values(draft, now)))
    _write_people(conn, [(rid, people) for rid, _, people in changes], fresh=False)
    result.updated = [rid for rid, _, _ in changes]
    if not (result.added or result.updated):
        return result
    _records_changed(conn, [*result.added, *result.updated])
    audit.record_as(conn, actor, "import-records", parsed.where, rows=result.rows, **result.counts)
    outbox.emit_records(conn, RECORD_CREATED, result.added, now)
    outbox.emit_records(conn, RECORD_UPDATED, result.updated, now)
    return result


def done_with_log(
    conn: Connection,
    task_id: int,
    summary: str,
    *,
    duration: str | None,
    outcome: str | None,
    actor: str | None,
    directory: Directory,
    internal_domains: Collection[str] = (),
) -> int:
    """Close a call or visit task and log the call or visit that did it: owned by the
    task's owner, linked to its customer and to the contacts of that customer its record
    names; the task points at the new record (``closed_by_record_id``).  Its id."""
    from syncd.store import tasks as task_store  # store.tasks reads the rules' domain

    task = conn.execute(
        select(
            tasks.c.id, tasks.c.type, tasks.c.owner, tasks.c.customer_id, tasks.c.record_id
        ).where(tasks.c.id == task_id)
    ).first()
    if task is None:
        raise NotFound("task", task_id)
    if task.type not in ("call", "visit"):
        raise UserError(
            f"task {task_id} is a {task.type} task: --log logs a call or visit",
            hint=f"close it with `syncd tasks done {task_id}`",
        )
    spoken: list[str] = []
    if task.record_id is not None:
        for address, customer_id in conn.execute(
            select(participants.c.address, contacts.c.customer_id)
            .select_from(participants.join(contacts, contacts.c.id == participants.c.contact_id))
            .where(participants.c.record_id == task.record_id, participants.c.external == 1)
            .order_by(participants.c.id)
        ):
            if customer_id == task.customer_id and address not in spoken:
                spoken.append(address)
    raw = RawFields(
        kind=task.type, owner=task.owner, subject=summary, occurred_at=datetime.now(UTC),
        contacts=spoken, duration=duration, outcome=outcome,
        has_customer=task.customer_id is not None,
    )  # fmt: skip
    ids = (task.customer_id,) if task.customer_id is not None else ()
    try:
        draft = draft_from(raw, customer_ids=ids, origin="task")
    except BadDraft as err:
        raise UserError("; ".join(err.problems)) from None
    record_id = add(
        conn, draft, actor=actor, directory=directory, internal_domains=internal_domains
    )
    task_store.set_status(conn, task_id, "done", announce=False)
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(closed_by_record_id=record_id))
    task_store.emit_tasks(conn, TASK_UPDATED, [task_id])
    return record_id


__all__ = [
    "CapturedRecord",
    "ImportResult",
    "KeyTaken",
    "LoggedDraft",
    "add",
    "check",
    "delete_record",
    "done_with_log",
    "draft_of",
    "drafts_of",
    "edit",
    "import_rows",
    "record_object",
]
