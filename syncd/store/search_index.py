"""The search index of records, kept in the records' own transactions.

Each record's tokens (``domain/search_text.index_terms``) are stored as they are: on SQLite
in an FTS5 table (``tokenize='ascii'`` splits the stored tokens on spaces and leaves
non-ASCII letters alone), one entry per record; on PostgreSQL 32 records to a compressed
row under a GIN index of their lexemes (``store/search_pg.py``, where the layout is told).
Neither keeps the tokens' positions (FTS5 ``detail=none``): they were most of the index's
size and only phrases need them, so a phrase is checked on its candidates' tokens instead
(``search_text.matches``).  The objects differ per engine, so they are made here
(``create``) and by migrations 0023 and 0033, not by ``schema/tables.py``; a record's
deletion takes its tokens with it (a trigger on SQLite; on PostgreSQL the deleter reindexes).

Searching first bounds the work: the newest ``CANDIDATES`` matching records that pass the
filters are taken (by id, from the index), a phrase checked on them, then ranked.  A word
in every record thus costs a few thousand index entries, never a million scores.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    bindparam,
    column,
    func,
    literal_column,
    select,
    table,
    text,
)

from syncd.domain.search_text import (
    Query,
    Term,
    fts5_match,
    index_terms,
    matches,
    needs_check,
    occurrences,
)
from syncd.schema.tables import participants, record_customers, records
from syncd.store import search_pg
from syncd.store.sql import chunks

INDEX = "record_search"
# The SQL function (registered on every SQLite connection syncd opens, store/database.py)
# that reads a record's stored tokens back.
INFLATE = "syncd_search_terms"
CANDIDATES = 1_000  # matching records ranked per query, newest first
# A customer, contact or owner with at most this many records is searched from its
# records (the index is probed per record); above it, from the index's newest matches.
NARROW = 20_000
# On SQLite, one with at most this many is searched in its records' stored tokens, without
# the index (reading and matching them costs less than a probe of the index each).
SCAN = 5_000

# SQLite: a contentless FTS5 table holding which records have each token (no positions:
# a third of the text's size), and each record's tokens compressed beside it: FTS5 needs
# them to delete the record's entries, and the tokens of Chinese pairs are twice the text.
SQLITE_FTS = (
    f"CREATE VIRTUAL TABLE {INDEX} USING fts5(terms, content='', detail=none, tokenize='ascii')"
)
_SQLITE_CREATE = (
    SQLITE_FTS,
    f"CREATE TABLE {INDEX}_terms (record_id INTEGER PRIMARY KEY, terms BLOB NOT NULL)",
    # Every way a record leaves (forget, a logged record deleted): its entries leave too.
    f"CREATE TRIGGER {INDEX}_record_deleted AFTER DELETE ON records BEGIN "
    f"INSERT INTO {INDEX} ({INDEX}, rowid, terms) SELECT 'delete', record_id, "
    f"{INFLATE}(terms) FROM {INDEX}_terms WHERE record_id = old.id; "
    f"DELETE FROM {INDEX}_terms WHERE record_id = old.id; END",
)


def is_index_object(name: str | None) -> bool:
    """Whether a table or index belongs to the search index (not in ``schema/tables.py``:
    FTS5's own tables exist on SQLite only)."""
    return name is not None and (name.startswith(INDEX) or name.startswith(f"ix_{INDEX}"))


def create(conn: Connection) -> None:
    """Make the index's tables (empty)."""
    if not _sqlite(conn):
        search_pg.create(conn)
        return
    for statement in _SQLITE_CREATE:
        conn.exec_driver_sql(statement)


def drop(conn: Connection) -> None:
    if not _sqlite(conn):
        search_pg.drop(conn)
        return
    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {INDEX}_record_deleted")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {INDEX}_terms")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {INDEX}")


def pack(terms: str) -> bytes:
    return zlib.compress(terms.encode(), 6)


def unpack(packed: bytes) -> str:
    """``INFLATE``: stored tokens as FTS5 indexed them."""
    return zlib.decompress(packed).decode()


def clear(conn: Connection) -> None:
    """Empty the index."""
    if _sqlite(conn):
        conn.exec_driver_sql(f"INSERT INTO {INDEX} ({INDEX}) VALUES ('delete-all')")
        conn.exec_driver_sql(f"DELETE FROM {INDEX}_terms")
    else:
        search_pg.clear(conn)


def _sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


# Writing --------------------------------------------------------------------------------


def record_parts(record: Mapping[str, Any], people: Iterable[Mapping[str, Any]] = ()) -> list[str]:
    """The texts of a record search sees, in order: subject, participants' names and
    addresses, organizer and location, then the body as far as it is kept (the body with
    ``store = "full"``, else the snippet; none with ``"metadata"``)."""
    parts: list[str] = [record.get("subject") or ""]
    for person in people:
        parts += [person.get("name") or "", person["address"]]
    parts += [record.get("organizer") or "", record.get("location") or ""]
    parts.append(record.get("body") or record.get("snippet") or "")
    return parts


def add(
    conn: Connection, terms: Mapping[int, str], packed: Mapping[int, bytes] | None = None
) -> None:
    """Index records not indexed yet: {record id: index_terms}; ``packed`` has the
    ``pack`` of some of them already (SQLite)."""
    if not terms:
        return
    if _sqlite(conn):
        rows = list(terms.items())
        done = packed or {}
        conn.exec_driver_sql(f"INSERT INTO {INDEX} (rowid, terms) VALUES (?, ?)", rows)
        conn.exec_driver_sql(
            f"INSERT INTO {INDEX}_terms (record_id, terms) VALUES (?, ?)",
            [(rid, done.get(rid) or pack(t)) for rid, t in rows],
        )
        return
    search_pg.add(conn, terms)


def unindex_records(conn: Connection, record_ids: Iterable[int]) -> None:
    """Drop these records from the index."""
    if not _sqlite(conn):
        search_pg.unindex(conn, list(record_ids))
        return
    table_ = f"{INDEX}_terms"
    for part in chunks(sorted(set(record_ids))):
        ids = {"ids": list(part)}
        if _sqlite(conn):
            stored = conn.execute(
                text(f"SELECT record_id, terms FROM {table_} WHERE record_id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                ids,
            ).all()
            if stored:
                conn.exec_driver_sql(
                    f"INSERT INTO {INDEX} ({INDEX}, rowid, terms) VALUES ('delete', ?, ?)",
                    [(rid, unpack(packed)) for rid, packed in stored],
                )
        conn.execute(
            text(f"DELETE FROM {table_} WHERE record_id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            ids,
        )


def current_terms(conn: Connection, record_ids: list[int]) -> dict[int, str]:
    """{id: index_terms} of the stored records among ``record_ids``, read from the database."""
    found: dict[int, dict[str, Any]] = {}
    people: dict[int, list[Mapping[str, Any]]] = {}
    for part in chunks(sorted(set(record_ids))):
        for row in conn.execute(
            select(
                records.c.id, records.c.subject, records.c.snippet, records.c.body,
                records.c.organizer, records.c.location,
            ).where(records.c.id.in_(part))
        ).mappings():  # fmt: skip
            found[row["id"]] = dict(row)
        for row in conn.execute(
            select(participants.c.record_id, participants.c.name, participants.c.address)
            .where(participants.c.record_id.in_(part))
            .order_by(participants.c.id)
        ).mappings():
            people.setdefault(row["record_id"], []).append(dict(row))
    return {rid: index_terms(record_parts(row, people.get(rid, ()))) for rid, row in found.items()}


def reindex_records(conn: Connection, record_ids: Iterable[int]) -> None:
    """Index these records as they are stored now; an id with no record leaves the index."""
    for part in chunks(sorted(set(record_ids))):
        unindex_records(conn, part)
        add(conn, current_terms(conn, list(part)))
        if not _sqlite(conn):  # a record deleted since it was read leaves again
            search_pg.gone(conn, part)


def rebuild(conn: Connection, *, batch: int = 5_000) -> int:
    """Index every record afresh (``syncd db reindex``, migrations 0023 and 0033); returns
    how many."""
    if not _sqlite(conn):
        return search_pg.rebuild(conn, lambda ids: current_terms(conn, ids))
    clear(conn)
    done, last = 0, 0
    while True:
        ids = list(
            conn.scalars(
                select(records.c.id).where(records.c.id > last).order_by(records.c.id).limit(batch)
            )
        )
        if not ids:
            break
        add(conn, current_terms(conn, ids))
        done, last = done + len(ids), ids[-1]
    merge(conn)
    return done


def merge(conn: Connection) -> None:
    """On SQLite, merge FTS5's segments into one: the entries of deleted or rewritten rows
    leave the file (with ``secure_delete``, their pages are zeroed)."""
    if _sqlite(conn):
        conn.exec_driver_sql(f"INSERT INTO {INDEX} ({INDEX}) VALUES ('optimize')")


# Searching ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    customer_id: int | None = None
    contact_address: str | None = None
    owner: str | None = None
    kinds: tuple[str, ...] = ()
    since: datetime | None = None  # occurred_at >= since
    before: datetime | None = None  # occurred_at < before


_FTS = table(INDEX, column("rowid", Integer), column("terms"))


def _narrow(filters: Filters) -> Select[Any] | None:
    """The ids of the one narrow filter's records (customer, contact or owner), if any."""
    if filters.customer_id is not None:
        rc = record_customers.c
        return select(rc.record_id).where(rc.customer_id == filters.customer_id)
    if filters.contact_address is not None:
        p = participants.c
        return select(p.record_id).where(p.address == filters.contact_address)
    if filters.owner is not None:
        return select(records.c.id).where(records.c.owner == filters.owner)
    return None


def _filtered(query: Select[Any], key: Any, filters: Filters) -> Select[Any]:
    if filters.customer_id is not None:
        rc = record_customers.c
        query = query.where(
            key.in_(select(rc.record_id).where(rc.customer_id == filters.customer_id))
        )
    if filters.contact_address is not None:
        p = participants.c
        query = query.where(
            key.in_(select(p.record_id).where(p.address == filters.contact_address))
        )
    wanted = []
    if filters.owner is not None:
        wanted.append(records.c.owner == filters.owner)
    if filters.kinds:
        wanted.append(records.c.kind.in_(filters.kinds))
    if filters.since is not None:
        wanted.append(records.c.occurred_at >= filters.since)
    if filters.before is not None:
        wanted.append(records.c.occurred_at < filters.before)
    if wanted:
        query = query.join(records, records.c.id == key).where(*wanted)
    return query


def search(
    conn: Connection,
    query: Query,
    filters: Filters = Filters(),
    *,
    limit: int = 20,
    reader: bool = False,
) -> list[tuple[int, float]]:
    """(record id, score) of the best matches, best first, the newest first among equals;
    among the newest ``CANDIDATES`` matching records that pass the filters.  ``reader``:
    ``conn`` never writes (a server's read connection), so a term's count of records may
    come from the last search's while the index is unchanged."""
    scored = _candidates(conn, query, filters, CANDIDATES, reader=reader)
    if not scored:
        return []
    when = dict(
        conn.execute(
            select(records.c.id, records.c.occurred_at).where(records.c.id.in_(sorted(scored)))
        ).all()
    )
    # An id without a record (an entry a deletion outside syncd left behind) is not shown.
    alive = [i for i in scored if i in when]
    ranked = sorted(alive, key=lambda i: (-round(scored[i], 6), -when[i].timestamp(), -i))
    return [(i, round(scored[i], 6)) for i in ranked[:limit]]


def matching_ids(conn: Connection, query: Query, filters: Filters = Filters()) -> set[int]:
    """Every matching record's id, unbounded (forget's sweep, the engines' tests)."""
    return set(_candidates(conn, query, filters, None))


def _candidates(
    conn: Connection, query: Query, filters: Filters, cap: int | None, *, reader: bool = False
) -> dict[int, float]:
    if _sqlite(conn):
        return _sqlite_candidates(conn, query, filters, cap, reader=reader)
    ids: list[int] | None = None
    if filters != Filters():
        # The records passing the filters, newest first, if few: only their lines are
        # read (old meetings behind a million newer mails are found, and fast).
        key = select(records.c.id).subquery()
        stmt = _filtered(select(key.c.id), key.c.id, filters)
        ids = list(conn.scalars(stmt.order_by(key.c.id.desc()).limit(NARROW + 1)))
        ids = ids if len(ids) <= NARROW else None
    found = search_pg.candidates(
        conn,
        query,
        cap,
        narrow=ids,
        restrict=lambda stmt, key: _filtered(stmt, key, filters),
    )
    if cap is None:
        return dict.fromkeys(found, 0.0)
    return search_pg.scores(found)


def _sqlite_candidates(
    conn: Connection, query: Query, filters: Filters, cap: int | None, *, reader: bool = False
) -> dict[int, float]:
    narrow = _narrow(filters)
    few = None if narrow is None else _few(conn, narrow, filters)
    if few is not None:
        # A customer's or contact's few records: their stored tokens are read and matched
        # here, newest first, instead of probing the index once per record.
        found = _stored_matches(conn, few, query, cap, check=True)
    else:
        match = literal_column(INDEX).op("MATCH")(fts5_match(query))
        stmt: Select[Any] = select(_FTS.c.rowid).select_from(_FTS).where(match)
        if narrow is not None and _small(conn, narrow):
            # Probe the index once per record of the filter: a common word costs no scan.
            stmt = stmt.where(_FTS.c.rowid.in_(narrow))
        stmt = _filtered(stmt, _FTS.c.rowid, filters).order_by(_FTS.c.rowid.desc())
        if cap is not None:
            stmt = stmt.limit(cap)
        ids = list(conn.scalars(stmt))
        if cap is None and not needs_check(query):
            return dict.fromkeys(ids, 0.0)
        found = _stored_matches(conn, ids, query, None, check=needs_check(query))
    if cap is None:
        return dict.fromkeys(found, 0.0)
    return _bm25(conn, query, found, reader=reader)


def _few(conn: Connection, narrow: Select[Any], filters: Filters) -> list[int] | None:
    """The ids of the narrow filter's records passing the other filters, newest first,
    if there are at most ``SCAN``."""
    ids = narrow.subquery()
    key = next(iter(ids.c))
    stmt = _filtered(select(key), key, filters).order_by(key.desc()).limit(SCAN + 1)
    found = list(conn.scalars(stmt))
    return found if len(found) <= SCAN else None


def _stored_matches(
    conn: Connection, ids: list[int], query: Query, cap: int | None, *, check: bool
) -> dict[int, list[str]]:
    """Those of ``ids`` (in order) whose tokens, as FTS5 indexed them, match the query
    (``check``: else they are taken as matching), at most ``cap``: {id: tokens}."""
    found: dict[int, list[str]] = {}
    for part in chunks(ids):
        stored: dict[int, bytes] = dict(
            conn.execute(
                text(f"SELECT record_id, terms FROM {INDEX}_terms WHERE record_id IN :ids")
                .bindparams(bindparam("ids", expanding=True)),
                {"ids": list(part)},
            ).all()
        )  # fmt: skip
        for rid in part:
            if rid not in stored:
                continue
            words = unpack(stored[rid]).split()
            if not check or matches(words, query):
                found[rid] = words
                if cap is not None and len(found) >= cap:
                    return found
    return found


# FTS5's bm25 constants.  Its own bm25() needs the tokens' positions (detail=full), which
# the index no longer keeps, so the same formula is computed here on the stored tokens.
_K1, _B = 1.2, 0.75


def _bm25(
    conn: Connection, query: Query, found: dict[int, list[str]], *, reader: bool = False
) -> dict[int, float]:
    """BM25 of each record (higher is better), as FTS5 computes it: idf from how many
    records have the term, its count in the record, the record's length against the mean.
    A query of one term leaves idf out (the same for every record, and counting the records
    of a common word is most of the query's time)."""
    found_blocks = conn.execute(text(f"SELECT id, block FROM {INDEX}_data WHERE id IN (1, 10)"))
    blocks: dict[int, bytes] = {int(i): bytes(b) for i, b in found_blocks}
    rows, average = _totals(blocks.get(1) or b"")
    idf = []
    for term in query.include if len(query.include) > 1 else ():
        hits = _records_with(conn, term, (blocks.get(1), blocks.get(10)) if reader else None)
        value = math.log((rows - hits + 0.5) / (hits + 0.5))
        idf.append(value if value > 0 else 1e-6)
    scores: dict[int, float] = {}
    for rid, words in found.items():
        norm = _K1 * (1 - _B + _B * len(words) / average)
        score = 0.0
        for term, weight in zip(query.include, idf or [1.0], strict=True):
            tf = occurrences(words, term)
            score += weight * tf * (_K1 + 1) / (tf + norm)
        scores[rid] = score
    return scores


# How many records have a term, as long as the index is unchanged: counting a common
# word's records (all of them) was most of a two-word search's time.  Keyed by database
# and term, valid while FTS5's averages and structure rows (id 1 and 10) are the same
# bytes: every committed write to the index rewrites the structure (its cookie counts the
# changes).  Only for connections that never write: one's own uncommitted rows are counted
# but leave the structure as it was.
_HITS: dict[tuple[str, Term], tuple[tuple[bytes | None, bytes | None], int]] = {}
_HITS_KEPT = 4096
_HITS_LOCK = threading.Lock()


def _records_with(
    conn: Connection, term: Term, version: tuple[bytes | None, bytes | None] | None
) -> int:
    key = (str(conn.engine.url), term)
    if version is not None and None not in version:
        with _HITS_LOCK:
            known = _HITS.get(key)
        if known is not None and known[0] == version:
            return known[1]
    hits = int(
        conn.scalar(
            text(f"SELECT count(*) FROM {INDEX} WHERE {INDEX} MATCH :q"),
            {"q": fts5_match(Query((term,)))},
        )
        or 0
    )
    if version is not None and None not in version:
        with _HITS_LOCK:
            if len(_HITS) >= _HITS_KEPT:
                _HITS.clear()
            _HITS[key] = (version, hits)
    return hits


def _totals(blob: bytes) -> tuple[int, float]:
    """(records indexed, mean tokens per record), from FTS5's own record of them (the
    ``averages`` row: varints, the number of rows then each column's token total)."""
    values: list[int] = []
    i = 0
    while i < len(blob) and len(values) < 2:
        value = 0
        for n in range(9):
            byte = blob[i]
            i += 1
            if n == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        values.append(value)
    rows, total = [*values, 0, 0][:2]
    return max(rows, 1), max(total / max(rows, 1), 1.0)


def _small(conn: Connection, narrow: Select[Any]) -> bool:
    counted = select(func.count()).select_from(narrow.limit(NARROW + 1).subquery())
    return (conn.scalar(counted) or 0) <= NARROW


def index_size(conn: Connection) -> int:
    """Bytes the index takes on disk (its tables and indexes)."""
    if _sqlite(conn):
        return int(
            conn.scalar(
                text("SELECT sum(pgsize) FROM dbstat WHERE name LIKE :n"), {"n": f"{INDEX}%"}
            )
            or 0
        )
    return search_pg.size(conn)
