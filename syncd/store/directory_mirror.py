"""A directory file written into the store: the plan of domain/directory_plan.py, in one
transaction, with an audit row for every archive and restore.

``import_directory`` is what `syncd customers import` and the daemon's directory source
call.  It serialises with any other import (an advisory lock on PostgreSQL, the write lock
on SQLite) before it reads the directory, so two daemons sharing one database never apply a
plan made from a state the other just changed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, select, text, update

from syncd.domain.directory_file import DirectoryFile
from syncd.domain.directory_plan import ContactStep, Known, KnownContact, KnownCustomer, Plan, plan
from syncd.errors import UserError
from syncd.schema.tables import (
    contact_addresses,
    contacts,
    customer_domains,
    customers,
    record_customers,
    settings,
)
from syncd.store import audit, outbox
from syncd.store.events import RECORD_UPDATED
from syncd.store.sql import chunks, insert_ignore

# The key of the PostgreSQL advisory lock every directory import holds until it commits.
_DIRECTORY_LOCK = 0x5_9C_D0_14
STATE_ROW = "directory_source"  # settings row: what the directory source last applied


@dataclass(frozen=True, slots=True)
class Imported:
    plan: Plan
    counts: dict[str, dict[str, int]]
    archived_customers: list[str]  # names of the customers this import archived (or would)


class EmptyDirectory(UserError):
    """A mirror of a file listing no customer would archive the whole directory."""


def lock(conn: Connection) -> None:
    """Hold the directory until commit: imports run one at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DIRECTORY_LOCK})
    else:
        # A write takes SQLite's one write lock now, before the reads the plan is made of
        # (a plain read would let another writer commit in between).
        conn.execute(update(settings).where(settings.c.name == STATE_ROW).values(name=STATE_ROW))


def load_known(conn: Connection) -> Known:
    """Every customer and contact, archived ones included, with their domains and addresses."""
    domains: dict[int, set[str]] = defaultdict(set)
    for customer_id, domain in conn.execute(
        select(customer_domains.c.customer_id, customer_domains.c.domain)
    ):
        domains[customer_id].add(domain)
    addresses: dict[int, set[str]] = defaultdict(set)
    for contact_id, address in conn.execute(
        select(contact_addresses.c.contact_id, contact_addresses.c.address)
    ):
        addresses[contact_id].add(address)
    return Known(
        tuple(
            KnownCustomer(r.id, r.name, frozenset(domains[r.id]), r.archived_at is not None)
            for r in conn.execute(select(customers.c.id, customers.c.name, customers.c.archived_at))
        ),
        tuple(
            KnownContact(
                r.id, r.customer_id, r.name, frozenset(addresses[r.id]), r.archived_at is not None
            )
            for r in conn.execute(
                select(
                    contacts.c.id, contacts.c.customer_id, contacts.c.name, contacts.c.archived_at
                )
            )
        ),
    )


def import_directory(
    conn: Connection,
    file: DirectoryFile,
    *,
    mirror: bool,
    source: str,
    allow_empty: bool = False,
    dry_run: bool = False,
) -> Imported:
    """Plan against the stored directory and apply, in the caller's transaction (only
    plan with ``dry_run``)."""
    lock(conn)
    known = load_known(conn)
    if mirror and not allow_empty:
        _refuse_an_emptied_column(file, known, source)
    steps = plan(file, known, mirror=mirror)
    counts = steps.counts()
    names = {c.id: c.name for c in known.customers}
    done = Imported(steps, counts, sorted(names[i] for i in steps.archive_customers))
    if dry_run:
        return done
    apply_plan(conn, steps, known)
    if not steps.empty:
        audit.record(conn, "directory-mirror" if mirror else "directory-import", source, **counts)
    return done


def _refuse_an_emptied_column(file: DirectoryFile, known: Known, source: str) -> None:
    """A file listing no customers, giving no customer a domain, or listing no contacts
    while the directory has them is far more often a failed export (an empty file, a
    column the CRM renamed) than a CRM that lost them all: mirroring it would archive every
    customer or contact, or delete every domain, at once."""
    active = [c for c in known.customers if not c.archived]
    contacts = sum(1 for c in known.contacts if not c.archived)
    with_domains = sum(1 for c in active if c.domains)
    problem = None
    if file.empty and active:
        problem = f"lists no customers: mirroring it would archive all {len(active)} customers"
    elif with_domains and not any(c.domains for c in file.customers.values()):
        problem = (
            f"gives no customer a domain: mirroring it would remove the domains of all "
            f"{with_domains} customers that have one"
        )
    elif contacts and not file.contacts:
        problem = f"lists no contacts: mirroring it would archive all {contacts} contacts"
    if problem is not None:
        raise EmptyDirectory(
            f"{source} {problem}",
            hint="a CRM export with an empty column is usually a failed export; if you really "
            "mean it, pass --allow-empty ([directory] allow_empty = true)",
        )


def _insert_returning_ids(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` in bulk; their new ids, in the order of ``rows``."""
    if not rows:
        return []
    inserted = conn.execute(
        table.insert().returning(table.c.id, sort_by_parameter_order=True), rows
    )
    return [int(i) for i in inserted.scalars()]


def apply_plan(conn: Connection, steps: Plan, known: Known) -> None:
    """Write ``steps`` (made from ``known``, the state this transaction read).  New rows go
    in bulk: a first import of a CRM with tens of thousands of contacts is one statement per
    table, not one per row."""
    now = datetime.now(UTC)
    names = {c.id: c.name for c in known.customers}
    addresses = {c.id: sorted(c.addresses) for c in known.contacts}
    new = [s for s in steps.customers if s.id is None]
    new_ids = _insert_returning_ids(
        conn, customers, [{"name": s.name, "created_at": now} for s in new]
    )
    ids = {s.key: i for s, i in zip(new, new_ids, strict=True)}
    domains: list[dict[str, Any]] = []
    trail: list[tuple[str, str, dict[str, Any]]] = []  # audit rows, written in one go
    restored: list[int] = []
    renamed: list[int] = []
    for step in steps.customers:
        customer_id = ids.setdefault(step.key, step.id or 0)
        domains += [{"customer_id": customer_id, "domain": d} for d in step.add_domains]
        if step.id is None:
            continue
        if step.restore:
            restored.append(customer_id)
            trail.append(("restore", f"customer {step.name}", {"customer_id": customer_id}))
        if step.rename:
            # Same customer (its name differs but for case or spacing): the CRM's spelling
            # wins, and the change is on record like an archive.
            trail.append(
                (
                    "rename",
                    f"customer {names[customer_id]} -> {step.name}",
                    {"customer_id": customer_id},
                )
            )
            conn.execute(
                customers.update().where(customers.c.id == customer_id).values(name=step.name)
            )
            renamed.append(customer_id)
        if step.remove_domains:
            conn.execute(
                delete(customer_domains).where(
                    customer_domains.c.customer_id == customer_id,
                    customer_domains.c.domain.in_(step.remove_domains),
                )
            )
    insert_ignore(conn, customer_domains, domains, ["customer_id", "domain"])
    _set_archived(conn, customers, restored, None)
    _set_archived(conn, customers, steps.archive_customers, now)
    trail += [
        ("archive", f"customer {names[i]}", {"customer_id": i}) for i in steps.archive_customers
    ]
    trail += _apply_contacts(conn, steps.contacts, ids, now, addresses)
    _set_archived(conn, contacts, steps.archive_contacts, now)
    trail += [
        ("archive", f"contact {(addresses.get(i) or [f'#{i}'])[0]}", {"contact_id": i})
        for i in steps.archive_contacts
    ]
    audit.record_many(conn, trail)
    _announce_renames(conn, renamed)


def _announce_renames(conn: Connection, renamed: list[int]) -> None:
    """A renamed customer changes the data of every record linked to it: ``record.updated``
    for each, last in the transaction like every event.  Archive and restore change no
    record (links are kept), so they announce nothing."""
    linked: set[int] = set()
    for part in chunks(renamed):
        linked.update(
            conn.execute(
                select(record_customers.c.record_id).where(record_customers.c.customer_id.in_(part))
            ).scalars()
        )
    if linked:
        outbox.emit_records(conn, RECORD_UPDATED, sorted(linked))


def _set_archived(conn: Connection, table: Any, ids: Sequence[int], value: datetime | None) -> None:
    """Archive (``value``: now) or restore (None) the rows ``ids``, a chunk a statement."""
    for part in chunks(list(ids)):
        conn.execute(table.update().where(table.c.id.in_(part)).values(archived_at=value))


def _apply_contacts(
    conn: Connection,
    steps: tuple[ContactStep, ...],
    ids: dict[str, int],
    now: datetime,
    addresses: dict[int, list[str]],
) -> list[tuple[str, str, dict[str, Any]]]:
    """Write the contact steps; the audit rows of the restores."""

    def customer_of(step: ContactStep) -> int:
        return step.customer_id if step.customer_id is not None else ids[step.customer_key]

    new = [s for s in steps if s.id is None]
    new_ids = _insert_returning_ids(
        conn,
        contacts,
        [{"customer_id": customer_of(s), "name": s.name or "", "created_at": now} for s in new],
    )
    owner: dict[str, int] = {}  # address -> the contact it must belong to
    trail: list[tuple[str, str, dict[str, Any]]] = []
    restored: list[int] = []
    for step, contact_id in zip(new, new_ids, strict=True):
        owner.update(dict.fromkeys(step.add_addresses, contact_id))
    for step in steps:
        if step.id is None:
            continue
        contact_id = step.id
        owner.update(dict.fromkeys(step.add_addresses, contact_id))
        values: dict[str, Any] = {"customer_id": customer_of(step)} if step.move else {}
        if step.name is not None:
            values["name"] = step.name
        if step.restore:
            restored.append(contact_id)
            first = [*addresses.get(contact_id, []), *step.add_addresses, f"#{contact_id}"][0]
            trail.append(("restore", f"contact {first}", {"contact_id": contact_id}))
        if values:
            conn.execute(contacts.update().where(contacts.c.id == contact_id).values(values))
        if step.remove_addresses:
            conn.execute(
                delete(contact_addresses).where(
                    contact_addresses.c.contact_id == contact_id,
                    contact_addresses.c.address.in_(step.remove_addresses),
                )
            )
    # An address another contact holds moves here; the rest are new.
    wanted = sorted(owner)
    for part in chunks(wanted):
        for address, holder in conn.execute(
            select(contact_addresses.c.address, contact_addresses.c.contact_id).where(
                contact_addresses.c.address.in_(part)
            )
        ):
            if holder != owner[address]:
                conn.execute(
                    contact_addresses.update()
                    .where(contact_addresses.c.address == address)
                    .values(contact_id=owner[address])
                )
    insert_ignore(
        conn,
        contact_addresses,
        [{"contact_id": owner[a], "address": a} for a in wanted],
        ["address"],
    )
    _set_archived(conn, contacts, restored, None)
    return trail


# --- the directory source's last application (for the daemon and `syncd status`) ---------


def applied_state(conn: Connection) -> dict[str, Any]:
    """What the directory source last applied: fingerprint, counts, applied_at, source."""
    value = conn.scalar(select(settings.c.value).where(settings.c.name == STATE_ROW))
    return dict(json.loads(value)) if value else {}


def save_applied_state(conn: Connection, state: dict[str, Any]) -> None:
    value = json.dumps(state, sort_keys=True, default=str)
    if conn.scalar(select(settings.c.name).where(settings.c.name == STATE_ROW)) is None:
        conn.execute(settings.insert().values(name=STATE_ROW, value=value))
    else:
        conn.execute(settings.update().where(settings.c.name == STATE_ROW).values(value=value))
