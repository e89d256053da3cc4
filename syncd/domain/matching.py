"""Matching participants to contacts and customers.

The rules, in order: an internal address is never matched; a contact address wins;
otherwise the domain of the address (or a parent domain up to the registrable one)
owned by exactly one customer.  Free-mail domains never link by domain, and a
domain owned by two customers links to neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from syncd.domain.addresses import domain_and_parents, domain_of, is_free_mail

LinkKind = Literal["contact", "domain", "manual"]
Reason = Literal["contact", "domain", "free-mail", "ambiguous-domain", "no-match", "internal"]


@dataclass(frozen=True, slots=True)
class Match:
    contact_id: int | None
    customer_id: int | None
    link: LinkKind | None
    reason: Reason
    detail: str = ""


@dataclass(slots=True)
class Directory:
    """A snapshot of who is who: contact addresses and customer domains.

    Built once per sync pass; matching is then dictionary lookups only.
    """

    contacts: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    domains: dict[str, set[int]] = field(default_factory=dict)

    def add_contact(self, address: str, contact_id: int, customer_id: int | None) -> None:
        self.contacts[address] = (contact_id, customer_id)

    def add_domain(self, domain: str, customer_id: int) -> None:
        self.domains.setdefault(domain, set()).add(customer_id)


_INTERNAL = Match(None, None, None, "internal")


def match_address(address: str, directory: Directory, *, external: bool = True) -> Match:
    if not external:
        return _INTERNAL
    contact = directory.contacts.get(address)
    if contact is not None:
        contact_id, customer_id = contact
        return Match(contact_id, customer_id, "contact" if customer_id else None, "contact")
    domain = domain_of(address)
    if is_free_mail(domain):
        return Match(None, None, None, "free-mail", domain)
    for candidate in domain_and_parents(domain):
        owners = directory.domains.get(candidate)
        if not owners:
            continue
        if len(owners) > 1:
            return Match(None, None, None, "ambiguous-domain", candidate)
        return Match(None, next(iter(owners)), "domain", "domain", candidate)
    return Match(None, None, None, "no-match")
