"""Which customer an unknown address probably belongs to, and why.  No I/O.

Evidence, strongest first: the customer of the threads in which our side wrote to the
address; the company named in the display name; the customer's domain under another
suffix or as a subdomain (acme.de for acme.com); threads the address joined only through
its own In-Reply-To/References headers; an ambiguous domain's owners.

Thread headers are written by the sender: anyone can put a customer's Message-ID in
References and so land in that customer's thread.  Only a thread in which one of our reps
wrote to the address is strong evidence; a thread joined by headers alone scores below
what `reconcile accept` applies by default, so that a spoofed header never assigns.
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
    header_thread_customers: Mapping[int, int] | None = None,
    ambiguous_owners: Sequence[int] = (),
) -> list[Suggestion]:
    """Suggestions for ``address``, best first, at most one per customer.

    ``thread_customers``: customer -> links in threads where our side wrote to the address;
    ``header_thread_customers``: the same for threads it joined only by its own headers.
    """
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

    headers_only = dict(header_thread_customers or {})
    if headers_only:
        total = sum(headers_only.values())
        for customer_id, count in headers_only.items():
            offer(
                customer_id,
                round(0.3 + 0.25 * count / total, 2),  # at most 0.55: never auto-assigned
                f"only its own In-Reply-To/References headers put it in {count} thread(s) with "
                f"{by_id[customer_id].name if customer_id in by_id else customer_id}; a sender "
                "can write those, so check before assigning",
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

    owners = ", ".join(sorted(by_id[c].name for c in ambiguous_owners if c in by_id))
    for customer_id in ambiguous_owners:
        offer(customer_id, 0.3, f"{domain} is owned by several customers: {owners}")

    return sorted(found.values(), key=lambda s: (-s.confidence, s.customer))
