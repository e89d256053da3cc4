"""``records explain``: why each participant is or is not linked, in words."""

from __future__ import annotations

from typing import Any

import click

# One sentence per reason code of syncd.domain.matching; {detail} is the entry that decided.
_SAYS = {
    "contact": "contact match: {detail} is a contact of {customer}",
    "domain": "domain match: {detail} belongs to {customer}",
    "free-mail": "free-mail: {detail} never links by domain; make the person a contact to link it",
    "ambiguous-domain": "ambiguous domain: {detail} is owned by {owners}; assign the address to one",
    "no-match": "no match: no contact has this address and no customer owns its domain",
    "internal": "internal: our own side of the conversation is never linked",
    "excluded": "excluded by the exclusion entry {detail}",
    "suppressed": "forgotten with `syncd forget`: never linked, queued or stored again",
    "archived": "archived: {detail} belonged to a customer or contact the directory file no "
    "longer lists; matched as unknown until a file lists it again",
}


def explanation(participant: dict[str, Any]) -> str:
    return _SAYS[participant["reason"]].format(
        detail=participant["rule"],
        customer=participant["customer"] or "no customer",
        owners=" and ".join(participant["owners"]),
    )


def explain_json(found: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": found["id"],
        "subject": found["subject"],
        "participants": [
            {
                "address": p["address"],
                "role": p["role"],
                "reason": p["reason"],
                "rule": p["rule"],
                "customer_id": p["customer_id"],
                "explanation": explanation(p),
            }
            for p in found["participants"]
        ],
        "links": found["links"],
        "unlinked": found["unlinked"],
    }


def show(found: dict[str, Any]) -> None:
    click.echo(f"record {found['id']}: {found['subject']}")
    for p in found["participants"]:
        click.echo(f"  {p['role']:4} {p['address']}: {explanation(p)}")
    for link in found["links"]:
        click.echo(f"  linked to {link['customer']} ({link['link']})")
    for gone in found["unlinked"]:
        click.echo(f"  unlinked from {gone['customer']} by a person (kept off on every re-sync)")
