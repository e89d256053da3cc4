"""Which customer an unknown address probably belongs to, and why.  No I/O.

Evidence, strongest first: the customer of the other external people in the same
threads; the company named in the display name; the customer's domain under another
suffix or as a subdomain (acme.de for acme.com); an ambiguous domain's owners.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from syncd.domain.addresses import domain_of, registrable_domain


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    id: int
    name: str
    domains: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Suggestion:
    customer_id: int
    customer: str
    confidence: float
    reason: str


def _label(domain: str) -> str | None:
    """``mail.acme.co.uk`` -> ``acme``: the registrable name without its public suffix."""
    reg = registrable_domain(domain)
    return reg.split(".", 1)[0] if reg else None


def suggest(
    address: str,
    name: str,
    customers: Sequence[CustomerFacts],
    *,
    thread_customers: Mapping[int, int] | None = None,
    ambiguous_owners: Sequence[int] = (),
) -> list[Suggestion]:
    """Suggestions for ``address``, best first, at most one per customer."""
    by_id = {c.id: c for c in customers}
    found: dict[int, Suggestion] = {}

    def offer(customer_id: int, confidence: float, reason: str) -> None:
        customer = by_id.get(customer_id)
        if customer is None:
            return
        current = found.get(customer_id)
        if current is None or confidence > current.confidence:
            found[customer_id] = Suggestion(customer_id, customer.name, confidence, reason)

    threads = dict(thread_customers or {})
    if threads:
        total = sum(threads.values())
        for customer_id, count in threads.items():
            share = count / total
            offer(
                customer_id,
                round(0.5 + 0.45 * share, 2),
                f"in {count} thread(s) with {by_id[customer_id].name if customer_id in by_id else customer_id}",
            )

    lowered = f" {name.lower()} "
    for customer in customers:
        words = customer.name.lower()
        if len(words) >= 3 and re.search(rf"(?<![\w]){re.escape(words)}(?![\w])", lowered):
            offer(customer.id, 0.7, f"display name {name!r} mentions {customer.name}")

    domain = domain_of(address)
    label = _label(domain)
    for customer in customers:
        for owned in customer.domains:
            if owned == domain:
                continue  # the domain itself: a match, or an ambiguity offered below
            if domain.endswith("." + owned) or owned.endswith("." + domain):
                offer(
                    customer.id,
                    0.65,
                    f"{domain} and {owned} ({customer.name}) are one domain family",
                )
            elif label and label == _label(owned) and len(label) >= 3:
                offer(customer.id, 0.6, f"{domain} looks like {owned} ({customer.name})")

    for customer_id in ambiguous_owners:
        offer(customer_id, 0.3, f"{domain} is owned by several customers")

    return sorted(found.values(), key=lambda s: (-s.confidence, s.customer))
