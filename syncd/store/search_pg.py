"""The search index on PostgreSQL: records' tokens kept ``BLOCK`` to a row, compressed.

One row per record (a ``tsvector`` under GIN, as FTS5 keeps one entry per record) cost 2.8x
the text it indexes: a ``tsvector`` spends 4 bytes of header on each token, a row 36 bytes
of its own, and PostgreSQL compresses only rows over 2 kB.  So a record's tokens
(``index_terms``, its "line") are kept with its neighbours': the row of block ``id // BLOCK``
holds on its line ``id % BLOCK`` the record's line (empty for a record with none, or gone).
Such a row is a few kB, which PostgreSQL compresses.  A GIN index over an expression of the
row (its lexemes, ``LEXEMES``: not stored twice) holds one entry per row, so a word in every
record costs one posting per 32 records.  1.2x the text on bench/search.py's million records.

A line over ``LINE_MAX`` bytes (a mail's whole body) has a row of its own instead
(``OWN``, keyed by the record, under the same GIN expression): it is compressed alone, and
reading a block's small lines never decompresses a long one.

Searching asks the GIN indexes for the rows holding every token of the query, newest first,
then has the database read those rows' lines and keep the ones that hold them: a token
padded with spaces is found only as a whole token (tokens hold no space nor newline), a
prefix with its leading space only.  Phrases are then checked on the lines' tokens
(``search_text.matches``), as on SQLite.  Rows are read in growing batches until enough
records match, at most ``MAX_BYTES`` of lines for a ranked search (``NARROW_MAX_BYTES`` for
a filter's records, read without the index's bound on their age).

A record's deletion does not touch a block (no two transactions then wait for each other
across a record and a block): the deleter empties the record's line after (forget, a logged
record deleted: ``reindex_records``), searches show no record that is gone, and a writer of
lines it read from records empties those of records deleted meanwhile (``gone``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Integer, Select, String, column, select, text

from syncd.domain.search_text import Query, Term, matches, needs_check, occurrences, tsquery
from syncd.store.sql import chunks

INDEX = "record_search"
OWN = f"{INDEX}_own"
BLOCK = 32  # records a row: 16 compressed to 1.7x the text, 32 to 1.33x, 64 to 1.23x (200k)
LINE_MAX = 1_500  # bytes of a line kept in a block (a block's row: 48 kB at most)
# Lines a ranked search reads at most (about 0.4 s here): a word in every record that a
# filter or an excluded word rules out must not have the whole table read.
MAX_BYTES = 64_000_000
# A filter's records are all read up to twice that (its 20,000 mails of 20 kB would take
# 1.2 s: the newest 6,000 or so are read).
NARROW_MAX_BYTES = 128_000_000
# Rows read a statement, doubling (a filter's records: 32 times as many).  A ranked search
# wants CANDIDATES records: a word in most records fills them from the first batch.
FIRST_BATCH, LAST_BATCH = 16, 512

LEXEMES = "syncd_search_lexemes"
_CREATE = (
    f"CREATE TABLE {INDEX} (block INTEGER PRIMARY KEY, terms TEXT NOT NULL)",
    f"CREATE TABLE {OWN} (record_id INTEGER PRIMARY KEY "
    "REFERENCES records (id) ON DELETE CASCADE, terms TEXT NOT NULL)",
    # pglz: 1.2x smaller than lz4 on the tokens (bench/search.py); the rows are written
    # once a capture batch, so its slower compression costs little.
    f"ALTER TABLE {INDEX} ALTER COLUMN terms SET COMPRESSION pglz",
    f"ALTER TABLE {OWN} ALTER COLUMN terms SET COMPRESSION pglz",
    # A row's lexemes: its lines' tokens, each once, verbatim (array_to_tsvector neither
    # parses nor folds: the domain did).
    f"CREATE FUNCTION {LEXEMES}(terms text) RETURNS tsvector LANGUAGE sql IMMUTABLE STRICT "
    "PARALLEL SAFE AS $$ SELECT array_to_tsvector(array_remove("
    "string_to_array(translate(terms, E'\\n', ' '), ' '), '')) $$",
    f"CREATE INDEX ix_{INDEX}_terms ON {INDEX} USING gin ({LEXEMES}(terms))",
    f"CREATE INDEX ix_{OWN}_terms ON {OWN} USING gin ({LEXEMES}(terms))",
    # The block with the lines of ``new`` that are not empty put over those of ``old``.
    "CREATE FUNCTION syncd_search_put(old text, new text) RETURNS text LANGUAGE sql "
    "IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT coalesce(string_agg(CASE WHEN "
    "coalesce(n.line, '') <> '' THEN n.line ELSE coalesce(o.line, '') END, E'\\n' ORDER BY i), '') "
    "FROM unnest(string_to_array(old, E'\\n')) WITH ORDINALITY AS o(line, i) "
    "FULL JOIN unnest(string_to_array(new, E'\\n')) WITH ORDINALITY AS n(line, i) USING (i) $$",
    # The block with these lines (0-based) emptied.
    "CREATE FUNCTION syncd_search_blank(terms text, lines integer[]) RETURNS text "
    "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT coalesce(string_agg("
    "CASE WHEN i - 1 = ANY(lines) THEN '' ELSE line END, E'\\n' ORDER BY i), '') "
    "FROM unnest(string_to_array(terms, E'\\n')) WITH ORDINALITY AS u(line, i) $$",
    # These records' lines emptied, block by block in order: two transactions doing it
    # wait for each other instead of deadlocking.
    "CREATE FUNCTION syncd_search_unindex(ids integer[]) RETURNS void LANGUAGE plpgsql AS $$ "
    "DECLARE b integer; l integer[]; BEGIN "
    f"FOR b, l IN SELECT u.id / {BLOCK}, array_agg(mod(u.id, {BLOCK})) FROM unnest(ids) AS u(id) "
    f"GROUP BY 1 ORDER BY 1 LOOP UPDATE {INDEX} SET terms = syncd_search_blank(terms, l) "
    "WHERE block = b; END LOOP; END $$",
    # The rows (blocks, or records with a row of their own) with every token of a query,
    # at most ``most`` (NULL: all), in no order.  Only the GIN index may answer: for a word
    # in most rows the planner would rather compute every row's lexemes (350 us a block),
    # as it cannot know that the index needs no recheck.
    "CREATE FUNCTION syncd_search_blocks(query tsquery, most integer) RETURNS SETOF integer "
    "LANGUAGE plpgsql STABLE SET enable_seqscan = off SET enable_indexscan = off AS $$ "
    f"BEGIN RETURN QUERY SELECT s.block FROM {INDEX} s WHERE {LEXEMES}(s.terms) @@ query "
    "LIMIT most; END $$",
    "CREATE FUNCTION syncd_search_owned(query tsquery, most integer) RETURNS SETOF integer "
    "LANGUAGE plpgsql STABLE SET enable_seqscan = off SET enable_indexscan = off AS $$ "
    f"BEGIN RETURN QUERY SELECT s.record_id FROM {OWN} s WHERE {LEXEMES}(s.terms) @@ query "
    "LIMIT most; END $$",
)
# The layout of migrations 0023 to 0032 (one tsvector a record), made again by 0033's
# downgrade.
ROW_PER_RECORD = (
    f"CREATE TABLE {INDEX} (record_id INTEGER PRIMARY KEY "
    "REFERENCES records (id) ON DELETE CASCADE, terms TSVECTOR NOT NULL)",
    f"CREATE INDEX ix_{INDEX}_terms ON {INDEX} USING gin (terms)",
)
_DROP = (
    f"DROP TABLE IF EXISTS {INDEX}",
    f"DROP TABLE IF EXISTS {OWN}",
    "DROP FUNCTION IF EXISTS syncd_search_owned(tsquery, integer)",
    "DROP FUNCTION IF EXISTS syncd_search_blocks(tsquery, integer)",
    "DROP FUNCTION IF EXISTS syncd_search_unindex(integer[])",
    "DROP FUNCTION IF EXISTS syncd_search_blank(text, integer[])",
    "DROP FUNCTION IF EXISTS syncd_search_put(text, text)",
    f"DROP FUNCTION IF EXISTS {LEXEMES}(text)",
)


def create(conn: Connection) -> None:
    for statement in _CREATE:
        conn.exec_driver_sql(statement)


def drop(conn: Connection) -> None:
    for statement in _DROP:
        conn.exec_driver_sql(statement)


# Writing --------------------------------------------------------------------------------


def _long(line: str) -> bool:
    return len(line) * 4 > LINE_MAX and len(line.encode()) > LINE_MAX


def add(conn: Connection, terms: Mapping[int, str]) -> None:
    """Put these records' lines (over what a line held).  Rows of their own first, then
    blocks: a deletion takes a record's lock, then its own row's (the cascading key), and
    never a block's, so no writer waits for it while holding a block another wants."""
    blocks: dict[int, list[str]] = {}
    own: dict[int, str] = {}
    for rid, line in terms.items():
        if _long(line):
            own[rid] = line
            continue
        lines = blocks.setdefault(rid // BLOCK, [])
        slot = rid % BLOCK
        if len(lines) <= slot:
            lines.extend([""] * (slot + 1 - len(lines)))
        lines[slot] = line
    for part in chunks(sorted(own)):
        conn.execute(
            text(
                f"INSERT INTO {OWN} (record_id, terms) SELECT i, t "
                "FROM unnest(CAST(:ids AS integer[]), CAST(:ts AS text[])) AS u(i, t) "
                # A record deleted since it was read is not indexed (instead of the key's
                # violation failing the batch).
                "WHERE EXISTS (SELECT 1 FROM records r WHERE r.id = u.i FOR KEY SHARE) "
                "ON CONFLICT (record_id) DO UPDATE SET terms = excluded.terms"
            ),
            {"ids": list(part), "ts": [own[i] for i in part]},
        )
    _put_blocks(conn, {b: "\n".join(lines) for b, lines in blocks.items()}, merge=True)


def _put_blocks(conn: Connection, rows: Mapping[int, str], *, merge: bool) -> None:
    """Write these blocks' rows: ``merge``: their lines that are not empty over the rows'
    (a capture's new records); else in place of the rows (a rebuild)."""
    kept = f"syncd_search_put({INDEX}.terms, excluded.terms)" if merge else "excluded.terms"
    # In block order: two capture transactions lock the blocks they share in one order.
    for part in chunks(sorted(rows)):
        conn.execute(
            text(
                f"INSERT INTO {INDEX} (block, terms) SELECT b, t "
                "FROM unnest(CAST(:bs AS integer[]), CAST(:ts AS text[])) AS u(b, t) "
                f"ON CONFLICT (block) DO UPDATE SET terms = {kept}"
            ),
            {"bs": list(part), "ts": [rows[b] for b in part]},
        )


def unindex(conn: Connection, record_ids: Sequence[int]) -> None:
    """Empty these records' lines (their rows of their own go)."""
    for part in chunks(sorted(set(record_ids))):
        ids = {"ids": list(part)}
        conn.execute(text(f"DELETE FROM {OWN} WHERE record_id = ANY(CAST(:ids AS integer[]))"), ids)
        conn.execute(text("SELECT syncd_search_unindex(CAST(:ids AS integer[]))"), ids)


def gone(conn: Connection, record_ids: Sequence[int]) -> None:
    """After writing lines read from these records: empty those of the records deleted
    since (a deletion does not touch the index: the deleter's transaction would hold a
    record while waiting for a block, the writer's a block while waiting for a record)."""
    for part in chunks(sorted(set(record_ids))):
        kept = set(
            conn.scalars(
                text("SELECT id FROM records WHERE id = ANY(CAST(:ids AS integer[]))"),
                {"ids": list(part)},
            )
        )
        if missing := [i for i in part if i not in kept]:
            unindex(conn, missing)


def rebuild(
    conn: Connection, read: Callable[[list[int]], dict[int, str]], *, blocks_a_batch: int = 160
) -> int:
    """Index every record afresh from ``read`` ({id: line} of stored ids), block range by
    block range, each range's rows locked before its records are read (a capture adding a
    record there meanwhile waits, then puts its line over the rewritten row).  Rows past
    the last record at the start are a capture's since: left as they are.  Returns how
    many records."""
    done, start = 0, 0
    last = conn.scalar(text("SELECT max(id) FROM records"))
    top = -1 if last is None else int(last) // BLOCK
    while start <= top:
        end = min(start + blocks_a_batch, top + 1)
        lo, hi = start * BLOCK, end * BLOCK
        locked = set(
            conn.scalars(
                text(
                    f"SELECT block FROM {INDEX} WHERE block >= :s AND block < :e "
                    "ORDER BY block FOR UPDATE"
                ),
                {"s": start, "e": end},
            )
        )
        ids = list(
            conn.scalars(
                text("SELECT id FROM records WHERE id >= :lo AND id < :hi ORDER BY id"),
                {"lo": lo, "hi": hi},
            )
        )
        lines = read(ids)
        rows: dict[int, list[str]] = {}
        own = {rid: line for rid, line in lines.items() if _long(line)}
        for rid, line in lines.items():
            if rid not in own:
                slots = rows.setdefault(rid // BLOCK, [""] * BLOCK)
                slots[rid % BLOCK] = line
        _put_blocks(conn, {b: "\n".join(s).rstrip("\n") for b, s in rows.items()}, merge=False)
        # Only rows locked above: one a capture made since is its records' (read or not).
        if empty := sorted(locked - set(rows)):
            conn.execute(
                text(f"DELETE FROM {INDEX} WHERE block = ANY(CAST(:empty AS integer[]))"),
                {"empty": empty},
            )
        short = [i for i in ids if i not in own]
        for part in chunks(short):
            conn.execute(
                text(f"DELETE FROM {OWN} WHERE record_id = ANY(CAST(:ids AS integer[]))"),
                {"ids": list(part)},
            )
        add(conn, own)
        gone(conn, ids)
        done += len(ids)
        start = end
    return done


def clear(conn: Connection) -> None:
    conn.exec_driver_sql(f"DELETE FROM {INDEX}")
    conn.exec_driver_sql(f"DELETE FROM {OWN}")


# Searching ------------------------------------------------------------------------------

Restrict = Callable[[Select[Any], Any], Select[Any]]


def _line_checks(query: Query) -> tuple[list[str], dict[str, str]]:
    """SQL conditions on ``padded`` (a line between spaces) that hold exactly when each
    token of every wanted term is on the line and no excluded one-token term is."""
    checks: list[str] = []
    params: dict[str, str] = {}

    def needle(term: Term, i: int) -> str:
        name = f"w{len(params)}"
        token = term.tokens[i]
        params[name] = f" {token}" if term.prefix and i == len(term.tokens) - 1 else f" {token} "
        return f"strpos(padded, :{name}) > 0"

    for term in query.include:
        checks += [needle(term, i) for i in range(len(term.tokens))]
    for term in query.exclude:
        if len(term.tokens) == 1:
            checks.append(f"NOT {needle(term, 0)}")
    return checks, params


def _rows(conn: Connection, function: str, query: Query, most: int | None) -> list[int]:
    found = conn.scalars(
        text(f"SELECT {function}(CAST(:q AS tsquery), :most)"),
        {"q": tsquery(Query(query.include)), "most": most},
    )
    return sorted(found, reverse=True)


def blocks(conn: Connection, query: Query, most: int | None = None) -> list[int]:
    """The blocks holding every token of the query's wanted terms, newest first; at most
    ``most`` of them (any of them, then)."""
    return _rows(conn, "syncd_search_blocks", query, most)


def owned(conn: Connection, query: Query, most: int | None = None) -> list[int]:
    """The same of the records with a row of their own: their ids."""
    return _rows(conn, "syncd_search_owned", query, most)


_BLOCK_LINES = (
    f"SELECT s.block * {BLOCK} + u.n - 1 AS id, u.line "
    f"FROM {INDEX} s CROSS JOIN LATERAL unnest(string_to_array(s.terms, E'\\n')) "
    "WITH ORDINALITY AS u(line, n) WHERE s.block = ANY(CAST(:rows AS integer[]))"
)
_OWN_LINES = (
    f"SELECT record_id AS id, terms AS line FROM {OWN} "
    "WHERE record_id = ANY(CAST(:owned AS integer[]))"
)


Counted = tuple[tuple[int, ...], int]  # each wanted term's count in a line, its tokens


def _lines(
    conn: Connection,
    query: Query,
    *,
    rows: Sequence[int] = (),
    owned_ids: Sequence[int] = (),
    ids: Sequence[int] | None = None,
    restrict: Restrict | None = None,
) -> list[tuple[int, Counted]]:
    """The matching records on these block ``rows`` and own rows, newest first (of ``ids``
    only, if given, else those ``restrict`` lets through): what ranking needs of each."""
    checks, params = _line_checks(query)
    parts: list[str] = []
    bound: dict[str, Any] = dict(params)
    if rows:
        parts.append(_BLOCK_LINES)
        bound["rows"] = list(rows)
    if owned_ids:
        parts.append(_OWN_LINES)
        bound["owned"] = list(owned_ids)
    if not parts:
        return []
    source = " UNION ALL ".join(parts)
    if ids is not None:
        source = (
            f"SELECT l.id, l.line FROM ({source}) AS l "
            "JOIN unnest(CAST(:ids AS integer[])) AS w(id) ON w.id = l.id"
        )
        bound["ids"] = list(ids)
    phrases = needs_check(query)
    lines = (
        text(
            f"SELECT l.id, l.line FROM ({source}) AS l "
            "CROSS JOIN LATERAL (SELECT ' ' || l.line || ' ' AS padded) AS p WHERE "
            + " AND ".join(checks)
            # A deleted record's line is emptied by its deleter's reindex (forget, a logged
            # record deleted), not by the deletion: until then it is not shown.
            + " AND EXISTS (SELECT 1 FROM records r WHERE r.id = l.id)"
        )
        .bindparams(**bound)
        .columns(column("id", Integer), column("line", String))
        .subquery()
    )
    stmt = select(lines.c.id, lines.c.line)
    if restrict is not None and ids is None:
        stmt = restrict(stmt, lines.c.id)
    out: list[tuple[int, Counted]] = []
    for rid, line in conn.execute(stmt.order_by(lines.c.id.desc())):
        if phrases:
            words = line.split()
            if matches(words, query):
                counts = tuple(occurrences(words, t) for t in query.include)
                out.append((int(rid), (counts, len(words))))
        else:  # no split: a mail's body is 3,000 tokens
            out.append((int(rid), (_counted(line, query), line.count(" ") + 1)))
    return out


def _counted(line: str, query: Query) -> tuple[int, ...]:
    """Each wanted one-token term's count in a line, without splitting it: found between
    spaces (the spaces doubled: a token right after the same token is counted too)."""
    doubled = " " + line.replace(" ", "  ") + " "
    return tuple(
        doubled.count(f" {term.tokens[0]}") if term.prefix else doubled.count(f" {term.tokens[0]} ")
        for term in query.include
    )


def _sizes(conn: Connection, rows: Sequence[int], owned_ids: Sequence[int]) -> int:
    """Bytes of these rows' lines (PostgreSQL knows them without decompressing)."""
    return int(
        conn.scalar(
            text(
                f"SELECT coalesce((SELECT sum(octet_length(terms)) FROM {INDEX} "
                "WHERE block = ANY(CAST(:rows AS integer[]))), 0) + "
                f"coalesce((SELECT sum(octet_length(terms)) FROM {OWN} "
                "WHERE record_id = ANY(CAST(:owned AS integer[]))), 0)"
            ),
            {"rows": list(rows), "owned": list(owned_ids)},
        )
        or 0
    )


def _batches(items: Sequence[int], first: int, last: int) -> Iterator[Sequence[int]]:
    size, start = first, 0
    while start < len(items):
        yield items[start : start + size]
        start += size
        size = min(size * 2, last)


def _narrow_work(conn: Connection, query: Query, narrow: Sequence[int]) -> Iterator[dict[str, Any]]:
    """Batches of a filter's records (newest first): the rows to read for them.  The
    indexes' rows if fewer than the filter's; else every one of its records' rows is read
    (for a word in most records, listing its rows costs more)."""
    ids = list(narrow)
    count = len({i // BLOCK for i in ids})
    held: set[int] | None = set(blocks(conn, query, count))
    if held is not None and len(held) >= count:
        held = None
    mine: set[int] | None = set(owned(conn, query, len(ids)))
    if mine is not None and len(mine) >= len(ids):
        mine = None
    if held is not None and mine is not None:
        ids = [i for i in ids if i // BLOCK in held or i in mine]
    for part in _batches(ids, FIRST_BATCH * BLOCK, LAST_BATCH * BLOCK):
        rows = sorted({i // BLOCK for i in part if held is None or i // BLOCK in held})
        own = [i for i in part if mine is None or i in mine]
        yield {"rows": rows, "owned_ids": own, "ids": part}


def _wide_work(
    conn: Connection, query: Query, restrict: Restrict | None
) -> Iterator[dict[str, Any]]:
    """Batches of the rows the indexes give, newest first, blocks and own rows merged."""
    rows, own = blocks(conn, query), owned(conn, query)
    i = j = 0
    size = FIRST_BATCH
    while i < len(rows) or j < len(own):
        # The next ``size`` rows by their newest record: blocks and own rows in id order.
        take_rows: list[int] = []
        take_own: list[int] = []
        while len(take_rows) + len(take_own) < size and (i < len(rows) or j < len(own)):
            if j >= len(own) or (i < len(rows) and rows[i] * BLOCK + BLOCK - 1 > own[j]):
                take_rows.append(rows[i])
                i += 1
            else:
                take_own.append(own[j])
                j += 1
        yield {"rows": take_rows, "owned_ids": take_own, "restrict": restrict}
        size = min(size * 2, LAST_BATCH)


def candidates(
    conn: Connection,
    query: Query,
    cap: int | None,
    *,
    narrow: Sequence[int] | None = None,
    restrict: Restrict | None = None,
) -> dict[int, Counted]:
    """The newest matching records, at most ``cap`` (None: all, and no bound on what is
    read): {id: what ranking needs}.  ``narrow``: the only records that may match (a
    filter's, newest first, already filtered); else ``restrict`` applies the filters in
    SQL."""
    found: dict[int, Counted] = {}
    work = (
        _narrow_work(conn, query, narrow)
        if narrow is not None
        else _wide_work(conn, query, restrict)
    )
    read, most = 0, MAX_BYTES if narrow is None else NARROW_MAX_BYTES
    for batch in work:
        for rid, counted in _lines(conn, query, **batch):
            found[rid] = counted
            if cap is not None and len(found) >= cap:
                return found
        if cap is not None:
            read += _sizes(conn, batch["rows"], batch["owned_ids"])
            if read >= most:
                break
    return found


# BM25's constants, as FTS5 has them.  Without the count of records holding each term (a
# count over the whole index for a common word), every term weighs the same, as
# PostgreSQL's ts_rank weighs them.
_K1, _B = 1.2, 0.75


def scores(found: Mapping[int, Counted]) -> dict[int, float]:
    """Each record's BM25 without idf (higher is better), lengths against the found ones'
    mean."""
    if not found:
        return {}
    average = max(sum(length for _, length in found.values()) / len(found), 1.0)
    out: dict[int, float] = {}
    for rid, (counts, length) in found.items():
        norm = _K1 * (1 - _B + _B * length / average)
        out[rid] = sum(tf * (_K1 + 1) / (tf + norm) for tf in counts)
    return out


def size(conn: Connection) -> int:
    return int(
        conn.scalar(
            text(f"SELECT pg_total_relation_size('{INDEX}') + pg_total_relation_size('{OWN}')")
        )
        or 0
    )
