"""The reconciliation queue and the admin's corrections: assign, create, ignore, link.

`forget` lives in store/privacy.py.

Every change is one transaction and one audit entry, and every command is idempotent:
running it twice leaves the same state and says it changed nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, or_, select

from syncd.domain.addresses import (
    domain_and_parents,
    domain_of,
    domain_spellings,
    is_free_mail,
    match_key,
    registrable_domain,
)
from syncd.domain.matching import Directory, match_address
from syncd.domain.suggestions import CustomerFacts, Suggestion, suggest
from syncd.errors import UserError
from syncd.schema.tables import (
    customer_domains,
    customers,
    exclusions,
    participants,
    record_customers,
    record_unlinks,
    records,
    unmatched_addresses,
    unmatched_sightings,
)
from syncd.store import audit, outbox
from syncd.store.directory import clean_address, ensure_contact, ensure_customer
from syncd.store.errors import FreeMailDomain, NotFound
from syncd.store.events import RECORD_UPDATED
from syncd.store.sql import chunks, insert_ignore


@dataclass(frozen=True, slots=True)
class QueueEntry:
    address: str
    name: str
    count: int
    first_seen: datetime
    last_seen: datetime
    mailboxes: list[str]
    suggestions: list[Suggestion]
    # Every customer owning the address's domain when several do: the admin picks one.
    candidates: list[dict[str, Any]]


def customer_facts(conn: Connection) -> list[CustomerFacts]:
    domains: dict[int, list[str]] = {}
    for cid, domain in conn.execute(
        select(customer_domains.c.customer_id, customer_domains.c.domain)
    ):
        domains.setdefault(cid, []).append(domain)
    # Archived customers (gone from a mirrored directory file) are never suggested.
    return [
        CustomerFacts(cid, name, tuple(sorted(domains.get(cid, []))))
        for cid, name in conn.execute(
            select(customers.c.id, customers.c.name).where(customers.c.archived_at.is_(None))
        )
    ]


def _record_ids_of(conn: Connection, key: str, plus_addressing: bool) -> list[int]:
    """Records where an address with match key ``key`` took part (any spelling of it)."""
    domains = domain_spellings(domain_of(key))
    rows = conn.execute(
        select(participants.c.record_id, participants.c.address).where(
            or_(*(participants.c.address.like(f"%@{d}") for d in domains))
        )
    )
    return sorted({rid for rid, address in rows if match_key(address, plus_addressing) == key})


def _thread_records(conn: Connection, record_ids: list[int]) -> list[int]:
    """The records of every thread the given records belong to."""
    threads: set[str] = set()
    for part in chunks(record_ids):
        threads.update(
            t for t in conn.scalars(select(records.c.thread_key).where(records.c.id.in_(part))) if t
        )
    out: set[int] = set(record_ids)
    for keys in chunks(sorted(threads)):
        out.update(conn.scalars(select(records.c.id).where(records.c.thread_key.in_(keys))))
    return sorted(out)


def _thread_customers(conn: Connection, record_ids: list[int]) -> Counter[int]:
    linked: Counter[int] = Counter()
    threads = _thread_records(conn, record_ids)
    for part in chunks(threads):
        for (cid,) in conn.execute(
            select(record_customers.c.customer_id).where(record_customers.c.record_id.in_(part))
        ):
            linked[cid] += 1
    return linked


def _thread_evidence(conn: Connection, record_ids: list[int]) -> tuple[Counter[int], Counter[int]]:
    """Customers of the address's threads: (threads where our side wrote to it, threads it
    joined only by its own In-Reply-To/References, which any sender can forge)."""
    confirmed: list[int] = []
    headers_only: list[int] = []
    for part in chunks(record_ids):
        for record_id, direction in conn.execute(
            select(records.c.id, records.c.direction).where(records.c.id.in_(part))
        ):
            (confirmed if direction == "outbound" else headers_only).append(record_id)
    strong = _thread_customers(conn, confirmed) if confirmed else Counter[int]()
    confirmed_threads = set(_thread_records(conn, confirmed)) if confirmed else set()
    weak_records = [r for r in headers_only if r not in confirmed_threads]
    weak = _thread_customers(conn, weak_records) if weak_records else Counter[int]()
    return strong, weak


def queue(conn: Connection, directory: Directory, *, limit: int | None = None) -> list[QueueEntry]:
    """Unknown external addresses with counts, mailboxes and suggestions, most seen first."""
    facts = customer_facts(conn)
    names = {f.id: f.name for f in facts}
    query = select(unmatched_addresses).order_by(
        unmatched_addresses.c.count.desc(), unmatched_addresses.c.address
    )
    if limit:
        query = query.limit(limit)
    out: list[QueueEntry] = []
    for row in conn.execute(query).mappings():
        key = row["address"]
        mailboxes = sorted(
            conn.scalars(
                select(unmatched_sightings.c.mailbox)
                .where(unmatched_sightings.c.address == key)
                .distinct()
            )
        )
        match = match_address(key, directory)
        if not match.queued:  # excluded in the config since it was queued, or now a contact
            continue
        threads, header_threads = _thread_evidence(
            conn, _record_ids_of(conn, key, directory.plus_addressing)
        )
        out.append(
            QueueEntry(
                address=key,
                name=row["name"],
                count=row["count"],
                first_seen=row["first_seen"],
                last_seen=row["last_seen"],
                mailboxes=mailboxes,
                suggestions=suggest(
                    key,
                    row["name"],
                    facts,
                    thread_customers=threads,
                    header_thread_customers=header_threads,
                    ambiguous_owners=match.suggestions,
                ),
                candidates=[
                    {"id": cid, "name": names[cid]} for cid in match.suggestions if cid in names
                ],
            )
        )
    return out


def _drop_from_queue(conn: Connection, keys: list[str]) -> int:
    dropped = 0
    for part in chunks(keys):
        conn.execute(delete(unmatched_sightings).where(unmatched_sightings.c.address.in_(part)))
        dropped += conn.execute(
            delete(unmatched_addresses).where(unmatched_addresses.c.address.in_(part))
        ).rowcount
    return dropped


def _link(conn: Connection, record_ids: list[int], customer_id: int, link: str) -> list[int]:
    """Link records to a customer, never over a person's unlink; returns the records that
    were not linked to it before."""
    if not record_ids:
        return []
    skip: set[int] = set()
    for part in chunks(record_ids):
        skip.update(
            conn.scalars(
                select(record_unlinks.c.record_id).where(
                    record_unlinks.c.customer_id == customer_id,
                    record_unlinks.c.record_id.in_(part),
                )
            )
        )
        skip.update(
            conn.scalars(
                select(record_customers.c.record_id).where(
                    record_customers.c.customer_id == customer_id,
                    record_customers.c.record_id.in_(part),
                )
            )
        )
    new = sorted(set(record_ids) - skip)
    insert_ignore(
        conn,
        record_customers,
        [{"record_id": r, "customer_id": customer_id, "link": link} for r in new],
        ["record_id", "customer_id"],
    )
    return new


def assign(
    conn: Connection,
    address: str,
    customer_id: int,
    *,
    name: str = "",
    plus_addressing: bool = True,
) -> dict[str, int]:
    """Make ``address`` a contact of the customer and link its past records and threads."""
    result, changed = _assign(conn, address, customer_id, name, plus_addressing)
    outbox.emit_records(conn, RECORD_UPDATED, changed)
    return result


def _assign(
    conn: Connection, address: str, customer_id: int, name: str, plus_addressing: bool
) -> tuple[dict[str, int], set[int]]:
    """``assign`` without its events: the result, and the records it changed."""
    address = clean_address(address)
    key = match_key(address, plus_addressing)
    if not name:
        name = (
            conn.scalar(
                select(unmatched_addresses.c.name).where(unmatched_addresses.c.address == key)
            )
            or ""
        )
    contact_id, contact_changed = ensure_contact(conn, address, customer_id=customer_id, name=name)
    own = _record_ids_of(conn, key, plus_addressing)
    changed: set[int] = set()
    for part in chunks(own):
        unknown = (
            participants.c.record_id.in_(part),
            participants.c.contact_id.is_(None),
            participants.c.address.in_(_spellings(conn, part, key, plus_addressing)),
        )
        changed.update(conn.scalars(select(participants.c.record_id).where(*unknown)))
        conn.execute(participants.update().where(*unknown).values(contact_id=contact_id))
    new_links = _link(conn, _thread_records(conn, own), customer_id, "contact")
    changed.update(new_links)
    linked = len(new_links)
    dropped = _drop_from_queue(conn, [key])
    result = {"contact_id": contact_id, "records_linked": linked, "queue_entries_removed": dropped}
    if contact_changed or linked or dropped:
        audit.record(conn, "assign", key, customer_id=customer_id, **result)
    return result, changed


def _spellings(conn: Connection, record_ids: Any, key: str, plus_addressing: bool) -> list[str]:
    found = conn.scalars(
        select(participants.c.address).where(participants.c.record_id.in_(record_ids)).distinct()
    )
    return [a for a in found if match_key(a, plus_addressing) == key]


def create_customer(
    conn: Connection, address: str, name: str, *, plus_addressing: bool = True
) -> dict[str, int]:
    """A new customer owning the address's registrable domain, then ``assign``; the other
    queued addresses of that domain are linked by domain and leave the queue too."""
    address = clean_address(address)
    domain = domain_of(address)
    if is_free_mail(domain):
        raise FreeMailDomain(address, domain)
    owned = registrable_domain(domain)
    if owned is None:
        raise UserError(f"{domain} is a public suffix, not a company's domain")
    customer_id, created = ensure_customer(conn, name, [owned])
    result, changed = _assign(conn, address, customer_id, "", plus_addressing)
    same_domain = [
        key
        for key in conn.scalars(select(unmatched_addresses.c.address))
        if owned in domain_and_parents(domain_of(key))
    ]
    by_domain = 0
    for key in same_domain:
        new_links = _link(conn, _record_ids_of(conn, key, plus_addressing), customer_id, "domain")
        changed.update(new_links)
        by_domain += len(new_links)
    result["customer_id"] = customer_id
    result["records_linked"] += by_domain
    result["queue_entries_removed"] += _drop_from_queue(conn, same_domain)
    if created or by_domain:
        audit.record(conn, "create-customer", owned, name=name, **result)
    outbox.emit_records(conn, RECORD_UPDATED, changed)
    return result


def add_exclusion(conn: Connection, entry: str, *, plus_addressing: bool = True) -> dict[str, int]:
    """Exclude an address or @domain from now on and drop its queue entries."""
    entry = normalize_entry(entry)
    exists = conn.scalar(select(exclusions.c.id).where(exclusions.c.entry == entry))
    if exists is None:
        conn.execute(exclusions.insert().values(entry=entry, created_at=datetime.now(UTC)))
    rule = Directory(plus_addressing=plus_addressing)
    rule.exclusions.add(entry, plus_addressing=plus_addressing)
    covered = [
        key
        for key in conn.scalars(select(unmatched_addresses.c.address))
        if rule.exclusions.rule_for(key, key) is not None
    ]
    dropped = _drop_from_queue(conn, covered)
    result = {"added": int(exists is None), "queue_entries_removed": dropped}
    if exists is None or dropped:
        audit.record(conn, "ignore", entry, **result)
    return result


def remove_exclusion(conn: Connection, entry: str) -> bool:
    entry = normalize_entry(entry)
    removed = conn.execute(delete(exclusions).where(exclusions.c.entry == entry)).rowcount > 0
    if removed:
        audit.record(conn, "unignore", entry)
    return removed


def list_exclusions(conn: Connection) -> list[str]:
    return list(conn.scalars(select(exclusions.c.entry).order_by(exclusions.c.entry)))


def normalize_entry(entry: str) -> str:
    entry = entry.strip()
    if entry.startswith("@"):
        domain = entry[1:].lower().strip(".")
        if "." not in domain:
            raise UserError(f"{entry!r} is not an @domain", hint="write it as @acme.com")
        return "@" + domain
    return clean_address(entry)


def set_link(conn: Connection, record_id: int, customer_id: int, *, linked: bool) -> bool:
    """A person's link (kept as ``manual``) or unlink (remembered, so no rule brings it back)."""
    if conn.scalar(select(records.c.id).where(records.c.id == record_id)) is None:
        raise NotFound("record", record_id)
    now = datetime.now(UTC)
    where = (record_customers.c.record_id == record_id) & (
        record_customers.c.customer_id == customer_id
    )
    current = conn.scalar(select(record_customers.c.link).where(where))
    if linked:
        conn.execute(
            delete(record_unlinks).where(
                record_unlinks.c.record_id == record_id, record_unlinks.c.customer_id == customer_id
            )
        )
        if current == "manual":
            return False
        if current is None:
            conn.execute(
                record_customers.insert().values(
                    record_id=record_id, customer_id=customer_id, link="manual"
                )
            )
        else:
            conn.execute(record_customers.update().where(where).values(link="manual"))
        audit.record(conn, "link", f"record {record_id}", customer_id=customer_id)
        outbox.emit_records(conn, RECORD_UPDATED, [record_id])
        return True
    removed = conn.execute(delete(record_customers).where(where)).rowcount
    insert_ignore(
        conn,
        record_unlinks,
        [{"record_id": record_id, "customer_id": customer_id, "created_at": now}],
        ["record_id", "customer_id"],
    )
    if removed:
        audit.record(conn, "unlink", f"record {record_id}", customer_id=customer_id)
        outbox.emit_records(conn, RECORD_UPDATED, [record_id])
    return bool(removed)
