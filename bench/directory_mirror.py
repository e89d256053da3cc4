"""Directory import benchmark: a CRM export of N customers with two contacts each, on SQLite.

    .venv/bin/python bench/directory_mirror.py --customers 10000
    .venv/bin/python bench/directory_mirror.py --mirror-url postgresql+psycopg://...  # an empty DB

``--mirror-url`` runs the mirror steps on that database instead of a fresh SQLite file
(PostgreSQL: every statement is a round trip, so per-row writes show there first).

Measures in one run: the reference (the row-by-row import syncd had before mirroring:
`ensure_customer` and `ensure_contact` per row), then `customers import` through the plan
(first import, the same file again, a file without 10 % of the customers, the full file
again), and `load_directory` (what the daemon re-reads after a change).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from syncd.domain.directory_file import parse_directory
from syncd.store.database import open_database
from syncd.store.directory import ensure_contact, ensure_customer, load_directory
from syncd.store.directory_mirror import import_directory


def export(customers: int, skip: int = 0) -> str:
    rows = ["customer,domains,contact_name,contact_email"]
    for i in range(skip, customers):
        rows.append(f"Customer {i},c{i}.com,Person {i},p{i}@c{i}.com")
        rows.append(f"Customer {i},c{i}.com,Other {i},o{i}@c{i}.com")
    return "\n".join(rows) + "\n"


def reference(url: str, text: str) -> float:
    """The pre-mirror import: a customer lookup and a contact lookup per row."""
    engine = open_database(url)
    parsed = parse_directory(text)
    started = time.perf_counter()
    with engine.begin() as conn:
        for contact in parsed.contacts:
            customer = parsed.customers[contact.customer]
            for address in contact.addresses:
                customer_id, _ = ensure_customer(conn, customer.name, list(customer.domains))
                ensure_contact(conn, address, customer_id=customer_id, name=contact.name)
    engine.dispose()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10000)
    parser.add_argument("--mirror-url", help="an empty database for the mirror steps")
    args = parser.parse_args()
    n = args.customers
    root = Path(tempfile.mkdtemp(prefix="syncd-bench-directory-"))
    ref = reference(f"sqlite:///{root / 'ref.db'}", export(n))
    print(f"reference (row by row, the import before mirroring): {ref:.2f} s")
    engine = open_database(args.mirror_url or f"sqlite:///{root / 'mirror.db'}")
    first = None
    for label, text in (
        ("first import", export(n)),
        ("same file again", export(n)),
        ("10 % of customers gone", export(n, n // 10)),
        ("all back", export(n)),
    ):
        started = time.perf_counter()
        cpu = time.process_time()
        parsed = parse_directory(text)
        with engine.begin() as conn:
            done = import_directory(conn, parsed, mirror=True, source="bench")
        took = time.perf_counter() - started
        first = first or took
        print(
            f"{label}: {parsed.rows} rows in {took:.2f} s ({time.process_time() - cpu:.2f} s CPU), "
            f"contacts {done.counts['contacts']}"
        )
    print(f"first import vs reference: {ref / (first or 1):.1f}x faster")
    with engine.connect() as conn:
        started = time.perf_counter()
        load_directory(conn)
        print(f"load_directory: {time.perf_counter() - started:.2f} s")
    engine.dispose()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
