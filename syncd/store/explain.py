"""Why each participant of a record is, or is not, linked to a customer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from syncd.domain.matching import Directory, Match, match_address
from syncd.errors import UserError
from syncd.schema.tables import customers, participants, record_customers, record_unlinks, records

_SAYS = {
    "contact": "contact match: {detail} is a contact of {customer}",
    "domain": "domain match: {detail} belongs to {customer}",
    "free-mail": "free-mail: {detail} never links by domain; make the person a contact to link it",
    "ambiguous-domain": "ambiguous domain: {detail} is owned by {owners}; assign the address to one",
    "no-match": "no match: no contact has this address and no customer owns its domain",
    "internal": "internal: our own side of the conversation is never linked",
    "excluded": "excluded by the exclusion entry {detail}",
    "suppressed": "forgotten with `syncd forget`: never linked, queued or stored again",
}


def _names(conn: Connection) -> dict[int, str]:
    return {cid: name for cid, name in conn.execute(select(customers.c.id, customers.c.name))}


def describe(match: Match, names: dict[int, str]) -> str:
    customer = names.get(match.customer_id, "no customer") if match.customer_id else "no customer"
    owners = " and ".join(names.get(c, str(c)) for c in match.suggestions)
    return _SAYS[match.reason].format(detail=match.detail, customer=customer, owners=owners)


def explain(conn: Connection, record_id: int, directory: Directory) -> dict[str, Any]:
    row = conn.execute(select(records).where(records.c.id == record_id)).mappings().first()
    if row is None:
        raise UserError(f"no record {record_id}", hint="`syncd records list` shows record ids")
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
                "explanation": describe(match, names),
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
