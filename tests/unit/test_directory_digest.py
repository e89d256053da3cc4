"""A customer's digest (``RowReader.fingerprints``) is hashed in pieces as its rows are read:
the pieces must not change the digest, and a customer of many rows must not be held whole."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest

from syncd.domain.directory_file import RowReader, customer_key, text_stream

HEADER = "customer,domains,contact_name,contact_email\n"


def _rows(customer: str, count: int, start: int = 0) -> list[str]:
    return [f"{customer},c.com,Person {i},p{i}@c.com\n" for i in range(start, start + count)]


def _expected(rows: list[str]) -> dict[str, str]:
    """The digest by its definition: each customer's rows, a row at a time, in file order."""
    digests: dict[str, hashlib.blake2b] = {}
    for row in rows:
        fields = row.rstrip("\n").split(",")
        digest = digests.setdefault(customer_key(fields[0]), hashlib.blake2b(digest_size=16))
        digest.update(("\x1f".join(fields) + "\n").encode())
    return {key: digest.hexdigest() for key, digest in digests.items()}


@pytest.mark.parametrize("size", [1, 999, 1000, 1001, 1999, 2000, 2001, 3500])
def test_digest_does_not_depend_on_where_a_run_is_cut(size: int) -> None:
    # A long run, a short one, the long customer again (its digest goes on), then another.
    rows = [
        *_rows("Big", size),
        *_rows("Small", 3),
        *_rows("big", size, start=size),
        *_rows("Last", size),
    ]
    reader = RowReader(text_stream((HEADER + "".join(rows)).encode()), "crm.csv")
    assert reader.fingerprints() == _expected(rows)
    assert sum(1 for _ in reader) == len(rows)  # read again from the first row


def test_one_large_customer_is_not_held_whole() -> None:
    rows = 200_000
    reader = RowReader(text_stream((HEADER + "".join(_rows("Only", rows))).encode()), "crm.csv")
    tracemalloc.start()
    try:
        fingerprints = reader.fingerprints()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fingerprints is not None and len(fingerprints) == 1
    # Holding the run whole takes about 20 MB (a string of ~45 characters a row, plus the
    # list); a bounded run a few hundred kB.
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MB"
