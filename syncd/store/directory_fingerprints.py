"""Per customer, what the last directory mirror applied: a mirror of a large CRM export with
a few changed rows works on those customers only.

A customer of the file is *unchanged* when its rows are the text the last mirror applied
(``rows_digest``, by ``RowReader.fingerprints``) and what the store holds for it is still
what those rows say (``state_digest``, by the function of that name: its name, domains, active
contacts and their addresses, read from the store each time).  A customer edited by hand
since, or left half-written by an interrupted mirror, is therefore planned again like any
other.  What crosses customers is checked on the rows that are planned: an address they
share with an unchanged customer makes the mirror plan the whole file (which reports it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, delete, select

from syncd.domain.directory_file import state_digest
from syncd.schema.tables import contact_addresses, contacts, directory_fingerprints
from syncd.store.directory_stage import StagedPlan
from syncd.store.sql import chunks, insert_rows

_FETCH = 10_000

Skipped = dict[str, tuple[int, int, int]]  # key -> (customer id, contacts, domains)


def _cursor_rows(conn: Connection, query: str) -> Iterator[tuple[Any, ...]]:
    """``query``'s rows straight from the driver (a server-side cursor on PostgreSQL)."""
    driver: Any = conn.connection.driver_connection
    named = conn.dialect.name == "postgresql"
    cursor = driver.cursor(name="syncd_fingerprints") if named else driver.cursor()
    try:
        cursor.execute(query)
        while part := cursor.fetchmany(_FETCH):
            yield from part
    finally:
        cursor.close()


def unchanged(conn: Connection, digests: dict[str, str]) -> Skipped:
    """The customers of a file whose rows have ``digests`` that the mirror can skip."""
    candidates: dict[int, tuple[str, str, int, int]] = {}
    for key, id_, rows, state, contacts_, domains in conn.execute(
        select(
            directory_fingerprints.c.customer_key,
            directory_fingerprints.c.customer_id,
            directory_fingerprints.c.rows_digest,
            directory_fingerprints.c.state_digest,
            directory_fingerprints.c.contacts,
            directory_fingerprints.c.domains,
        )
    ):
        if digests.get(key) == rows:
            candidates[id_] = (key, state, contacts_, domains)
    if not candidates:
        return {}
    names = {
        id_: name
        for id_, name, archived in _cursor_rows(
            conn, "SELECT id, name, archived_at IS NOT NULL FROM customers"
        )
        if id_ in candidates and not archived
    }
    domains_of: dict[int, list[str]] = {}
    for id_, domain in _cursor_rows(conn, "SELECT customer_id, domain FROM customer_domains"):
        if id_ in names:
            domains_of.setdefault(id_, []).append(domain)
    found: Skipped = {}
    sqlite = conn.dialect.name != "postgresql"
    join, sep = ("group_concat", "char") if sqlite else ("string_agg", "chr")
    settled: set[int] = set()
    # Each customer's active contacts joined in SQL, a row a customer (as ``_expected``
    # reads the plan's): a million contacts are not a million rows through Python.
    for customer_id, people in _cursor_rows(
        conn,
        f"SELECT customer_id, {join}(person, {sep}(30)) FROM (SELECT c.customer_id, "
        f"c.name || {sep}(29) || coalesce({join}(a.address, {sep}(31)), '') AS person "
        "FROM contacts c LEFT JOIN contact_addresses a ON a.contact_id = c.id "
        "WHERE c.archived_at IS NULL AND c.customer_id IS NOT NULL GROUP BY c.id, c.customer_id, "
        "c.name) AS p GROUP BY customer_id",
    ):
        if customer_id in names:
            settled.add(customer_id)
            _settle(found, candidates[customer_id], customer_id, names, domains_of, people)
    for id_ in names.keys() - settled:  # no active contact
        _settle(found, candidates[id_], id_, names, domains_of, None)
    return found


def _settle(
    found: Skipped,
    candidate: tuple[str, str, int, int],
    id_: int,
    names: dict[int, str],
    domains_of: dict[int, list[str]],
    people: str | None,
) -> None:
    key, state, contacts_, domains = candidate
    joined = "\x1f".join(sorted(domains_of.get(id_, ())))
    if state_digest(names[id_], joined, _people(people)) == state:
        found[key] = (id_, contacts_, domains)


def _people(joined: str | None) -> list[str]:
    """Contacts joined as ``name \x1d addresses`` (``\x1f`` between), ``\x1e`` between
    them, as ``state_digest`` takes them: each one's addresses sorted."""
    if not joined:
        return []
    found = joined.split("\x1e")
    if "\x1f" in joined:  # a contact with several addresses
        for i, person in enumerate(found):
            contact, _, addresses = person.partition("\x1d")
            found[i] = f"{contact}\x1d{chr(31).join(sorted(addresses.split(chr(31))))}"
    return found


def shared_addresses(conn: Connection, staged: StagedPlan, skipped: Skipped) -> bool:
    """Whether a planned row gives an address an unchanged customer's contact holds (the
    file then gives it to two contacts: the whole file is planned, which says where)."""
    ids = {id_ for id_, _, _ in skipped.values()}
    for part in staged.rows("SELECT DISTINCT address FROM f_rows", size=500):
        for _address, customer_id in conn.execute(
            select(contact_addresses.c.address, contacts.c.customer_id)
            .join(contacts, contacts.c.id == contact_addresses.c.contact_id)
            .where(contact_addresses.c.address.in_([a for (a,) in part]))
            .where(contacts.c.archived_at.is_(None))
        ):
            if customer_id in ids:
                return True
    return False


def _expected(staged: StagedPlan) -> Iterator[tuple[str, int, str, int, int]]:
    """(key, customer id, state digest, contacts, domains) of every planned customer, as
    the applied plan leaves it.  Joined in SQL, a row a customer: its domains, and its
    contacts each as name, ``\x1d``, addresses (``\x1f`` between them), ``\x1e`` between
    contacts; only their order is settled here (``\x1d`` sorts before any character of a
    name, so sorting these strings sorts the contacts by name, then addresses)."""
    for part in staged.rows(
        "SELECT c.ckey, c.name, coalesce(c.picked, c.new_id), (SELECT group_concat(d.domain, "
        "char(31)) FROM f_domains d WHERE d.ckey = c.ckey), p.people, p.n "
        "FROM f_customers c LEFT JOIN (SELECT ckey, group_concat(person, char(30)) AS people, "
        "count(*) AS n FROM (SELECT f.ckey, f.name || char(29) || group_concat(a.address, "
        "char(31)) AS person FROM f_contacts f JOIN f_addresses a ON a.contact = f.id "
        "GROUP BY f.id) GROUP BY ckey) p ON p.ckey = c.ckey "
        "WHERE c.ckey NOT IN (SELECT ckey FROM s_skip)"
    ):
        for key, name, id_, domains, people, count in part:
            found = _people(people)
            if not domains:
                domains, mine = "", 0
            elif "\x1f" in domains:
                listed = sorted(domains.split("\x1f"))
                domains, mine = "\x1f".join(listed), len(listed)
            else:
                mine = 1
            yield key, int(id_), state_digest(name, domains, found), int(count or 0), mine


def remember(
    begin: Callable[[], AbstractContextManager[Connection]],
    staged: StagedPlan,
    digests: dict[str, str],
    batch: int,
) -> None:
    """Store the fingerprint of every planned customer of an applied mirror, in transactions
    of ``batch`` rows, and forget those of customers the file no longer lists."""
    rows: list[tuple[str, int, str, str, int, int]] = []
    expected = _expected(staged)
    while True:
        # Read a batch whole first: the scratch cursors must not straddle a write elsewhere.
        for key, id_, state, contacts_, domains in expected:
            rows.append((key, id_, digests[key], state, contacts_, domains))
            if len(rows) >= batch:
                break
        if not rows:
            break
        with begin() as conn:
            insert_rows(
                conn,
                "INSERT INTO directory_fingerprints (customer_key, customer_id, rows_digest, "
                "state_digest, contacts, domains) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (customer_key) DO UPDATE SET customer_id = excluded.customer_id, "
                "rows_digest = excluded.rows_digest, state_digest = excluded.state_digest, "
                "contacts = excluded.contacts, domains = excluded.domains",
                rows,
                "text,bigint,text,text,bigint,bigint",
            )
        rows.clear()
    with begin() as conn:
        gone = [
            key
            for (key,) in _cursor_rows(conn, "SELECT customer_key FROM directory_fingerprints")
            if key not in digests
        ]
    for part in chunks(gone, batch):
        with begin() as conn:
            conn.execute(
                delete(directory_fingerprints).where(
                    directory_fingerprints.c.customer_key.in_(list(part))
                )
            )
