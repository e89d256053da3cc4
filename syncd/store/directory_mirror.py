"""A directory file written into the store: the plan of domain/directory_plan.py, made in
bounded memory (store/directory_stage.py) and applied in chunks, with an audit row for every
archive and restore.

``mirror_directory`` is what `syncd customers import` and the daemon's directory source
call.  It plans outside any write transaction, then applies the plan in short
transactions of ``batch`` rows each: a CRM export of a million rows never holds the write
lock for more than a moment, so `syncd tasks add` or a sync goes on meanwhile.  Imports run
one at a time (an advisory lock on PostgreSQL, a lock file beside a SQLite database), so two
daemons sharing one database never apply plans made from each other's half-applied state.
A plan interrupted half-way (a crash, a restart) is finished by the next one: what was
applied is not planned again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, text, tuple_, update
from sqlalchemy.engine import make_url

from syncd.domain.directory_file import KEPT_PROBLEMS, DirectoryFile, RowReader
from syncd.domain.directory_plan import Known, KnownContact, KnownCustomer
from syncd.errors import StoreError, UserError
from syncd.schema.tables import (
    contact_addresses,
    contacts,
    customer_domains,
    customers,
    record_customers,
    settings,
)
from syncd.store import audit, outbox
from syncd.store import directory_fingerprints as fingerprints
from syncd.store.database import unchecked_sqlite_engine
from syncd.store.directory_stage import StagedPlan
from syncd.store.events import RECORD_UPDATED
from syncd.store.sql import chunks, insert_rows

# The key of the PostgreSQL advisory lock every directory import holds until it ends.
_DIRECTORY_LOCK = 0x5_9C_D0_14
STATE_ROW = "directory_source"  # settings row: what the directory source last applied
BATCH = 2000  # rows written per transaction ([directory] batch)

Begin = Callable[[], AbstractContextManager[Connection]]


@dataclass(frozen=True, slots=True)
class Imported:
    counts: dict[str, dict[str, int]]
    archived_customers: list[str]  # names of the customers this import archived (or would)
    rows: int = 0

    @property
    def empty(self) -> bool:
        """Nothing changed (or would)."""
        return not any(
            by[what]
            for by in self.counts.values()
            for what in ("added", "updated", "archived", "restored")
        )


class EmptyDirectory(UserError):
    """A mirror of a file listing no customer would archive the whole directory."""


def lock(conn: Connection) -> None:
    """Hold the directory until commit: imports in one transaction run one at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DIRECTORY_LOCK})
    else:
        # A write takes SQLite's one write lock now, before the reads the plan is made of
        # (a plain read would let another writer commit in between).
        conn.execute(update(settings).where(settings.c.name == STATE_ROW).values(name=STATE_ROW))


@contextlib.contextmanager
def importing(engine: Engine) -> Iterator[None]:
    """Imports one at a time, without holding a write transaction: PostgreSQL's session
    advisory lock on a connection of its own, or an exclusive lock on a file beside the
    SQLite database (none for an in-memory one: one process)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _DIRECTORY_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _DIRECTORY_LOCK})
                conn.commit()
        return
    database = make_url(str(engine.url)).database
    if database in (None, "", ":memory:"):
        yield
        return
    fd = os.open(f"{Path(database).resolve()}.directory-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _database_file(engine: Engine) -> str | None:
    """The file of a SQLite database, which the plan's scratch database can read itself
    (None for PostgreSQL or an in-memory database)."""
    if engine.dialect.name != "sqlite":
        return None
    database = make_url(str(engine.url)).database
    if database in (None, "", ":memory:") or database.startswith("file:"):
        return None
    return str(Path(database).resolve())


def load_known(conn: Connection) -> Known:
    """Every customer and contact, archived ones included, with their domains and addresses
    (in memory: for tests and small directories)."""
    domains: dict[int, set[str]] = {}
    for customer_id, domain in conn.execute(
        select(customer_domains.c.customer_id, customer_domains.c.domain)
    ):
        domains.setdefault(customer_id, set()).add(domain)
    addresses: dict[int, set[str]] = {}
    for contact_id, address in conn.execute(
        select(contact_addresses.c.contact_id, contact_addresses.c.address)
    ):
        addresses.setdefault(contact_id, set()).add(address)
    return Known(
        tuple(
            KnownCustomer(r.id, r.name, frozenset(domains.get(r.id, ())), r.archived_at is not None)
            for r in conn.execute(select(customers.c.id, customers.c.name, customers.c.archived_at))
        ),
        tuple(
            KnownContact(
                r.id,
                r.customer_id,
                r.name,
                frozenset(addresses.get(r.id, ())),
                r.archived_at is not None,
            )
            for r in conn.execute(
                select(
                    contacts.c.id, contacts.c.customer_id, contacts.c.name, contacts.c.archived_at
                )
            )
        ),
    )


def import_directory(
    conn: Connection,
    file: DirectoryFile,
    *,
    mirror: bool,
    source: str,
    allow_empty: bool = False,
    dry_run: bool = False,
) -> Imported:
    """Plan ``file`` (parsed in memory) against the stored directory and apply it, all in
    the caller's transaction (only plan with ``dry_run``)."""
    lock(conn)
    with StagedPlan() as staged:
        staged.stage_file(file.lines)
        staged.group_contacts()
        return _plan_and_apply(
            staged, conn, lambda: nullcontext(conn), mirror=mirror, source=source,
            allow_empty=allow_empty, dry_run=dry_run, rows=file.rows,
        )  # fmt: skip


def mirror_directory(
    engine: Engine,
    reader: RowReader,
    *,
    mirror: bool,
    source: str,
    allow_empty: bool = False,
    dry_run: bool = False,
    batch: int = BATCH,
    skip_if: Callable[[Connection], bool] = lambda _conn: False,
    finish: Callable[[Connection, Imported], None] = lambda _conn, _done: None,
) -> Imported | None:
    """Read ``reader``'s rows, plan them against the stored directory and apply the plan
    in transactions of ``batch`` rows.  ``skip_if`` (read under the import lock) says the
    content is applied already: None then.  ``finish`` runs in the last transaction.
    BadDirectoryFile (nothing written) when any row is bad.

    A mirror first reads a digest of each customer's rows: the customers whose rows and
    stored state are what the last mirror applied (store/directory_fingerprints.py) are
    skipped unread, so a one-row change of a large file plans one customer."""
    digests = reader.fingerprints() if mirror else None
    with importing(engine):
        with engine.connect() as conn:
            if skip_if(conn):
                return None
            skipped = fingerprints.unchanged(conn, digests) if digests else {}
        while True:
            with StagedPlan() as staged:
                reader.skip = frozenset(skipped)
                staged.stage_file(reader.tuples())
                duplicates, total = staged.duplicates(KEPT_PROBLEMS)
                if skipped and (reader.problems.total or total or _shares(engine, staged, skipped)):
                    # A bad row: planned whole, which reports every one, with its lines.
                    reader.rewind()
                    skipped = {}
                    continue
                reader.refuse(duplicates, total)
                staged.group_contacts()
                staged.skip_customers(skipped)
                path = _database_file(engine)
                if path is not None:
                    staged.stage_known_file(path)
                else:
                    with engine.connect() as conn, conn.begin():
                        # One snapshot, and no write lock: SQLite's WAL and PostgreSQL let
                        # writers commit while it is read.
                        staged.stage_known(conn)

                def begin() -> AbstractContextManager[Connection]:
                    return engine.begin()

                def remember(staged: StagedPlan) -> None:
                    if digests is not None:
                        fingerprints.remember(begin, staged, digests, max(1, batch))

                return _plan_and_apply(
                    staged,
                    None,
                    begin,
                    mirror=mirror,
                    source=source,
                    allow_empty=allow_empty,
                    dry_run=dry_run,
                    rows=reader.rows,
                    batch=batch,
                    finish=finish,
                    applied=remember,
                    unchecked=None if path is None else f"sqlite:///{path}",
                )


def _shares(engine: Engine, staged: StagedPlan, skipped: fingerprints.Skipped) -> bool:
    with engine.connect() as conn:
        return fingerprints.shared_addresses(conn, staged, skipped)


def _plan_and_apply(
    staged: StagedPlan,
    conn: Connection | None,
    begin: Begin,
    *,
    mirror: bool,
    source: str,
    allow_empty: bool,
    dry_run: bool,
    rows: int,
    batch: int = BATCH,
    finish: Callable[[Connection, Imported], None] = lambda _conn, _done: None,
    applied: Callable[[StagedPlan], None] = lambda _staged: None,
    unchecked: str | None = None,
) -> Imported:
    if conn is not None:
        staged.stage_known(conn)
    staged.plan(mirror=mirror)
    if mirror and not allow_empty:
        _refuse_an_emptied_column(staged.guard(), source)
    done = Imported(staged.counts(), staged.archived_names(), rows)
    if dry_run:
        return done
    _Applier(staged, begin, max(1, batch), unchecked).apply()
    applied(staged)
    with begin() as last:
        if not done.empty:
            audit.record(
                last, "directory-mirror" if mirror else "directory-import", source, **done.counts
            )
        finish(last, done)
    return done


def _refuse_an_emptied_column(found: dict[str, int], source: str) -> None:
    """A file listing no customers, giving no customer a domain, or listing no contacts
    while the directory has them is far more often a failed export (an empty file, a
    column the CRM renamed) than a CRM that lost them all: mirroring it would archive every
    customer or contact, or delete every domain, at once."""
    problem = None
    if not found["file_customers"] and found["active"]:
        problem = f"lists no customers: mirroring it would archive all {found['active']} customers"
    elif found["with_domains"] and not found["file_domains"]:
        problem = (
            f"gives no customer a domain: mirroring it would remove the domains of all "
            f"{found['with_domains']} customers that have one"
        )
    elif found["active_contacts"] and not found["file_contacts"]:
        problem = (
            f"lists no contacts: mirroring it would archive all {found['active_contacts']} contacts"
        )
    if problem is not None:
        raise EmptyDirectory(
            f"{source} {problem}",
            hint="a CRM export with an empty column is usually a failed export; if you really "
            "mean it, pass --allow-empty ([directory] allow_empty = true)",
        )


class _Applier:
    """Writes a staged plan, ``batch`` rows a transaction, in the order that keeps every
    intermediate state sound: customers before their contacts, a contact before its
    addresses, archives last."""

    def __init__(
        self, staged: StagedPlan, begin: Begin, batch: int, unchecked: str | None = None
    ) -> None:
        self.staged = staged
        self.begin = begin
        self.batch = batch
        self.unchecked = unchecked  # a SQLite database's URL: see _new_contacts
        self.now = datetime.now(UTC)

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
            with self.begin() as conn:
                for few in chunks(part):
                    conn.execute(
                        delete(customer_domains).where(
                            tuple_(customer_domains.c.customer_id, customer_domains.c.domain).in_(
                                [tuple(p) for p in few]
                            )
                        )
                    )

    def _customer_changes(self) -> None:
        """Renames (on record, each linked record announced) and restores."""
        for part in self.staged.rows(
            "SELECT c.picked, k.name, c.name, k.archived FROM f_customers c "
            "JOIN k_customers k ON k.id = c.picked WHERE k.archived OR k.name != c.name",
            size=self.batch,
        ):
            trail: list[tuple[str, str, dict[str, Any]]] = []
            restored: list[int] = []
            renamed: list[int] = []
            with self.begin() as conn:
                for customer_id, had, name, archived in part:
                    if archived:
                        restored.append(customer_id)
                        trail.append(("restore", f"customer {name}", {"customer_id": customer_id}))
                    if had != name:
                        # Same customer (its name differs but for case or spacing): the CRM's
                        # spelling wins, and the change is on record like an archive.
                        trail.append(
                            ("rename", f"customer {had} -> {name}", {"customer_id": customer_id})
                        )
                        conn.execute(
                            customers.update()
                            .where(customers.c.id == customer_id)
                            .values(name=name)
                        )
                        renamed.append(customer_id)
                _set_archived(conn, customers, restored, None)
                audit.record_many(conn, trail)
                _announce_renames(conn, renamed)

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
            trail: list[tuple[str, str, dict[str, Any]]] = []
            restored: list[int] = []
            with self.begin() as conn:
                for contact_id, customer_id, name, move, restore, first in part:
                    values: dict[str, Any] = {"customer_id": customer_id} if move else {}
                    if name is not None:
                        values["name"] = name
                    if values:
                        conn.execute(
                            contacts.update().where(contacts.c.id == contact_id).values(values)
                        )
                    if restore:
                        restored.append(contact_id)
                        trail.append(("restore", f"contact {first}", {"contact_id": contact_id}))
                _set_archived(conn, contacts, restored, None)
                audit.record_many(conn, trail)
        if not self.staged.mirror:
            return
        for part in self.staged.rows(
            "SELECT ka.contact_id, ka.address FROM k_addresses ka "
            "JOIN f_contacts f ON f.assigned = ka.contact_id "
            "WHERE NOT EXISTS (SELECT 1 FROM f_addresses a WHERE a.address = ka.address)",
            size=self.batch,
        ):
            with self.begin() as conn:
                for few in chunks(part):
                    conn.execute(
                        delete(contact_addresses).where(
                            tuple_(contact_addresses.c.contact_id, contact_addresses.c.address).in_(
                                [tuple(p) for p in few]
                            )
                        )
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
        found = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        )
        return [int(i) for i in found.scalars()]
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


# --- the directory source's last application (for the daemon and `syncd status`) ---------


def applied_state(conn: Connection) -> dict[str, Any]:
    """What the directory source last applied: fingerprint, counts, applied_at, source."""
    value = conn.scalar(select(settings.c.value).where(settings.c.name == STATE_ROW))
    return dict(json.loads(value)) if value else {}


def save_applied_state(conn: Connection, state: dict[str, Any]) -> None:
    value = json.dumps(state, sort_keys=True, default=str)
    if conn.scalar(select(settings.c.name).where(settings.c.name == STATE_ROW)) is None:
        conn.execute(settings.insert().values(name=STATE_ROW, value=value))
    else:
        conn.execute(settings.update().where(settings.c.name == STATE_ROW).values(value=value))
