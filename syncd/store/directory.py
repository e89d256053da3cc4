"""Customers, their domains, contacts and their addresses."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select

from syncd.config import CaptureConfig
from syncd.domain.addresses import normalize_address, normalize_domain, registrable_domain
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
from syncd.store.errors import NotFound
from syncd.store.sql import insert_ignore

_HMAC_KEY_ROW = "installation_secret"  # the row's name; its value is the key


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    name: str


def load_directory(conn: Connection, capture: CaptureConfig | None = None) -> Directory:
    """Who is who now: contacts, customer domains, and exclusions from the config and the CLI."""
    capture = capture or CaptureConfig()
    directory = Directory(plus_addressing=capture.plus_addressing)
    for entry in [*capture.exclude, *conn.scalars(select(exclusions.c.entry))]:
        directory.exclusions.add(entry, plus_addressing=capture.plus_addressing)
    rows = conn.execute(
        select(contact_addresses.c.address, contacts.c.id, contacts.c.customer_id).join(
            contacts, contacts.c.id == contact_addresses.c.contact_id
        )
    )
    for address, contact_id, customer_id in rows:
        directory.add_contact(address, contact_id, customer_id)
    for domain, customer_id in conn.execute(
        select(customer_domains.c.domain, customer_domains.c.customer_id)
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


def find_customer(conn: Connection, ref: str) -> Customer:
    """A customer by id or by name (case-insensitive); NotFound if none."""
    row = None
    if ref.isdigit():
        row = conn.execute(
            select(customers.c.id, customers.c.name).where(customers.c.id == int(ref))
        ).first()
    if row is None:
        row = conn.execute(
            select(customers.c.id, customers.c.name).where(
                func.lower(customers.c.name) == ref.lower()
            )
        ).first()
    if row is None:
        raise NotFound("customer", ref)
    return Customer(row.id, row.name)


def clean_domain(domain: str) -> str:
    value = normalize_domain(domain.strip().lstrip("@"))
    if not value or registrable_domain(value) is None:
        raise UserError(
            f"{domain!r} is not a domain a customer can own (a public suffix such as co.uk is not)",
            hint="give the customer's own domain, e.g. acme.co.uk",
        )
    return value


def clean_address(address: str) -> str:
    value = normalize_address(address)
    if value is None:
        raise UserError(f"{address!r} is not an email address")
    return value


def ensure_customer(conn: Connection, name: str, domains: list[str]) -> tuple[int, bool]:
    """The id of customer ``name`` with at least ``domains``; True if anything was added."""
    name = name.strip()
    if not name:
        raise UserError("a customer needs a name")
    cleaned = [clean_domain(d) for d in domains if d.strip()]
    changed = False
    row = conn.execute(
        select(customers.c.id).where(func.lower(customers.c.name) == name.lower())
    ).first()
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
        select(contacts.c.id, contacts.c.customer_id, contacts.c.name)
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
                .where(contacts.c.customer_id == customer_id, contacts.c.name == name.strip())
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
    if updates:
        conn.execute(contacts.update().where(contacts.c.id == row.id).values(**updates))
    return int(row.id), bool(updates)


def list_customers(conn: Connection) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    domains: dict[int, list[str]] = {}
    for cid, domain in conn.execute(
        select(customer_domains.c.customer_id, customer_domains.c.domain).order_by(
            customer_domains.c.domain
        )
    ):
        domains.setdefault(cid, []).append(domain)
    for row in conn.execute(select(customers.c.id, customers.c.name).order_by(customers.c.name)):
        out.append({"id": row.id, "name": row.name, "domains": domains.get(row.id, [])})
    return out
