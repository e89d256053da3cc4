"""Small helpers that hide the few places where SQLite and PostgreSQL differ."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

T = TypeVar("T")
# Both engines accept far more bound parameters, but IN lists this long stay fast everywhere.
CHUNK = 500


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(
    conn: Connection, table: Table, rows: Iterable[dict[str, Any]], conflict: Sequence[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: replaying a batch changes nothing."""
    rows = list(rows)
    if not rows:
        return
    stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=list(conflict))
    conn.execute(stmt, rows)


def upsert(
    conn: Connection,
    table: Table,
    rows: Iterable[dict[str, Any]],
    conflict: Sequence[str],
    update: Callable[[Any], dict[str, Any]],
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE; ``update(excluded)`` gives the new column values
    as expressions over the stored row and ``excluded`` (the proposed one)."""
    rows = list(rows)
    if not rows:
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_=update(stmt.excluded))
    conn.execute(stmt, rows)
