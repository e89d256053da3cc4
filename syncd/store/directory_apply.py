"""The apply step of a directory mirror (store/directory_mirror.py): a staged plan written
into the store ``batch`` rows a transaction, straight to the driver where rows are many."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, text, tuple_, update
from sqlalchemy.engine import URL

from syncd.errors import StoreError
from syncd.schema.tables import (
    contact_addresses,
    contacts,
    customer_domains,
    customers,
    record_customers,
    settings,
)
from syncd.store import audit, outbox
from syncd.store.database import unchecked_sqlite_engine
from syncd.store.directory_stage import StagedPlan
from syncd.store.events import RECORD_UPDATED
from syncd.store.sql import chunks, insert_rows

Begin = Callable[[], AbstractContextManager[Connection]]

# The key of the PostgreSQL advisory lock every directory import holds until it ends.
DIRECTORY_LOCK = 0x5_9C_D0_14
STATE_ROW = "directory_source"
# How long a transaction of the per-row phases may hold the write lock, the rows it writes
# a statement, and the pause after a long one that lets a waiting writer in.
HOLD = 0.2
_SLICE = 250
_PAUSE = 0.1  # settings row: what the directory source last applied


def lock(conn: Connection) -> None:
    """Hold the directory until commit: imports in one transaction run one at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DIRECTORY_LOCK})
    else:
        # A write takes SQLite's one write lock now, before the reads the plan is made of
        # (a plain read would let another writer commit in between).
        conn.execute(update(settings).where(settings.c.name == STATE_ROW).values(name=STATE_ROW))


class Applier:
    """Writes a staged plan, ``batch`` rows a transaction, in the order that keeps every
    intermediate state sound: customers before their contacts, a contact before its
    addresses, archives last."""

    def __init__(
        self,
        staged: StagedPlan,
        begin: Begin,
        batch: int,
        unchecked: URL | None = None,
        *,
        turns: bool = False,
    ) -> None:
        self.staged = staged
        self.begin = begin
        self.batch = batch
        self.unchecked = unchecked  # a SQLite database's URL: see _new_contacts
        self.turns = turns  # transactions of its own, which may leave other writers a turn
        self.now = datetime.now(UTC)

    def in_turns(self, rows: list[Any], write: Callable[[Connection, list[Any]], None]) -> None:
        """``write`` over ``rows`` a slice at a time, committed once a transaction has held
        the write lock ``HOLD`` seconds; after such a long one, a pause: SQLite's busy
        handler sleeps up to 100 ms between tries, so a writer waiting on transactions that
        follow each other at once would never find the lock free."""
        start = 0
        while start < len(rows):
            began = time.monotonic()
            with self.begin() as conn:
                while start < len(rows) and (time.monotonic() - began < HOLD or not self.turns):
                    write(conn, rows[start : start + _SLICE])
                    start += _SLICE
            if self.turns and time.monotonic() - began >= HOLD / 2:
                time.sleep(_PAUSE)

    def pages(self, sql: str) -> Iterator[list[Any]]:
        """``sql`` (its rows keyed by their first column, ``?`` the last key seen) a page at a
        time, each read whole: the scratch tables it reads are written back meanwhile."""
        last = -1
        while part := self.staged.db.execute(sql, (last, self.batch)).fetchall():
            yield part
            last = part[-1][0]

    def apply(self) -> None:
        self._new_customers()
        self._customer_domains()
        self._customer_changes()
        self._archive(customers, "customer", "p_archive_customers")
        self._new_contacts()
        self._contact_changes()
        self._contact_addresses()
        self._archive(contacts, "contact", "p_archive_contacts")

    def _new_customers(self) -> None:
        for part in self.pages(
            "SELECT pos, ckey, name FROM f_customers WHERE picked IS NULL AND pos > ? "
            "ORDER BY pos LIMIT ?"
        ):
            names = [name for _pos, _key, name in part]
            with self.begin() as conn:
                now = _bound(conn, customers.c.created_at, self.now)
                # Ignored when a person added the same name since the plan: that is the one.
                insert_rows(
                    conn,
                    "INSERT INTO customers (name, created_at) VALUES (?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    [(n, now) for n in names],
                    "text,timestamptz",
                )
                ids = {name: int(id_) for name, id_ in _ids_by_name(conn, names)}
            self.staged.write(
                "UPDATE f_customers SET new_id = ? WHERE ckey = ?",
                [(ids[name], key) for _pos, key, name in part],
            )

    def _customer_domains(self) -> None:
        for part in self.staged.rows(
            "SELECT coalesce(c.picked, c.new_id), d.domain FROM f_domains d "
            "JOIN f_customers c ON c.ckey = d.ckey WHERE NOT EXISTS (SELECT 1 FROM k_domains kd "
            "WHERE kd.customer_id = c.picked AND kd.domain = d.domain)",
            size=self.batch,
        ):
            with self.begin() as conn:
                insert_rows(
                    conn,
                    "INSERT INTO customer_domains (customer_id, domain) VALUES (?, ?) "
                    "ON CONFLICT (customer_id, domain) DO NOTHING",
                    part,
                    "bigint,text",
                )
        if not self.staged.mirror:
            return
        for part in self.staged.rows(
            "SELECT kd.customer_id, kd.domain FROM k_domains kd "
            "JOIN f_customers c ON c.picked = kd.customer_id WHERE NOT EXISTS "
            "(SELECT 1 FROM f_domains d WHERE d.ckey = c.ckey AND d.domain = kd.domain)",
            size=self.batch,
        ):
            self._drop_pairs(customer_domains.c.customer_id, customer_domains.c.domain, part)

    def _customer_changes(self) -> None:
        """Renames (on record, each linked record announced) and restores."""
        for part in self.staged.rows(
            "SELECT c.picked, k.name, c.name, k.archived FROM f_customers c "
            "JOIN k_customers k ON k.id = c.picked WHERE k.archived OR k.name != c.name",
            size=self.batch,
        ):
            self.in_turns(part, _customer_changes)

    def _archive(self, table: Any, kind: str, staged_table: str) -> None:
        if kind == "customer":
            sql = (
                "SELECT p.id, k.name FROM p_archive_customers p JOIN k_customers k ON k.id = p.id "
                "ORDER BY p.id"
            )
        else:
            sql = (
                "SELECT p.id, coalesce((SELECT min(address) FROM k_addresses a "
                "WHERE a.contact_id = p.id), '#' || p.id) FROM p_archive_contacts p ORDER BY p.id"
            )
        assert staged_table in sql
        for part in self.staged.rows(sql, size=self.batch):
            with self.begin() as conn:
                _set_archived(conn, table, [i for i, _ in part], self.now)
                audit.record_many(
                    conn, [("archive", f"{kind} {what}", {f"{kind}_id": i}) for i, what in part]
                )

    def _new_contacts(self) -> None:
        """New contacts with their addresses (moved from the contact holding them, or new),
        in one transaction a page: their ids are known there, nothing is written back.  A
        page is half a batch of contacts: with their addresses, about a batch of rows.

        On a SQLite file, through a connection of its own that checks no foreign key: the
        addresses' contacts are the page's own, and the page's customers are checked once
        in its transaction, whose write lock keeps them until it commits."""
        unchecked = unchecked_sqlite_engine(self.unchecked) if self.unchecked else None
        begin = self.begin if unchecked is None else unchecked.begin
        size = max(1, self.batch // 2)
        last = -1
        try:
            while part := self.staged.db.execute(
                "SELECT f.id, coalesce(c.picked, c.new_id), f.name FROM f_contacts f "
                "JOIN f_customers c ON c.ckey = f.ckey WHERE f.assigned IS NULL AND f.id > ? "
                "ORDER BY f.id LIMIT ?",
                (last, size),
            ).fetchall():
                last = part[-1][0]
                addresses = self.staged.db.execute(
                    "SELECT a.contact, a.address FROM f_addresses a JOIN f_contacts f "
                    "ON f.id = a.contact WHERE a.contact BETWEEN ? AND ? AND f.assigned IS NULL",
                    (part[0][0], last),
                ).fetchall()
                with begin() as conn:
                    ids = _reserve_ids(conn, contacts, len(part))
                    if unchecked is not None:
                        _check_customers(conn, {c for _i, c, _n in part if c is not None})
                    now = _bound(conn, contacts.c.created_at, self.now)
                    new_id = {row[0]: new for new, row in zip(ids, part, strict=True)}
                    insert_rows(
                        conn,
                        "INSERT INTO contacts (id, customer_id, name, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        [(new_id[i], c, n, now) for i, c, n in part],
                        "bigint,bigint,text,timestamptz",
                    )
                    insert_rows(
                        conn,
                        "INSERT INTO contact_addresses (contact_id, address) VALUES (?, ?) "
                        "ON CONFLICT (address) DO UPDATE SET contact_id = excluded.contact_id",
                        [(new_id[c], a) for c, a in addresses],
                        "bigint,text",
                    )
        finally:
            if unchecked is not None:
                unchecked.dispose()

    def _contact_changes(self) -> None:
        """Names, moves to another customer, restores; addresses the file no longer lists."""
        for part in self.staged.rows(
            "SELECT p.contact_id, coalesce(c.picked, c.new_id), p.name, p.move, p.restore, "
            "coalesce((SELECT min(address) FROM k_addresses a WHERE a.contact_id = p.contact_id), "
            "(SELECT a.address FROM f_addresses a WHERE a.contact = p.id ORDER BY a.line LIMIT 1), "
            "'#' || p.contact_id) "
            "FROM p_contacts p JOIN f_contacts f ON f.id = p.id "
            "JOIN f_customers c ON c.ckey = f.ckey ORDER BY p.id",
            size=self.batch,
        ):
            self.in_turns(part, _contact_changes)
        if not self.staged.mirror:
            return
        for part in self.staged.rows(
            "SELECT ka.contact_id, ka.address FROM k_addresses ka "
            "JOIN f_contacts f ON f.assigned = ka.contact_id "
            "WHERE NOT EXISTS (SELECT 1 FROM f_addresses a WHERE a.address = ka.address)",
            size=self.batch,
        ):
            self._drop_pairs(contact_addresses.c.contact_id, contact_addresses.c.address, part)

    def _drop_pairs(self, owner: Any, value: Any, pairs: list[Any]) -> None:
        """Delete the stored (owner, value) rows the file no longer lists, a transaction a page."""
        with self.begin() as conn:
            for few in chunks(pairs):
                conn.execute(
                    delete(owner.table).where(tuple_(owner, value).in_([tuple(p) for p in few]))
                )

    def _contact_addresses(self) -> None:
        """Each address the file lists on a stored contact, on the contact it must belong
        to: moved from the contact holding it, or new (new contacts got theirs with them)."""
        for part in self.staged.rows(
            "SELECT a.address, f.assigned FROM f_addresses a "
            "JOIN f_contacts f ON f.id = a.contact "
            "LEFT JOIN k_addresses ka ON ka.address = a.address "
            "WHERE f.assigned IS NOT NULL AND ka.contact_id IS NOT f.assigned",
            size=self.batch,
        ):
            with self.begin() as conn:
                insert_rows(
                    conn,
                    "INSERT INTO contact_addresses (contact_id, address) VALUES (?, ?) "
                    "ON CONFLICT (address) DO UPDATE SET contact_id = excluded.contact_id",
                    [(c, a) for a, c in part],
                    "bigint,text",
                )


def _customer_changes(conn: Connection, part: list[Any]) -> None:
    trail: list[tuple[str, str, dict[str, Any]]] = []
    restored: list[int] = []
    renamed: list[dict[str, Any]] = []
    for customer_id, had, name, archived in part:
        if archived:
            restored.append(customer_id)
            trail.append(("restore", f"customer {name}", {"customer_id": customer_id}))
        if had != name:
            # Same customer (its name differs but for case or spacing): the CRM's spelling
            # wins, and the change is on record like an archive.
            trail.append(("rename", f"customer {had} -> {name}", {"customer_id": customer_id}))
            renamed.append({"b_id": customer_id, "b_name": name})
    if renamed:
        # One statement for the slice (executemany), not a round of SQLAlchemy a row.
        conn.execute(
            customers.update()
            .where(customers.c.id == bindparam("b_id"))
            .values(name=bindparam("b_name")),
            renamed,
        )
    _set_archived(conn, customers, restored, None)
    audit.record_many(conn, trail)
    _announce_renames(conn, [r["b_id"] for r in renamed])


def _contact_changes(conn: Connection, part: list[Any]) -> None:
    trail: list[tuple[str, str, dict[str, Any]]] = []
    restored: list[int] = []
    changed: list[dict[str, Any]] = []
    for contact_id, customer_id, name, move, restore, first in part:
        if move or name is not None:
            changed.append(
                {"b_id": contact_id, "b_name": name, "b_customer": customer_id if move else None}
            )
        if restore:
            restored.append(contact_id)
            trail.append(("restore", f"contact {first}", {"contact_id": contact_id}))
    if changed:
        # NULL keeps the column: one statement for every kind of change, run as executemany.
        conn.execute(
            contacts.update()
            .where(contacts.c.id == bindparam("b_id"))
            .values(
                name=func.coalesce(
                    bindparam("b_name", type_=contacts.c.name.type), contacts.c.name
                ),
                customer_id=func.coalesce(
                    bindparam("b_customer", type_=contacts.c.customer_id.type),
                    contacts.c.customer_id,
                ),
            ),
            changed,
        )
    _set_archived(conn, contacts, restored, None)
    audit.record_many(conn, trail)


def _bound(conn: Connection, column: Any, value: Any) -> Any:
    """``value`` as ``column``'s type gives it to the driver."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return process(value) if process is not None else value


def _ids_by_name(conn: Connection, names: list[str]) -> Any:
    """(name, id) of the customers named ``names``, in one statement straight to the
    driver (an IN list of a batch of names costs SQLAlchemy a bound parameter each)."""
    if conn.dialect.name == "postgresql":
        return conn.exec_driver_sql(
            "SELECT name, id FROM customers WHERE name = ANY(%s::text[])", (names,)
        )
    return conn.exec_driver_sql(
        "SELECT name, id FROM customers WHERE name IN (SELECT value FROM json_each(?))",
        (json.dumps(names),),
    )


def _check_customers(conn: Connection, ids: set[int]) -> None:
    """What the foreign key of new contacts would check: their customers exist (one
    deleted since the plan fails the page, as the key would)."""
    found = conn.exec_driver_sql(
        "SELECT count(*) FROM customers WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(ids)),),
    ).scalar()
    if found != len(ids):
        raise StoreError(
            "a customer was deleted while the directory file was mirrored",
            hint="the next check of the directory file mirrors it again",
        )


def _reserve_ids(conn: Connection, table: Any, count: int) -> list[int]:
    """``count`` new ids of ``table``, taken before its rows are inserted in bulk (an INSERT
    returning ids in the rows' order costs a statement per row on SQLite): PostgreSQL's
    sequence, or on SQLite, whose one writer this transaction is once it has written,
    the ids after the largest."""
    if conn.dialect.name == "postgresql":
        # One array, not a row an id: a thousand rows through the driver cost more.
        found = conn.execute(
            text(
                "SELECT array_agg(nextval(pg_get_serial_sequence(:table, 'id'))) "
                "FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        ).scalar_one()
        return [int(i) for i in found]
    # A write first (``lock``'s, straight to the driver: this runs a page of contacts):
    # no other writer can take the same ids.
    conn.exec_driver_sql(_SQLITE_LOCK, (STATE_ROW, STATE_ROW))
    largest = conn.exec_driver_sql(f"SELECT max(id) FROM {table.name}").scalar() or 0
    return list(range(largest + 1, largest + 1 + count))


_SQLITE_LOCK = "UPDATE settings SET name = ? WHERE name = ?"


def _announce_renames(conn: Connection, renamed: list[int]) -> None:
    """A renamed customer changes the data of every record linked to it: ``record.updated``
    for each, last in the transaction like every event.  Archive and restore change no
    record (links are kept), so they announce nothing."""
    linked: set[int] = set()
    for part in chunks(renamed):
        linked.update(
            conn.execute(
                select(record_customers.c.record_id).where(record_customers.c.customer_id.in_(part))
            ).scalars()
        )
    if linked:
        outbox.emit_records(conn, RECORD_UPDATED, sorted(linked))


def _set_archived(conn: Connection, table: Any, ids: Sequence[int], value: datetime | None) -> None:
    """Archive (``value``: now) or restore (None) the rows ``ids``, a chunk a statement."""
    for part in chunks(list(ids)):
        conn.execute(table.update().where(table.c.id.in_(part)).values(archived_at=value))
