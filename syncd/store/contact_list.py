"""Contacts with their addresses and customer, for ``contacts list`` and the API."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, select

from syncd.schema.tables import contact_addresses, contacts, customers


def list_contacts(
    conn: Connection, *, customer_id: int | None = None, ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """Contacts by id, each with its addresses (sorted) and its customer's id and name."""
    query = (
        select(
            contacts.c.id, contacts.c.name, contacts.c.customer_id,
            customers.c.name.label("customer"), contacts.c.archived_at,
        )
        .select_from(contacts.outerjoin(customers, customers.c.id == contacts.c.customer_id))
        .order_by(contacts.c.id)
    )  # fmt: skip
    if customer_id is not None:
        query = query.where(contacts.c.customer_id == customer_id)
    if ids is not None:
        query = query.where(contacts.c.id.in_(ids))
    rows = [dict(row) for row in conn.execute(query).mappings()]
    wanted = [row["id"] for row in rows]
    addresses: dict[int, list[str]] = defaultdict(list)
    if wanted:
        found = select(contact_addresses.c.contact_id, contact_addresses.c.address).order_by(
            contact_addresses.c.address
        )
        if customer_id is not None or ids is not None:
            found = found.where(contact_addresses.c.contact_id.in_(wanted))
        for contact_id, address in conn.execute(found):
            addresses[contact_id].append(address)
    for row in rows:
        row["addresses"] = addresses.get(row["id"], [])
    return rows
