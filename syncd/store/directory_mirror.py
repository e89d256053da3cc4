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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.engine import URL, make_url

from syncd.domain.directory_file import KEPT_PROBLEMS, DirectoryFile, RowReader
from syncd.domain.directory_plan import Known, KnownContact, KnownCustomer
from syncd.errors import UserError
from syncd.schema.tables import (
    contact_addresses,
    contacts,
    customer_domains,
    customers,
    settings,
)
from syncd.store import audit
from syncd.store import directory_fingerprints as fingerprints
from syncd.store.directory_apply import DIRECTORY_LOCK, STATE_ROW, Applier, Begin, lock
from syncd.store.directory_stage import StagedPlan

BATCH = 2000  # rows written per transaction ([directory] batch): a writer waits one out


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


@contextlib.contextmanager
def importing(engine: Engine) -> Iterator[None]:
    """Imports one at a time, without holding a write transaction: PostgreSQL's session
    advisory lock on a connection of its own, or an exclusive lock on a file beside the
    SQLite database (none for an in-memory one: one process)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": DIRECTORY_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": DIRECTORY_LOCK})
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
                    # The decoded path set on a URL object: a path with "?" or "%" is no
                    # URL text, and the original's driver and query stay.
                    unchecked=None if path is None else engine.url.set(database=path),
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
    unchecked: URL | None = None,
) -> Imported:
    if conn is not None:
        staged.stage_known(conn)
    staged.plan(mirror=mirror)
    if mirror and not allow_empty:
        _refuse_an_emptied_column(staged.guard(), source)
    done = Imported(staged.counts(), staged.archived_names(), rows)
    if dry_run:
        return done
    Applier(staged, begin, max(1, batch), unchecked, turns=conn is None).apply()
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
