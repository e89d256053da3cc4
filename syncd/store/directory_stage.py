"""The plan of a directory file, made in a scratch SQLite file: bounded memory at any size.

A CRM export of a million rows held as Python objects (the file's contacts, the stored
ones, the plan's steps) took 2 GB.  Here the file's valid rows and a copy of the stored
directory go into a throw-away SQLite database (a temporary file), and the plan of
domain/directory_plan.py is worked out there in SQL, with the same rules (the tests check
that both agree); only what a step of the apply needs is read back, a chunk at a time.

Nothing here writes to syncd's database: the copy of the stored directory is read in one
transaction that takes no write lock, so other writers go on while a large file is planned.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection

from syncd.domain.directory_file import Row, customer_key

_BATCH = 10_000  # rows per executemany into the scratch database
_CACHE_KIB = 32_768  # the scratch database's page cache: its share of the memory bound

_SCHEMA = """
CREATE TABLE f_rows(line INTEGER PRIMARY KEY, ckey TEXT NOT NULL, contact TEXT NOT NULL,
                    address TEXT NOT NULL);
CREATE TABLE f_customers(ckey TEXT PRIMARY KEY, name TEXT NOT NULL, pos INTEGER NOT NULL,
                         picked INTEGER, new_id INTEGER, changed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE f_domains(ckey TEXT NOT NULL, domain TEXT NOT NULL, PRIMARY KEY (ckey, domain))
    WITHOUT ROWID;
CREATE TABLE k_customers(id INTEGER PRIMARY KEY, ckey TEXT NOT NULL, name TEXT NOT NULL,
                         archived INTEGER NOT NULL);
CREATE TABLE k_domains(customer_id INTEGER NOT NULL, domain TEXT NOT NULL,
                       PRIMARY KEY (customer_id, domain)) WITHOUT ROWID;
CREATE TABLE k_contacts(id INTEGER PRIMARY KEY, customer_id INTEGER, name TEXT NOT NULL,
                        archived INTEGER NOT NULL);
CREATE TABLE k_addresses(address TEXT PRIMARY KEY, contact_id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE s_skip(ckey TEXT PRIMARY KEY, customer_id INTEGER NOT NULL UNIQUE,
                    contacts INTEGER NOT NULL, domains INTEGER NOT NULL);
"""


class StagedPlan:
    """A scratch database holding one file, one copy of the stored directory, and the plan
    between them.  Use as a context manager."""

    def __init__(self) -> None:
        # SQLite's private temporary database (an empty name): a file in the temporary
        # folder that SQLite unlinks as it opens it, so nothing is left behind even when
        # the process is killed in the middle of a plan; its pages spill there past the
        # cache, so memory stays bounded.
        self.db = sqlite3.connect("", isolation_level=None)
        for pragma in (
            "journal_mode=OFF",
            "synchronous=OFF",
            f"cache_size=-{_CACHE_KIB}",
            "temp_store=FILE",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(_SCHEMA)
        self.mirror = False
        self.firsts = False  # f_first made
        self.skipped: dict[str, tuple[int, int, int]] = {}  # see skip_customers

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StagedPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _many(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _BATCH:
                self.db.executemany(sql, batch)
                batch.clear()
        if batch:
            self.db.executemany(sql, batch)

    def write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """``executemany`` in one transaction (one per row is a write each)."""
        self.db.execute("BEGIN")
        self.db.executemany(sql, rows)
        self.db.execute("COMMIT")

    def one(self, sql: str, *args: Any) -> Any:
        return self.db.execute(sql, args).fetchone()[0]

    def rows(self, sql: str, *args: Any, size: int = _BATCH) -> Iterator[list[Any]]:
        """The result of ``sql`` in lists of at most ``size`` rows."""
        cursor = self.db.execute(sql, args)
        while part := cursor.fetchmany(size):
            yield part

    # --- the file -------------------------------------------------------------------------

    def stage_file(self, rows: Iterable[Row]) -> None:
        """The file's valid rows: its customers (first spelling wins), their domains, and
        the rows that give an address."""
        db = self.db
        db.execute("BEGIN")
        customers_: list[tuple[str, str, int]] = []
        domains: list[tuple[str, str]] = []
        addressed: list[tuple[int, str, str, str]] = []

        def flush() -> None:
            db.executemany(
                "INSERT OR IGNORE INTO f_customers(ckey, name, pos) VALUES (?,?,?)", customers_
            )
            db.executemany("INSERT OR IGNORE INTO f_domains VALUES (?,?)", domains)
            db.executemany("INSERT INTO f_rows VALUES (?,?,?,?)", addressed)
            customers_.clear()
            domains.clear()
            addressed.clear()

        last_key: str | None = None
        last_domains: tuple[str, ...] = ()
        add_customer, add_row = customers_.append, addressed.append
        for line, key, customer, given, contact, address in rows:
            if key != last_key or given != last_domains:  # a customer's rows come together
                last_key, last_domains = key, given
                add_customer((key, customer, line))
                domains.extend((key, d) for d in given)
            if address is not None:
                add_row((line, key, contact, address))
                if len(addressed) >= _BATCH:
                    flush()
            elif len(customers_) >= _BATCH:
                flush()
        flush()
        db.execute("COMMIT")

    def duplicates(self, kept: int) -> tuple[list[str], int]:
        """Addresses the file gives to two contacts: (the first ``kept`` problems, their
        number), as the in-memory parser words them."""
        self._first_lines()
        clash = (
            "FROM f_rows r JOIN f_first f ON f.address = r.address JOIN f_rows o ON o.line = f.line "
            "WHERE r.line != f.line AND (r.ckey != o.ckey OR r.contact != o.contact)"
        )
        found = [
            f"line {line}: its contact_email is also on line {earlier} with another customer or "
            "contact name"
            for line, earlier in self.db.execute(
                f"SELECT r.line, f.line {clash} ORDER BY r.line LIMIT ?", (kept,)
            )
        ]
        # Counted apart only when there are more than are kept: most files have none, and
        # the join is a pass over every row.
        total = len(found) if len(found) < kept else int(self.one(f"SELECT count(*) {clash}"))
        return found, total

    def _first_lines(self) -> None:
        """The line each address first appears on."""
        if self.firsts:
            return
        self.firsts = True
        db = self.db
        db.execute("BEGIN")
        # Keyed by address as it is filled: the GROUP BY yields addresses in order, so the
        # table is written in one sequential pass and needs no index built after.
        db.execute(
            "CREATE TABLE f_first(address TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID"
        )
        db.execute("INSERT INTO f_first SELECT address, min(line) FROM f_rows GROUP BY address")
        db.execute("COMMIT")

    def group_contacts(self) -> None:
        """The file's contacts (rows of one customer and one name, or one unnamed address),
        numbered in file order, and each address's contact."""
        self._first_lines()
        db = self.db
        db.execute("BEGIN")
        db.execute(
            "CREATE TABLE f_contacts(id INTEGER PRIMARY KEY, ckey TEXT NOT NULL, "
            "name TEXT NOT NULL, solo TEXT NOT NULL, assigned INTEGER, new_id INTEGER)"
        )
        db.execute("CREATE UNIQUE INDEX f_contacts_group ON f_contacts(ckey, name, solo)")
        # Rows in line order (f_rows' key, no sort): a contact's first row numbers it, its
        # later rows are ignored by the index.
        db.execute(
            "INSERT OR IGNORE INTO f_contacts(ckey, name, solo) "
            "SELECT ckey, contact, CASE contact WHEN '' THEN address ELSE '' END "
            "FROM f_rows ORDER BY line"
        )
        db.execute(
            "CREATE TABLE f_addresses(address TEXT PRIMARY KEY, contact INTEGER NOT NULL, "
            "line INTEGER NOT NULL) WITHOUT ROWID"
        )
        db.execute(
            "INSERT INTO f_addresses SELECT r.address, c.id, r.line "
            "FROM f_first f JOIN f_rows r ON r.line = f.line "
            "JOIN f_contacts c ON c.ckey = r.ckey AND c.name = r.contact "
            "AND c.solo = CASE r.contact WHEN '' THEN r.address ELSE '' END"
        )
        db.execute("CREATE INDEX f_addresses_contact ON f_addresses(contact, line)")
        db.execute("DROP TABLE f_rows")
        db.execute("DROP TABLE f_first")
        db.execute("COMMIT")

    # --- what is stored -------------------------------------------------------------------

    def skip_customers(self, skipped: dict[str, tuple[int, int, int]]) -> None:
        """Customers found unchanged by their fingerprint (store/directory_fingerprints.py),
        by key: (stored id, contacts, domains).  Their rows were not staged; the copy of the
        stored directory leaves out their domains and active contacts (which the plan would
        find equal), and they count as unchanged.  Before ``stage_known``."""
        self.skipped = skipped
        self.write(
            "INSERT INTO s_skip VALUES (?,?,?,?)",
            [(key, id_, contacts_, domains) for key, (id_, contacts_, domains) in skipped.items()],
        )

    def _add_skipped(self) -> None:
        """The skipped customers among the file's, picked as they are (before ``plan``)."""
        self.db.execute(
            "INSERT INTO f_customers(ckey, name, pos, picked) "
            "SELECT s.ckey, k.name, 0, s.customer_id FROM s_skip s "
            "JOIN k_customers k ON k.id = s.customer_id"
        )

    def stage_known_file(self, path: str) -> None:
        """``stage_known`` from the SQLite database file ``path``, attached here and copied
        in SQL (no row passes through Python but a customer's name for its key), in one
        read transaction: one snapshot, no write lock, as through a connection."""
        db = self.db
        db.create_function("customer_key", 1, customer_key, deterministic=True)
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("ATTACH DATABASE ? AS store", (path,))
        try:
            db.execute("BEGIN")
            db.execute(
                "INSERT INTO k_customers SELECT id, customer_key(name), name, "
                "archived_at IS NOT NULL FROM store.customers"
            )
            skipping = bool(self.skipped)
            db.execute(
                "INSERT OR IGNORE INTO k_domains SELECT customer_id, domain "
                "FROM store.customer_domains"
                + (" WHERE customer_id NOT IN (SELECT customer_id FROM s_skip)" if skipping else "")
            )
            db.execute(
                "INSERT INTO k_contacts SELECT id, customer_id, name, archived_at IS NOT NULL "
                "FROM store.contacts"
                + (
                    " WHERE archived_at IS NOT NULL OR customer_id IS NULL "
                    "OR customer_id NOT IN (SELECT customer_id FROM s_skip)"
                    if skipping
                    else ""
                )
            )
            db.execute(
                "INSERT OR IGNORE INTO k_addresses SELECT address, contact_id "
                "FROM store.contact_addresses"
                + (" WHERE contact_id IN (SELECT id FROM k_contacts)" if skipping else "")
            )
            db.execute("COMMIT")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute("DETACH DATABASE store")
        db.execute("BEGIN")
        self._index_known()

    def stage_known(self, conn: Connection) -> None:
        """A copy of every customer and contact, archived ones included, with their domains
        and addresses, read through ``conn`` (one snapshot when it is in a transaction).
        Straight from the driver's cursor: a million rows through SQLAlchemy's result
        objects cost seconds."""
        db = self.db
        db.execute("BEGIN")
        driver: Any = conn.connection.driver_connection

        skip = sorted(id_ for id_, _, _ in self.skipped.values())
        named = conn.dialect.name == "postgresql"

        def copy(sql: str, query: str, shape: Any = None) -> None:
            # PostgreSQL: a server-side cursor, or the driver would hold every row at once.
            cursor = driver.cursor(name="syncd_directory") if named else driver.cursor()
            try:
                if skip and "%s" in query:  # only PostgreSQL is given the skipped ids
                    cursor.execute(query, (skip,))
                else:
                    cursor.execute(query)
                while part := cursor.fetchmany(_BATCH):
                    db.executemany(sql, part if shape is None else [shape(r) for r in part])
            finally:
                cursor.close()

        copy(
            "INSERT INTO k_customers VALUES (?,?,?,?)",
            "SELECT id, name, CASE WHEN archived_at IS NULL THEN 0 ELSE 1 END FROM customers",
            lambda r: (r[0], customer_key(r[1]), r[1], r[2]),
        )
        # The skipped customers' domains and active contacts are left out: in PostgreSQL by
        # their ids (an array, hashed by the server's NOT IN); elsewhere (an in-memory SQLite database, tests)
        # read whole and deleted here.
        kept = (
            " AND (archived_at IS NOT NULL OR customer_id IS NULL "
            "OR customer_id NOT IN (SELECT unnest(%s::bigint[])))"
            if skip and named
            else ""
        )
        copy(
            "INSERT OR IGNORE INTO k_domains VALUES (?,?)",
            "SELECT customer_id, domain FROM customer_domains"
            + (" WHERE customer_id NOT IN (SELECT unnest(%s::bigint[]))" if skip and named else ""),
        )
        copy(
            "INSERT INTO k_contacts VALUES (?,?,?,?)",
            "SELECT id, customer_id, name, CASE WHEN archived_at IS NULL THEN 0 ELSE 1 END "
            f"FROM contacts WHERE TRUE{kept}",
        )
        copy(
            "INSERT OR IGNORE INTO k_addresses VALUES (?,?)",
            "SELECT a.address, a.contact_id FROM contact_addresses a JOIN contacts c "
            f"ON c.id = a.contact_id WHERE TRUE{kept}"
            if kept
            else "SELECT address, contact_id FROM contact_addresses",
        )
        if skip and not named:
            self._drop_skipped()
        self._index_known()

    def _drop_skipped(self) -> None:
        db = self.db
        db.execute("DELETE FROM k_domains WHERE customer_id IN (SELECT customer_id FROM s_skip)")
        db.execute(
            "DELETE FROM k_contacts WHERE NOT archived "
            "AND customer_id IN (SELECT customer_id FROM s_skip)"
        )
        db.execute("DELETE FROM k_addresses WHERE contact_id NOT IN (SELECT id FROM k_contacts)")

    def _index_known(self) -> None:
        """Indexes the plan reads the stored copy by; ends the transaction."""
        db = self.db
        db.execute("CREATE INDEX k_customers_key ON k_customers(ckey)")
        db.execute("CREATE INDEX k_contacts_name ON k_contacts(customer_id, name)")
        db.execute("CREATE INDEX k_addresses_contact ON k_addresses(contact_id)")
        db.execute("COMMIT")

    # --- the plan ---------------------------------------------------------------------------

    def plan(self, *, mirror: bool) -> None:
        """Decide, as domain/directory_plan.plan does: the stored customer each file
        customer is, the stored contact each file contact is, and what changes."""
        self.mirror = mirror
        db = self.db
        db.execute("BEGIN")
        if self.skipped:
            self._add_skipped()
        # The stored customer with the same key: the exact spelling first, then an active
        # one, then the oldest.
        db.execute(
            "UPDATE f_customers SET picked = p.id FROM (SELECT c.ckey AS ckey, k.id AS id, "
            "row_number() OVER (PARTITION BY c.ckey "
            "ORDER BY k.name != c.name, k.archived, k.id) AS n "
            "FROM f_customers c JOIN k_customers k ON k.ckey = c.ckey) p "
            "WHERE p.ckey = f_customers.ckey AND p.n = 1"
        )
        db.execute("CREATE INDEX f_customers_picked ON f_customers(picked)")
        db.execute("COMMIT")
        self._assign_contacts()
        db.execute("BEGIN")
        removes = (
            "OR EXISTS (SELECT 1 FROM k_domains kd WHERE kd.customer_id = f_customers.picked "
            "AND NOT EXISTS (SELECT 1 FROM f_domains d WHERE d.ckey = f_customers.ckey "
            "AND d.domain = kd.domain))"
            if mirror
            else ""
        )
        db.execute(
            "UPDATE f_customers SET changed = 1 WHERE picked IS NOT NULL AND ("
            "EXISTS (SELECT 1 FROM k_customers k WHERE k.id = f_customers.picked "
            "AND (k.archived OR k.name != f_customers.name)) "
            "OR EXISTS (SELECT 1 FROM f_domains d WHERE d.ckey = f_customers.ckey "
            "AND NOT EXISTS (SELECT 1 FROM k_domains kd WHERE kd.customer_id = f_customers.picked "
            f"AND kd.domain = d.domain)) {removes})"
        )
        contact_removes = (
            "OR EXISTS (SELECT 1 FROM k_addresses ka WHERE ka.contact_id = f.assigned "
            "AND NOT EXISTS (SELECT 1 FROM f_addresses a WHERE a.address = ka.address))"
            if mirror
            else ""
        )
        db.execute(
            "CREATE TABLE p_contacts AS SELECT f.id AS id, f.assigned AS contact_id, "
            "c.picked AS customer_id, "
            "CASE WHEN f.name != '' AND f.name != k.name THEN f.name END AS name, "
            "(c.picked IS NULL OR k.customer_id IS NOT c.picked) AS move, "
            "k.archived AS restore "
            "FROM f_contacts f JOIN f_customers c ON c.ckey = f.ckey "
            "JOIN k_contacts k ON k.id = f.assigned "
            "WHERE (f.name != '' AND f.name != k.name) OR c.picked IS NULL "
            "OR k.customer_id IS NOT c.picked OR k.archived "
            "OR EXISTS (SELECT 1 FROM f_addresses a WHERE a.contact = f.id AND NOT EXISTS "
            "(SELECT 1 FROM k_addresses ka WHERE ka.address = a.address "
            f"AND ka.contact_id = f.assigned)) {contact_removes}"
        )
        if mirror:
            db.execute(
                "CREATE TABLE p_archive_customers AS SELECT id FROM k_customers "
                "WHERE NOT archived AND id NOT IN "
                "(SELECT picked FROM f_customers WHERE picked IS NOT NULL) ORDER BY id"
            )
            db.execute(
                "CREATE TABLE p_archive_contacts AS SELECT id FROM k_contacts "
                "WHERE NOT archived AND id NOT IN "
                "(SELECT assigned FROM f_contacts WHERE assigned IS NOT NULL) ORDER BY id"
            )
        else:
            db.execute("CREATE TABLE p_archive_customers(id INTEGER)")
            db.execute("CREATE TABLE p_archive_contacts(id INTEGER)")
        db.execute("COMMIT")

    def _assign_contacts(self) -> None:
        """The stored contact each file contact is: first by address (a contact holding one
        of its addresses, in file order), then, for file contacts still without one, by
        name at the same customer; each stored contact is taken at most once.  Greedy in
        file order, so streamed through here rather than said in SQL."""
        db = self.db
        taken: set[int] = set()
        by_address = _Greedy(taken)
        assign = "UPDATE f_contacts SET assigned = ? WHERE id = ?"
        db.execute("BEGIN")
        for part in self.rows(
            "SELECT a.contact, ka.contact_id FROM f_addresses a "
            "JOIN k_addresses ka ON ka.address = a.address ORDER BY a.contact, a.line"
        ):
            # A batch at a time: a million pairs are 100 MB.
            db.executemany(assign, by_address.pick(part))
        db.execute("COMMIT")
        db.execute("CREATE INDEX f_contacts_assigned ON f_contacts(assigned)")
        by_name = _Greedy(taken)
        chosen: list[tuple[int, int]] = []
        for part in self.rows(
            "SELECT f.id, k.id FROM f_contacts f JOIN f_customers c ON c.ckey = f.ckey "
            "JOIN k_contacts k ON k.customer_id = c.picked AND k.name = f.name "
            "WHERE f.assigned IS NULL AND f.name != '' ORDER BY f.id, k.archived, k.id"
        ):
            chosen += by_name.pick(part)
        self.write(assign, chosen)

    # --- what the plan says -----------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        customers_ = self.db.execute(
            "SELECT sum(c.picked IS NULL), sum(c.changed AND NOT k.archived), "
            "sum(c.picked IS NOT NULL AND k.archived), sum(c.picked IS NOT NULL AND NOT c.changed) "
            "FROM f_customers c LEFT JOIN k_customers k ON k.id = c.picked"
        ).fetchone()
        contacts_ = self.db.execute(
            "SELECT sum(f.assigned IS NULL), "
            "(SELECT count(*) FROM p_contacts WHERE NOT restore), "
            "(SELECT count(*) FROM p_contacts WHERE restore), "
            "coalesce(sum(f.assigned IS NOT NULL), 0) - (SELECT count(*) FROM p_contacts) "
            "+ (SELECT coalesce(sum(contacts), 0) FROM s_skip) FROM f_contacts f"
        ).fetchone()
        out = {}
        for kind, found, archived in (
            ("customers", customers_, "p_archive_customers"),
            ("contacts", contacts_, "p_archive_contacts"),
        ):
            added, updated, restored, unchanged = (int(n or 0) for n in found)
            out[kind] = {
                "added": added,
                "updated": updated,
                "archived": int(self.one(f"SELECT count(*) FROM {archived}")),
                "restored": restored,
                "unchanged": unchanged,
            }
        return out

    def guard(self) -> dict[str, int]:
        """What the empty-file guard weighs: the file's customers, contacts and domains
        against the stored active customers, contacts and customers with a domain."""
        return {
            "file_customers": int(self.one("SELECT count(*) FROM f_customers")),
            "file_contacts": int(
                self.one(
                    "SELECT (SELECT count(*) FROM f_contacts) "
                    "+ (SELECT coalesce(sum(contacts), 0) FROM s_skip)"
                )
            ),
            "file_domains": int(
                self.one(
                    "SELECT (SELECT count(*) FROM f_domains) "
                    "+ (SELECT coalesce(sum(domains), 0) FROM s_skip)"
                )
            ),
            "active": int(self.one("SELECT count(*) FROM k_customers WHERE NOT archived")),
            "active_contacts": int(self.one("SELECT count(*) FROM k_contacts WHERE NOT archived")),
            "with_domains": int(
                self.one(
                    "SELECT count(*) FROM k_customers k WHERE NOT archived AND EXISTS "
                    "(SELECT 1 FROM k_domains d WHERE d.customer_id = k.id)"
                )
            ),
        }

    def archived_names(self) -> list[str]:
        return [
            name
            for (name,) in self.db.execute(
                "SELECT name FROM k_customers WHERE id IN (SELECT id FROM p_archive_customers) "
                "ORDER BY name"
            )
        ]


class _Greedy:
    """Each file contact's first stored contact not taken yet, over (file contact, stored
    contact) pairs ordered by file contact and read in parts: a stored contact is taken
    at most once (``taken`` is shared by the passes that assign)."""

    def __init__(self, taken: set[int]) -> None:
        self._taken = taken
        self._current: int | None = None  # the file contact last given one

    def pick(self, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """(stored id, file contact id) of the pairs chosen in this part."""
        chosen: list[tuple[int, int]] = []
        for contact, owner in pairs:
            if contact == self._current or owner in self._taken:
                continue
            self._taken.add(owner)
            chosen.append((owner, contact))
            self._current = contact
        return chosen
