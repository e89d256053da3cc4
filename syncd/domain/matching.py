"""Matching participants to contacts and customers.

The rules, in order: an internal address is never matched; an excluded address or
domain is never matched; a contact address wins (compared by match key, so
plus-addressing and Gmail dots do not hide a contact); otherwise the domain of the
address, or a parent domain up to the registrable one, owned by exactly one
customer.  Free-mail domains never link by domain, and a domain owned by two
customers links to neither: it goes to review with both as suggestions.

Before all of these, an address someone asked syncd to forget is *suppressed*: it is
recognised by its keyed fingerprint only, never stored again, and mail or meetings whose
only external party is suppressed are not kept at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from syncd.domain.addresses import domain_and_parents, domain_of, is_free_mail, match_key
from syncd.domain.privacy import Suppressions

LinkKind = Literal["contact", "domain", "manual"]
_P = TypeVar("_P")


class _External(Protocol):
    @property
    def external(self) -> bool: ...


Reason = Literal[
    "contact",
    "domain",
    "free-mail",
    "ambiguous-domain",
    "no-match",
    "internal",
    "excluded",
    "suppressed",
    "archived",  # no match now, but an archived contact or customer had it: queued as unknown
]


@dataclass(frozen=True, slots=True)
class Match:
    contact_id: int | None
    customer_id: int | None
    link: LinkKind | None
    reason: Reason
    detail: str = ""  # the entry that decided: the contact address, the domain, the exclusion
    suggestions: tuple[int, ...] = ()  # customers to review, for an ambiguous domain

    @property
    def queued(self) -> bool:
        """Whether the address belongs in the reconciliation queue."""
        return self.customer_id is None and self.reason not in (
            "internal",
            "excluded",
            "suppressed",
        )


@dataclass(slots=True)
class Exclusions:
    """Addresses and ``@domains`` (subdomains included) never linked, queued or captured alone."""

    addresses: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)

    def add(self, entry: str, *, plus_addressing: bool = True) -> None:
        entry = entry.strip().lower()
        if entry.startswith("@"):
            self.domains.add(entry[1:])
        else:
            self.addresses.add(match_key(entry, plus_addressing))

    def rule_for(self, address: str, key: str) -> str | None:
        """The exclusion entry that covers ``address``, or None."""
        if key in self.addresses:
            return key
        domain = domain_of(address)
        while True:
            if domain in self.domains:
                return f"@{domain}"
            if "." not in domain:
                return None
            domain = domain.split(".", 1)[1]


@dataclass(slots=True)
class Directory:
    """A snapshot of who is who: contact addresses, customer domains and exclusions.

    Built once per sync pass; matching is then dictionary lookups only.
    """

    contacts: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    domains: dict[str, set[int]] = field(default_factory=dict)
    exclusions: Exclusions = field(default_factory=Exclusions)
    plus_addressing: bool = True
    suppressions: Suppressions = field(default_factory=Suppressions)
    # Match keys and domains of archived contacts and customers: they link nothing, and an
    # address that matches nothing else is explained by them ("archived", not "no-match").
    archived_contacts: set[str] = field(default_factory=set)
    archived_domains: set[str] = field(default_factory=set)

    def add_contact(self, address: str, contact_id: int, customer_id: int | None) -> None:
        self.contacts[match_key(address, self.plus_addressing)] = (contact_id, customer_id)

    def add_domain(self, domain: str, customer_id: int) -> None:
        self.domains.setdefault(domain, set()).add(customer_id)


_INTERNAL = Match(None, None, None, "internal")


_SILENT = ("excluded", "suppressed")
_SUPPRESSED = Match(None, None, None, "suppressed")


def only_excluded(matched: Iterable[tuple[_External, Match]]) -> bool:
    """Whether every external party is excluded or forgotten: such mail or meetings are not
    kept at all."""
    return all(m.reason in _SILENT for p, m in matched if p.external)


def without_suppressed(matched: Iterable[tuple[_P, Match]]) -> list[tuple[_P, Match]]:
    """The participants to store: a forgotten address is never written again."""
    return [(p, m) for p, m in matched if m.reason != "suppressed"]


def match_address(address: str, directory: Directory, *, external: bool = True) -> Match:
    if not external:
        return _INTERNAL
    key = match_key(address, directory.plus_addressing)
    if directory.suppressions.covers(key):
        return _SUPPRESSED
    excluded = directory.exclusions.rule_for(address, key)
    if excluded is not None:
        return Match(None, None, None, "excluded", excluded)
    contact = directory.contacts.get(key)
    if contact is not None:
        contact_id, customer_id = contact
        return Match(contact_id, customer_id, "contact" if customer_id else None, "contact", key)
    domain = domain_of(address)
    if is_free_mail(domain):
        return _archived(key, (), directory) or Match(None, None, None, "free-mail", domain)
    parents = domain_and_parents(domain)
    for candidate in parents:
        owners = directory.domains.get(candidate)
        if not owners:
            continue
        if len(owners) > 1:
            return Match(None, None, None, "ambiguous-domain", candidate, tuple(sorted(owners)))
        return Match(None, next(iter(owners)), "domain", "domain", candidate)
    return _archived(key, parents, directory) or Match(None, None, None, "no-match")


def _archived(key: str, domains: Iterable[str], directory: Directory) -> Match | None:
    """Why nothing matched, when an archived contact or customer would have."""
    if key in directory.archived_contacts:
        return Match(None, None, None, "archived", key)
    for domain in domains:
        if domain in directory.archived_domains:
            return Match(None, None, None, "archived", f"@{domain}")
    return None
