"""Customers, their domains, contacts and their addresses."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, or_, select

from syncd.config import CaptureConfig
from syncd.domain import directory_file
from syncd.domain.addresses import (
    match_key,
)
from syncd.domain.matching import Directory
from syncd.domain.privacy import Suppressions
from syncd.errors import UserError
from syncd.schema.tables import (
    contact_addresses,
    contacts,
    customer_domains,
    customers,
    exclusions,
    settings,
    suppressions,
)
from syncd.store import audit
from syncd.store.errors import NotFound
from syncd.store.sql import insert_ignore

_HMAC_KEY_ROW = "installation_secret"  # the row's name; its value is the key


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    name: str
    archived: bool = False


def load_directory(conn: Connection, capture: CaptureConfig | None = None) -> Directory:
    """Who is who now: contacts, customer domains, and exclusions from the config and the CLI."""
    capture = capture or CaptureConfig()
    directory = Directory(plus_addressing=capture.plus_addressing)
    for entry in [*capture.exclude, *conn.scalars(select(exclusions.c.entry))]:
        directory.exclusions.add(entry, plus_addressing=capture.plus_addressing)
    # Archived customers and contacts (no longer in a mirrored directory file) match nothing
    # new: mail from them is matched as if they were unknown; their history keeps its links.
    rows = conn.execute(
        select(contact_addresses.c.address, contacts.c.id, contacts.c.customer_id)
        .join(contacts, contacts.c.id == contact_addresses.c.contact_id)
        .outerjoin(customers, customers.c.id == contacts.c.customer_id)
        .where(contacts.c.archived_at.is_(None), customers.c.archived_at.is_(None))
    )
    for address, contact_id, customer_id in rows:
        directory.add_contact(address, contact_id, customer_id)
    for address in conn.scalars(
        select(contact_addresses.c.address)
        .join(contacts, contacts.c.id == contact_addresses.c.contact_id)
        .outerjoin(customers, customers.c.id == contacts.c.customer_id)
        .where(or_(contacts.c.archived_at.is_not(None), customers.c.archived_at.is_not(None)))
    ):
        directory.archived_contacts.add(match_key(address, capture.plus_addressing))
    directory.archived_domains.update(
        conn.scalars(
            select(customer_domains.c.domain)
            .join(customers, customers.c.id == customer_domains.c.customer_id)
            .where(customers.c.archived_at.is_not(None))
        )
    )
    for domain, customer_id in conn.execute(
        select(customer_domains.c.domain, customer_domains.c.customer_id)
        .join(customers, customers.c.id == customer_domains.c.customer_id)
        .where(customers.c.archived_at.is_(None))
    ):
        directory.add_domain(domain, customer_id)
    directory.suppressions = load_suppressions(conn)
    return directory


def load_suppressions(conn: Connection) -> Suppressions:
    """The keyed fingerprints of forgotten addresses, with the key that makes them."""
    digests = set(conn.scalars(select(suppressions.c.digest)))
    if not digests:
        return Suppressions()
    secret = conn.scalar(select(settings.c.value).where(settings.c.name == _HMAC_KEY_ROW))
    return Suppressions(digests, bytes.fromhex(secret or ""))


def installation_secret(conn: Connection) -> bytes:
    """This installation's HMAC key, made on first use: random, stored once, never shown.

    Two daemons may race to make it; the insert that loses is ignored and both read the
    one that won.
    """
    query = select(settings.c.value).where(settings.c.name == _HMAC_KEY_ROW)
    value = conn.scalar(query)
    if value is None:
        insert_ignore(
            conn, settings, [{"name": _HMAC_KEY_ROW, "value": secrets.token_hex(32)}], ["name"]
        )
        value = conn.scalar(query)
    return bytes.fromhex(str(value))


def _by_name(conn: Connection, name: str) -> Customer | None:
    """The customer named ``name`` but for case: an active one first, then the exact
    spelling, then the oldest.  Found by SQL's ``lower``, else, for a name beyond ASCII or
    with doubled spaces, by the directory file's ``customer_key`` (SQLite's ``lower`` folds
    ASCII only: "Ørsted", as a CRM export spells it, was not found by its own name, and
    ``customers add`` of it again failed on the unique name)."""
    columns = (customers.c.id, customers.c.name, customers.c.archived_at)
    found = list(
        conn.execute(
            select(*columns).where(
                or_(customers.c.name == name, func.lower(customers.c.name) == name.lower())
            )
        )
    )
    if not found and not (name.isascii() and name == " ".join(name.split())):
        key = directory_file.customer_key(name)
        found = [
            r for r in conn.execute(select(*columns))
            if directory_file.customer_key(r.name) == key
        ]  # fmt: skip
    best = min(found, key=lambda r: (r.archived_at is not None, r.name != name, r.id), default=None)
    return None if best is None else Customer(best.id, best.name, best.archived_at is not None)


def find_customer(conn: Connection, ref: str) -> Customer:
    """A customer by id or by name (case-insensitive); NotFound if none."""
    if "\x00" in ref:
        # No name holds a NUL (PostgreSQL cannot even compare one: a DataError, a 500 at
        # the API), so none is found, on either engine.
        raise NotFound("customer", ref)
    if ref.isdigit() and int(ref) < 2**63:  # beyond: no id, and more than SQLite's integers
        row = conn.execute(
            select(customers.c.id, customers.c.name, customers.c.archived_at).where(
                customers.c.id == int(ref)
            )
        ).first()
        if row is not None:
            return Customer(row.id, row.name, row.archived_at is not None)
    found = _by_name(conn, ref.strip())
    if found is None:
        raise NotFound("customer", ref)
    return found


def active_customer(conn: Connection, ref: str) -> Customer:
    """``find_customer``, refusing an archived one: a new contact there would match nothing."""
    customer = find_customer(conn, ref)
    if customer.archived:
        raise UserError(
            f"customer {customer.name!r} is archived (the directory file no longer lists it)",
            hint="add it back to the directory file (the CRM export), or choose another customer",
        )
    return customer


def clean_domain(domain: str) -> str:
    """A domain a customer can own, normalised (the directory file's rule); UserError if not."""
    try:
        return directory_file.clean_domain(domain)
    except ValueError as err:
        raise UserError(str(err)) from None


def clean_address(address: str) -> str:
    try:
        return directory_file.clean_address(address)
    except ValueError as err:
        raise UserError(str(err)) from None


def ensure_customer(conn: Connection, name: str, domains: list[str]) -> tuple[int, bool]:
    """The id of customer ``name`` with at least ``domains``; True if anything was added."""
    name = name.strip()
    if not name:
        raise UserError("a customer needs a name")
    cleaned = [clean_domain(d) for d in domains if d.strip()]
    changed = False
    row = _by_name(conn, name)
    if row is not None and row.archived:
        # Named by a person: it exists again (until a mirrored directory file says otherwise).
        conn.execute(customers.update().where(customers.c.id == row.id).values(archived_at=None))
        audit.record(conn, "restore", f"customer {name}", customer_id=row.id)
        changed = True
    if row is None:
        customer_id = conn.scalar(
            customers.insert()
            .values(name=name, created_at=datetime.now(UTC))
            .returning(customers.c.id)
        )
        changed = True
    else:
        customer_id = row.id
    have = set(
        conn.scalars(
            select(customer_domains.c.domain).where(customer_domains.c.customer_id == customer_id)
        )
    )
    for domain in cleaned:
        if domain not in have:
            conn.execute(customer_domains.insert().values(customer_id=customer_id, domain=domain))
            have.add(domain)
            changed = True
    return int(customer_id), changed


def ensure_contact(
    conn: Connection, address: str, *, customer_id: int | None, name: str = ""
) -> tuple[int, bool]:
    """The contact owning ``address``, created or moved to ``customer_id``; True if changed."""
    address = clean_address(address)
    row = conn.execute(
        select(contacts.c.id, contacts.c.customer_id, contacts.c.name, contacts.c.archived_at)
        .join(contact_addresses, contact_addresses.c.contact_id == contacts.c.id)
        .where(contact_addresses.c.address == address)
    ).first()
    if row is None:
        # A second address of a person already known at this customer belongs to that
        # contact: unmatched secondary addresses are a top complaint about CRM capture.
        contact_id = None
        if name.strip() and customer_id is not None:
            contact_id = conn.scalar(
                select(contacts.c.id)
                .where(
                    contacts.c.customer_id == customer_id,
                    contacts.c.name == name.strip(),
                    contacts.c.archived_at.is_(None),
                )
                .order_by(contacts.c.id)
                .limit(1)
            )
        if contact_id is None:
            contact_id = conn.scalar(
                contacts.insert()
                .values(customer_id=customer_id, name=name.strip(), created_at=datetime.now(UTC))
                .returning(contacts.c.id)
            )
        conn.execute(contact_addresses.insert().values(contact_id=contact_id, address=address))
        return int(contact_id), True
    updates: dict[str, object] = {}
    if customer_id is not None and row.customer_id != customer_id:
        updates["customer_id"] = customer_id
    if name.strip() and row.name != name.strip():
        updates["name"] = name.strip()
    if row.archived_at is not None:
        updates["archived_at"] = None
        audit.record(conn, "restore", f"contact {address}", contact_id=row.id)
    if updates:
        conn.execute(contacts.update().where(contacts.c.id == row.id).values(**updates))
    return int(row.id), bool(updates)


def list_customers(conn: Connection, *, archived: bool | None = False) -> list[dict[str, object]]:
    """Customers with their domains: active ones (``archived=False``), archived ones
    (True) or all (None)."""
    out: list[dict[str, object]] = []
    domains: dict[int, list[str]] = {}
    for cid, domain in conn.execute(
        select(customer_domains.c.customer_id, customer_domains.c.domain).order_by(
            customer_domains.c.domain
        )
    ):
        domains.setdefault(cid, []).append(domain)
    query = select(customers.c.id, customers.c.name, customers.c.archived_at)
    if archived is not None:
        query = query.where(
            customers.c.archived_at.is_not(None) if archived else customers.c.archived_at.is_(None)
        )
    for row in conn.execute(query.order_by(customers.c.name)):
        out.append(
            {
                "id": row.id,
                "name": row.name,
                "domains": domains.get(row.id, []),
                "archived_at": row.archived_at,
            }
        )
    return out
