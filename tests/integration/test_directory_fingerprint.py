"""A mirror skips the customers whose rows and stored state are what the last mirror applied
(store/directory_fingerprints.py): it must reach exactly what planning the whole file
reaches, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from syncd.domain.directory_file import BadDirectoryFile, RowReader, text_stream
from syncd.schema.tables import contact_addresses, contacts, customers, directory_fingerprints
from syncd.store import directory_fingerprints as fingerprints
from syncd.store.database import open_database
from syncd.store.directory_mirror import load_known, mirror_directory

HEADER = "customer,domains,contact_name,contact_email\n"


def _export(customers_: int = 6, people: int = 3, **changed: str) -> str:
    """``customers_`` customers of ``people`` contacts; ``changed`` replaces rows by their
    address's local part (an empty string drops the row)."""
    rows = []
    for c in range(customers_):
        for p in range(people):
            local = f"p{c}x{p}"
            rows.append(changed.get(local, f"Cust {c},c{c}.com,Person {c}.{p},{local}@c{c}.com\n"))
    return HEADER + "".join(rows)


def _mirror(engine: Any, text: str) -> dict[str, dict[str, int]]:
    done = mirror_directory(
        engine, RowReader(text_stream(text.encode()), "crm.csv"), mirror=True, source="test"
    )
    assert done is not None
    return done.counts


def _skipped(engine: Any, text: str) -> set[str]:
    digests = RowReader(text_stream(text.encode()), "crm.csv").fingerprints()
    assert digests is not None
    with engine.connect() as conn:
        return set(fingerprints.unchanged(conn, digests))


def _shape(engine: Any) -> Counter[tuple[Any, ...]]:
    with engine.connect() as conn:
        known = load_known(conn)
    names = {c.id: c.name for c in known.customers}
    return Counter(
        [("customer", c.name, c.domains, c.archived) for c in known.customers]
        + [
            ("contact", names.get(p.customer_id or 0), p.name, p.addresses, p.archived)
            for p in known.contacts
        ]
    )


@pytest.fixture
def engine(db_url: str) -> Any:
    engine = open_database(db_url)
    yield engine
    engine.dispose()


def test_a_changed_row_is_applied_and_only_its_customer_is_planned(engine: Any) -> None:
    first = _mirror(engine, _export())
    assert first["contacts"]["added"] == 18
    changed = _export(p2x1="Cust 2,c2.com,Renamed,p2x1@c2.com\n")
    assert _skipped(engine, changed) == {f"cust {c}" for c in range(6)} - {"cust 2"}
    counts = _mirror(engine, changed)
    assert counts["contacts"] == {
        "added": 0, "updated": 1, "archived": 0, "restored": 0, "unchanged": 17,
    }  # fmt: skip
    assert counts["customers"]["unchanged"] == 6
    with engine.connect() as conn:
        assert (
            conn.scalar(
                select(contacts.c.name)
                .join(contact_addresses)
                .where(contact_addresses.c.address == "p2x1@c2.com")
            )
            == "Renamed"
        )
    # Applied: the same file again is all skipped, and changes nothing.
    assert len(_skipped(engine, changed)) == 6


def test_a_removed_row_and_a_removed_customer_are_archived(engine: Any) -> None:
    _mirror(engine, _export())
    text = _export(p1x0="", **{f"p5x{p}": "" for p in range(3)})
    counts = _mirror(engine, text)
    assert counts["contacts"]["archived"] == 4 and counts["contacts"]["unchanged"] == 14
    assert counts["customers"]["archived"] == 1 and counts["customers"]["unchanged"] == 5
    with engine.connect() as conn:
        archived = set(
            conn.scalars(
                select(contact_addresses.c.address)
                .join(contacts)
                .where(contacts.c.archived_at.is_not(None))
            )
        )
    assert archived == {"p1x0@c1.com", "p5x0@c5.com", "p5x1@c5.com", "p5x2@c5.com"}


def test_a_hand_edit_of_an_unchanged_customer_is_not_skipped(engine: Any) -> None:
    # The CRM's next change wins over a hand edit, as when the whole file is planned: the
    # customer's rows are the same, but what the store holds for it is not.
    _mirror(engine, _export())
    with engine.begin() as conn:
        conn.execute(
            update(contacts)
            .where(contacts.c.id == select(contact_addresses.c.contact_id)
                   .where(contact_addresses.c.address == "p3x0@c3.com").scalar_subquery())
            .values(name="By hand")
        )  # fmt: skip
        conn.execute(delete(contact_addresses).where(contact_addresses.c.address == "p4x2@c4.com"))
        conn.execute(update(customers).where(customers.c.name == "Cust 1").values(name="CUST 1"))
    changed = _export(p0x0="Cust 0,c0.com,Renamed,p0x0@c0.com\n")
    assert _skipped(engine, changed) == {"cust 2", "cust 5"}
    _mirror(engine, changed)
    reference = open_database("sqlite://")
    _mirror(reference, changed)
    assert _shape(engine) == _shape(reference)
    reference.dispose()


def test_an_address_shared_with_an_unchanged_customer_is_refused_with_its_lines(
    engine: Any,
) -> None:
    _mirror(engine, _export())
    text = _export(p0x0="Cust 0,c0.com,Person 0.0,p3x1@c3.com\n")
    with pytest.raises(BadDirectoryFile) as refused:
        _mirror(engine, text)
    assert refused.value.problems == [
        "line 12: its contact_email is also on line 2 with another customer or contact name"
    ]


def test_skipping_reaches_what_planning_the_whole_file_reaches(engine: Any) -> None:
    # Files in turn, each mirrored into a store that skips and one whose fingerprints are
    # dropped first (the whole file planned): the same directory, the same counts.
    whole = open_database("sqlite://")
    files = [
        _export(),
        _export(p1x1="Cust 1,c1.com;c1.org,Person 1.1,p1x1@c1.com\n"),  # a domain more
        _export(p2x0="Cust 4,c4.com,Person 2.0,p2x0@c2.com\n"),  # a contact moves
        _export(p3x2="Cust 3,c3.com,,p3x2@c3.com\n", p0x1=""),  # a name dropped, a row gone
        _export(customers_=4),  # two customers gone
        _export(customers_=7),  # back, and a new one
        _export(p6x0="cust 6,c6.com,Person 6.0,p6x0@c6.com\n"),  # spelled otherwise
    ]
    for text in files:
        counts = _mirror(engine, text)
        with whole.begin() as conn:
            conn.execute(delete(directory_fingerprints))
        assert _mirror(whole, text) == counts
        assert _shape(engine) == _shape(whole)
    whole.dispose()


def test_forgetting_an_address_drops_its_customers_digest(engine: Any) -> None:
    # The digest covered the address: it goes with it (the next mirror plans the customer).
    from syncd.store.directory import load_directory
    from syncd.store.privacy import forget

    _mirror(engine, _export())
    with engine.begin() as conn:
        forget(conn, "p2x1@c2.com", load_directory(conn))
    with engine.connect() as conn:
        kept = set(conn.scalars(select(directory_fingerprints.c.customer_key)))
    assert kept == {f"cust {c}" for c in range(6)} - {"cust 2"}
    assert _skipped(engine, _export()) == kept


def test_a_customer_deleted_during_a_mirror_gets_no_new_contact(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # New contacts go in without SQLite's per-row foreign key check: the page checks their
    # customers instead, and one deleted since the plan fails it as the key would.
    from sqlalchemy.exc import IntegrityError

    from syncd.errors import StoreError
    from syncd.store import directory_apply

    _mirror(engine, _export(customers_=2, people=1))
    archive = directory_apply.Applier._archive

    def delete_first(applier: Any, *args: Any) -> None:
        with engine.begin() as conn:
            conn.execute(delete(customers).where(customers.c.name == "Cust 0"))
        archive(applier, *args)

    monkeypatch.setattr(directory_apply.Applier, "_archive", delete_first)
    with pytest.raises((StoreError, IntegrityError)):
        _mirror(engine, _export(customers_=2, people=2))
    with engine.connect() as conn:
        ids = set(conn.scalars(select(customers.c.id)))
        owners = set(conn.scalars(select(contacts.c.customer_id)))
    assert owners - {None} <= ids
