"""Small helpers that hide the few places where SQLite and PostgreSQL differ."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect

T = TypeVar("T")
# Both engines accept far more bound parameters, but IN lists this long stay fast everywhere.
CHUNK = 500


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert(conn: Connection, table: Table) -> Any:
    return _insert_for(conn.dialect, table)


def _insert_for(dialect: Dialect, table: Table) -> Any:
    # Imported here: the PostgreSQL dialect module (and the asyncio it pulls in) costs a
    # read-only command on SQLite a fifth of its start-up.
    if dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


@dataclass(frozen=True, slots=True)
class _InsertPlan:
    sql: str
    names: tuple[str, ...]  # bound parameters, in the order the statement wants them
    positional: bool
    keys: tuple[str, ...]  # what each row gives
    defaults: tuple[Any, ...]  # scalar defaults of the other columns, in ``names``' terms
    order: tuple[int, ...]  # positions in keys + defaults, in the statement's order
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # column types' own conversions

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        # Straight to the driver: SQLAlchemy's per-row parameter handling costs more than
        # SQLite spends storing a row, and a first sync inserts tens of thousands of them.
        keys, defaults, convert = self.keys, self.defaults, self.convert
        take = itemgetter(*keys) if len(keys) > 1 else (lambda row: (row[keys[0]],))
        reorder = itemgetter(*self.order) if len(self.order) > 1 else (lambda v: (v[0],))
        values: list[tuple[Any, ...]] = []
        # A batch repeats values (every row's created_at): each is converted once.
        converted: list[dict[Any, Any]] = [{} for _ in convert]
        for row in rows:
            try:
                given = take(row) + defaults
            except KeyError:  # a row without some keys: those columns are NULL
                given = tuple(row.get(k) for k in keys) + defaults
            ordered = reorder(given)
            if convert:
                ordered = list(ordered)
                for (i, f), seen in zip(convert, converted, strict=True):
                    value = ordered[i]
                    try:
                        ordered[i] = seen[value]
                    except KeyError:
                        ordered[i] = seen[value] = f(value)
                    except TypeError:  # not hashable
                        ordered[i] = f(value)
            values.append(tuple(ordered))
        if self.positional:
            conn.exec_driver_sql(self.sql, values)
        else:
            conn.exec_driver_sql(self.sql, [dict(zip(self.names, v, strict=True)) for v in values])


Update = Callable[[Any], dict[str, Any]]  # the excluded row -> the new column values


@lru_cache(maxsize=256)
def _insert_plan(
    dialect: Dialect,
    table: Table,
    keys: tuple[str, ...],
    conflict: tuple[str, ...],
    update: tuple[str, ...] | Update | None,
) -> _InsertPlan | None:
    """The compiled INSERT ... ON CONFLICT for rows with these keys (DO NOTHING, or DO UPDATE
    of the ``update`` columns to the proposed values, or to the expressions ``update(excluded)``
    gives); None when a column default must be computed per row, which SQLAlchemy's own
    path handles."""
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.key in keys or column.default is None:
            continue
        if not getattr(column.default, "is_scalar", False):
            return None
        defaults[column.key] = column.default.arg  # type: ignore[attr-defined]
    every = keys + tuple(defaults)
    stmt = _insert_for(dialect, table)
    if not conflict:
        pass  # a plain INSERT (insert_many)
    elif update is None:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    elif callable(update):
        stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_=update(stmt.excluded))
    else:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update}
        )
    compiled = stmt.compile(dialect=dialect, column_keys=list(every))
    names = tuple(compiled.positiontup or ()) if compiled.positional else every
    if sorted(names) != sorted(every):
        return None  # bound names that are not plain column keys: let SQLAlchemy map them
    convert = tuple(
        (i, f)
        for i, n in enumerate(names)
        if (f := table.c[n].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    return _InsertPlan(
        sql=compiled.string,
        names=names,
        positional=compiled.positional,
        keys=keys,
        defaults=tuple(defaults.values()),
        order=tuple(every.index(n) for n in names),
        convert=convert,
    )


def upsert_planned(
    conn: Connection,
    table: Table,
    rows: Iterable[dict[str, Any]],
    conflict: Sequence[str],
    update: Update,
) -> None:
    """``upsert`` with ``update(excluded)`` expressions, compiled once per dialect and row
    shape rather than at each call: ``update`` must be a module-level function (it is the
    cache's key), never a closure made per call."""
    rows = list(rows)
    if not rows:
        return
    plan = _insert_plan(conn.dialect, table, tuple(rows[0]), tuple(conflict), update)
    if plan is not None:
        plan.run(conn, rows)
        return
    upsert(conn, table, rows, conflict, update)


def insert_ignore(
    conn: Connection, table: Table, rows: Iterable[dict[str, Any]], conflict: Sequence[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: replaying a batch changes nothing."""
    rows = list(rows)
    if not rows:
        return
    plan = _insert_plan(conn.dialect, table, tuple(rows[0]), tuple(conflict), None)
    if plan is not None:
        plan.run(conn, rows)
        return
    stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=list(conflict))
    conn.execute(stmt, rows)


def insert_many(conn: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """A plain INSERT of many rows, straight to the driver (the outbox's events)."""
    rows = list(rows)
    if not rows:
        return
    plan = _insert_plan(conn.dialect, table, tuple(rows[0]), (), None)
    if plan is not None:
        plan.run(conn, rows)
        return
    conn.execute(table.insert(), rows)


def upsert(
    conn: Connection,
    table: Table,
    rows: Iterable[dict[str, Any]],
    conflict: Sequence[str],
    update: Callable[[Any], dict[str, Any]] | Sequence[str],
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE.  ``update`` names the columns that take the proposed
    values, or is ``update(excluded)`` giving the new column values as expressions over the
    stored row and ``excluded`` (the proposed one)."""
    rows = list(rows)
    if not rows:
        return
    if not callable(update):
        plan = _insert_plan(conn.dialect, table, tuple(rows[0]), tuple(conflict), tuple(update))
        if plan is not None:
            plan.run(conn, rows)
            return
        columns = list(update)
        update = lambda excluded: {c: excluded[c] for c in columns}  # noqa: E731
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_=update(stmt.excluded))
    conn.execute(stmt, rows)


def insert_rows(conn: Connection, sql: str, rows: list[tuple[Any, ...]], types: str) -> None:
    """``sql`` (an INSERT with ``VALUES (?, ...)``) for each of ``rows``, straight to the
    driver: a million rows through SQLAlchemy's parameter handling cost seconds.  On
    PostgreSQL one statement a call, its columns as arrays of ``types`` (comma-separated):
    a statement per row is a round trip each."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.exec_driver_sql(sql, rows)
        return
    head, tail = sql.split(" VALUES ", 1)
    tail = tail[tail.index(")") + 1 :]
    # Binary (%b): psycopg writes an array of a batch of values in text a value at a time
    # in Python, quoting each; in binary at a third of the cost.
    arrays = ", ".join(f"%b::{t}[]" for t in types.split(","))
    conn.exec_driver_sql(
        f"{head} SELECT * FROM unnest({arrays}){tail}",
        tuple(list(c) for c in zip(*rows, strict=True)),
    )
