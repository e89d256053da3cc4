"""What it takes to make the directory we have say what a directory file says.  No I/O.

``plan(file, known, mirror=...)`` compares the file's customers and contacts with the stored
ones and lists the changes.  Without ``mirror`` it only adds and restores (the additive
import); with ``mirror`` the directory becomes equal to the file:

- a customer or contact the file does not list is *archived*, never deleted: its history
  (record links, participants' contact ids) stays, and so do its domains and addresses, so
  that a later file listing it again *restores* the same row;
- a domain or address the file no longer gives to a customer or contact it does list is
  removed from it (nothing refers to those rows: links are kept on the records);
- an address the file gives to another contact moves there (as ``contacts add`` moves it).

A contact is found by any of its addresses; a new address under the name of a contact the
customer already has joins that contact.  Applying a plan and planning again gives an empty
plan (the tests check it with Hypothesis).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from syncd.domain.directory_file import DirectoryFile, FileContact, customer_key


@dataclass(frozen=True, slots=True)
class KnownCustomer:
    id: int
    name: str
    domains: frozenset[str]
    archived: bool = False


@dataclass(frozen=True, slots=True)
class KnownContact:
    id: int
    customer_id: int | None
    name: str
    addresses: frozenset[str]
    archived: bool = False


@dataclass(frozen=True, slots=True)
class Known:
    customers: tuple[KnownCustomer, ...]
    contacts: tuple[KnownContact, ...]


@dataclass(frozen=True, slots=True)
class CustomerStep:
    id: int | None  # None: a new customer
    key: str  # customer_key of the name
    name: str  # the name it must have
    add_domains: tuple[str, ...] = ()
    remove_domains: tuple[str, ...] = ()
    rename: bool = False
    restore: bool = False


@dataclass(frozen=True, slots=True)
class ContactStep:
    id: int | None  # None: a new contact
    customer_key: str
    customer_id: int | None  # None: the customer is new in this plan (found by its key)
    name: str | None  # None: keep the name it has
    add_addresses: tuple[str, ...] = ()  # new, or moved from the contact holding them
    remove_addresses: tuple[str, ...] = ()
    move: bool = False  # to another customer
    restore: bool = False


@dataclass(frozen=True, slots=True)
class Counts:
    added: int = 0
    updated: int = 0
    archived: int = 0
    restored: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "added": self.added,
            "updated": self.updated,
            "archived": self.archived,
            "restored": self.restored,
            "unchanged": self.unchanged,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    customers: tuple[CustomerStep, ...]  # only the ones that change
    contacts: tuple[ContactStep, ...]
    archive_customers: tuple[int, ...]
    archive_contacts: tuple[int, ...]
    unchanged_customers: int
    unchanged_contacts: int

    @property
    def empty(self) -> bool:
        return not (
            self.customers or self.contacts or self.archive_customers or self.archive_contacts
        )

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            "customers": _counts(
                [(s.id, s.restore) for s in self.customers],
                len(self.archive_customers),
                self.unchanged_customers,
            ).as_dict(),
            "contacts": _counts(
                [(s.id, s.restore) for s in self.contacts],
                len(self.archive_contacts),
                self.unchanged_contacts,
            ).as_dict(),
        }


def _counts(steps: list[tuple[int | None, bool]], archived: int, unchanged: int) -> Counts:
    added = sum(1 for id_, _ in steps if id_ is None)
    restored = sum(1 for id_, restore in steps if id_ is not None and restore)
    return Counts(added, len(steps) - added - restored, archived, restored, unchanged)


def _pick_customers(file: DirectoryFile, known: Known) -> dict[str, KnownCustomer]:
    """The stored customer each file customer is: same name but for case; the exact
    spelling first, then an active one, then the oldest."""
    by_key: dict[str, list[KnownCustomer]] = defaultdict(list)
    for customer in known.customers:
        by_key[customer_key(customer.name)].append(customer)
    picked: dict[str, KnownCustomer] = {}
    for key, wanted in file.customers.items():
        if by_key.get(key):
            picked[key] = min(by_key[key], key=lambda c: (c.name != wanted.name, c.archived, c.id))
    return picked


def _customer_steps(
    file: DirectoryFile, picked: dict[str, KnownCustomer], *, mirror: bool
) -> tuple[list[CustomerStep], int]:
    steps: list[CustomerStep] = []
    unchanged = 0
    for key, wanted in file.customers.items():
        have = picked.get(key)
        if have is None:
            steps.append(CustomerStep(None, key, wanted.name, add_domains=wanted.domains))
            continue
        step = CustomerStep(
            have.id,
            key,
            wanted.name,
            add_domains=tuple(d for d in wanted.domains if d not in have.domains),
            remove_domains=tuple(sorted(have.domains - set(wanted.domains))) if mirror else (),
            rename=have.name != wanted.name,
            restore=have.archived,
        )
        if step.add_domains or step.remove_domains or step.rename or step.restore:
            steps.append(step)
        else:
            unchanged += 1
    return steps, unchanged


def _assign_contacts(
    file: DirectoryFile, known: Known, picked: dict[str, KnownCustomer]
) -> list[KnownContact | None]:
    """The stored contact each file contact is, or None for a new one.  First by address
    (a contact holding one of the file contact's addresses, in file order), then, for file
    contacts with no known address, by name at the same customer; each stored contact is
    taken at most once."""
    owner: dict[str, KnownContact] = {}
    by_name: dict[tuple[int | None, str], list[KnownContact]] = defaultdict(list)
    for contact in sorted(known.contacts, key=lambda c: (c.archived, c.id)):
        for address in contact.addresses:
            owner[address] = contact
        if contact.name:
            by_name[(contact.customer_id, contact.name)].append(contact)
    taken: set[int] = set()
    out: list[KnownContact | None] = []
    for wanted in file.contacts:
        found = next(
            (owner[a] for a in wanted.addresses if a in owner and owner[a].id not in taken),
            None,
        )
        if found is not None:
            taken.add(found.id)
        out.append(found)
    for i, wanted in enumerate(file.contacts):
        customer = picked.get(wanted.customer)
        if out[i] is not None or not wanted.name or customer is None:
            continue
        found = next(
            (c for c in by_name.get((customer.id, wanted.name), []) if c.id not in taken), None
        )
        if found is not None:
            taken.add(found.id)
            out[i] = found
    return out


def _contact_step(
    wanted: FileContact,
    have: KnownContact | None,
    customer_id: int | None,
    in_file: set[str],
    *,
    mirror: bool,
) -> ContactStep | None:
    if have is None:
        return ContactStep(
            None, wanted.customer, customer_id, wanted.name, add_addresses=wanted.addresses
        )
    step = ContactStep(
        have.id,
        wanted.customer,
        customer_id,
        wanted.name if wanted.name and wanted.name != have.name else None,
        add_addresses=tuple(a for a in wanted.addresses if a not in have.addresses),
        # Addresses the file gives to another contact move there; only the rest go.
        remove_addresses=tuple(sorted(have.addresses - in_file)) if mirror else (),
        move=customer_id is None or have.customer_id != customer_id,
        restore=have.archived,
    )
    changed = step.name is not None or step.add_addresses or step.remove_addresses
    return step if changed or step.move or step.restore else None


def plan(file: DirectoryFile, known: Known, *, mirror: bool) -> Plan:
    """The changes that make ``known`` say what ``file`` says (only additions and restores
    unless ``mirror``)."""
    picked = _pick_customers(file, known)
    customer_steps, unchanged_customers = _customer_steps(file, picked, mirror=mirror)
    assigned = _assign_contacts(file, known, picked)
    in_file = {a for wanted in file.contacts for a in wanted.addresses}
    contact_steps: list[ContactStep] = []
    unchanged_contacts = 0
    for wanted, have in zip(file.contacts, assigned, strict=True):
        customer = picked.get(wanted.customer)
        step = _contact_step(
            wanted, have, customer.id if customer else None, in_file, mirror=mirror
        )
        if step is None:
            unchanged_contacts += 1
        else:
            contact_steps.append(step)
    archive_customers: tuple[int, ...] = ()
    archive_contacts: tuple[int, ...] = ()
    if mirror:
        kept = {c.id for c in picked.values()}
        archive_customers = tuple(
            sorted(c.id for c in known.customers if not c.archived and c.id not in kept)
        )
        taken = {c.id for c in assigned if c is not None}
        archive_contacts = tuple(
            sorted(c.id for c in known.contacts if not c.archived and c.id not in taken)
        )
    return Plan(
        tuple(customer_steps),
        tuple(contact_steps),
        archive_customers,
        archive_contacts,
        unchanged_customers,
        unchanged_contacts,
    )


def applied(known: Known, steps: Plan) -> Known:
    """``known`` after ``steps``, in memory: the model the store's writes follow (new ids
    count up from the largest known one).  For tests and dry runs."""
    customers = {c.id: c for c in known.customers}
    next_id = max([0, *customers, *(c.id for c in known.contacts)]) + 1
    ids: dict[str, int] = {}
    for cstep in steps.customers:
        if cstep.id is None:
            ids[cstep.key] = next_id
            customers[next_id] = KnownCustomer(next_id, cstep.name, frozenset(cstep.add_domains))
            next_id += 1
            continue
        ids[cstep.key] = cstep.id
        customer = customers[cstep.id]
        domains = (customer.domains | set(cstep.add_domains)) - set(cstep.remove_domains)
        customers[cstep.id] = KnownCustomer(cstep.id, cstep.name, frozenset(domains))
    for customer_id in steps.archive_customers:
        gone = customers[customer_id]
        customers[customer_id] = KnownCustomer(gone.id, gone.name, gone.domains, archived=True)
    contacts = {c.id: c for c in known.contacts}
    for step in steps.contacts:
        customer_id = step.customer_id if step.customer_id is not None else ids[step.customer_key]
        moving = set(step.add_addresses)
        for other in list(contacts.values()):  # an address moves from whoever holds it
            if other.addresses & moving:
                contacts[other.id] = KnownContact(
                    other.id, other.customer_id, other.name, other.addresses - moving,
                    other.archived,
                )  # fmt: skip
        if step.id is None:
            contacts[next_id] = KnownContact(
                next_id, customer_id, step.name or "", frozenset(step.add_addresses)
            )
            next_id += 1
            continue
        have = contacts[step.id]
        contacts[step.id] = KnownContact(
            step.id,
            customer_id,
            step.name if step.name is not None else have.name,
            (have.addresses | moving) - set(step.remove_addresses),
        )
    for contact_id in steps.archive_contacts:
        have = contacts[contact_id]
        contacts[contact_id] = KnownContact(
            have.id, have.customer_id, have.name, have.addresses, archived=True
        )
    return Known(tuple(customers.values()), tuple(contacts.values()))
