"""Why each participant of a record is, or is not, linked to a customer.

The facts only: the reason code and the entry that decided, with the customers' names;
the CLI words them (syncd/cli/present/explain.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from syncd.domain.matching import Directory, match_address
from syncd.schema.tables import customers, participants, record_customers, record_unlinks, records
from syncd.store.errors import NotFound


def _names(conn: Connection) -> dict[int, str]:
    return {cid: name for cid, name in conn.execute(select(customers.c.id, customers.c.name))}


def explain(conn: Connection, record_id: int, directory: Directory) -> dict[str, Any]:
    """The record's participants with their match (``reason``, ``rule``, ``customer``, and
    the ``owners`` of an ambiguous domain), its links and a person's unlinks."""
    row = conn.execute(select(records).where(records.c.id == record_id)).mappings().first()
    if row is None:
        raise NotFound("record", record_id)
    names = _names(conn)
    people = []
    for p in conn.execute(
        select(participants)
        .where(participants.c.record_id == record_id)
        .order_by(participants.c.id)
    ).mappings():
        match = match_address(p["address"], directory, external=bool(p["external"]))
        people.append(
            {
                "address": p["address"],
                "role": p["role"],
                "reason": match.reason,
                "rule": match.detail,
                "customer_id": match.customer_id,
                "customer": names.get(match.customer_id) if match.customer_id else None,
                "owners": [names.get(c, str(c)) for c in match.suggestions],
            }
        )
    links = [
        {"customer_id": cid, "customer": names.get(cid, str(cid)), "link": link}
        for cid, link in conn.execute(
            select(record_customers.c.customer_id, record_customers.c.link).where(
                record_customers.c.record_id == record_id
            )
        )
    ]
    unlinked = [
        {"customer_id": cid, "customer": names.get(cid, str(cid))}
        for cid in conn.scalars(
            select(record_unlinks.c.customer_id).where(record_unlinks.c.record_id == record_id)
        )
    ]
    return {
        "id": record_id,
        "subject": row["subject"],
        "participants": people,
        "links": links,
        "unlinked": unlinked,
    }
