"""The search index on PostgreSQL: the records' tokens kept ``BLOCK`` to a row, compressed.

One row per record (a ``tsvector`` under GIN, as FTS5 keeps one entry per record) cost 2.8x
the text it indexes: a ``tsvector`` spends 4 bytes of header on each token, a row 36 bytes
of its own, and PostgreSQL compresses only rows over 2 kB.  So the records are kept
``BLOCK`` to a row: the row of block ``id // BLOCK`` holds, on its line ``id % BLOCK``, the
record's ``index_terms`` (an empty line for a record with none, or gone).  A row is a few
kB and PostgreSQL compresses it.  The GIN index is over an expression of the row (its
lexemes, ``LEXEMES``), so they are not stored twice, and holds one entry per block: a word
in every record costs one posting per 32 records.  1.2x the text on bench/search.py's
million records (2.8x before).

Searching asks the GIN index for the blocks holding every token of the query, newest first,
then has the database read those blocks' lines and keep the records' lines that hold them.
A line is checked with ``strpos``: a token padded with spaces is found only as a whole token
(tokens hold no space nor newline), a prefix with its leading space only.  Phrases are then
checked on the lines' tokens (``search_text.matches``), as on SQLite.  Blocks are read in
growing batches until enough records match, at most ``MAX_BLOCKS`` of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Integer, Select, String, column, select, text

from syncd.domain.search_text import Query, Term, matches, needs_check, occurrences, tsquery
from syncd.store.sql import chunks

INDEX = "record_search"
BLOCK = 32  # records a row: 16 compressed to 1.7x the text, 32 to 1.33x, 64 to 1.23x (200k)
# Blocks a ranked search reads at most (131,072 records): a word in every record but that
# a filter or an excluded word rules out must not have the whole table read.
MAX_BLOCKS = 4_096
# Rows read a statement, doubling (a filter's records: 32 times as many).  A ranked search
# wants CANDIDATES records: a word in most records fills them from the first batch.
FIRST_BATCH, LAST_BATCH = 16, 512

LEXEMES = "syncd_search_lexemes"
_CREATE = (
    f"CREATE TABLE {INDEX} (block INTEGER PRIMARY KEY, terms TEXT NOT NULL)",
    # pglz: 1.2x smaller than lz4 on the tokens (bench/search.py); the rows are written
    # once a capture batch, so its slower compression costs little.
    f"ALTER TABLE {INDEX} ALTER COLUMN terms SET COMPRESSION pglz",
    # A block's lexemes: its lines' tokens, each once, verbatim (array_to_tsvector neither
    # parses nor folds: the domain did).
    f"CREATE FUNCTION {LEXEMES}(terms text) RETURNS tsvector LANGUAGE sql IMMUTABLE STRICT "
    "PARALLEL SAFE AS $$ SELECT array_to_tsvector(array_remove("
    "string_to_array(translate(terms, E'\\n', ' '), ' '), '')) $$",
    f"CREATE INDEX ix_{INDEX}_terms ON {INDEX} USING gin ({LEXEMES}(terms))",
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
    # Every way a record leaves (forget, a logged record deleted) takes its line with it.
    "CREATE FUNCTION syncd_search_records_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN PERFORM syncd_search_unindex(ARRAY(SELECT id FROM gone)); RETURN NULL; END $$",
    f"CREATE TRIGGER {INDEX}_records_deleted AFTER DELETE ON records "
    "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT "
    "EXECUTE FUNCTION syncd_search_records_deleted()",
    # The blocks with every token of a query, newest first.  Only the GIN index may answer:
    # for a word in most blocks the planner would rather compute every block's lexemes
    # (seconds), as it cannot know that the index needs no recheck.
    # The blocks with every token of a query, at most ``most`` (NULL: all), in no order.
    # Only the GIN index may answer: for a word in most blocks the planner would rather
    # compute every block's lexemes (350 us a block), as it cannot know that the index needs
    # no recheck.
    "CREATE FUNCTION syncd_search_blocks(query tsquery, most integer) RETURNS SETOF integer "
    "LANGUAGE plpgsql STABLE SET enable_seqscan = off SET enable_indexscan = off AS $$ "
    f"BEGIN RETURN QUERY SELECT s.block FROM {INDEX} s WHERE {LEXEMES}(s.terms) @@ query "
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
    f"DROP TRIGGER IF EXISTS {INDEX}_records_deleted ON records",
    f"DROP TABLE IF EXISTS {INDEX}",
    "DROP FUNCTION IF EXISTS syncd_search_blocks(tsquery, integer)",
    "DROP FUNCTION IF EXISTS syncd_search_records_deleted()",
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


def add(conn: Connection, terms: Mapping[int, str]) -> None:
    """Put these records' tokens on their lines (over what a line held)."""
    blocks: dict[int, list[str]] = {}
    for rid, line in terms.items():
        lines = blocks.setdefault(rid // BLOCK, [])
        slot = rid % BLOCK
        if len(lines) <= slot:
            lines.extend([""] * (slot + 1 - len(lines)))
        lines[slot] = line
    # In block order: two capture transactions lock the blocks they share in one order.
    for part in chunks(sorted(blocks)):
        conn.execute(
            text(
                f"INSERT INTO {INDEX} (block, terms) SELECT b, t "
                "FROM unnest(CAST(:bs AS integer[]), CAST(:ts AS text[])) AS u(b, t) "
                f"ON CONFLICT (block) DO UPDATE SET terms = syncd_search_put({INDEX}.terms, "
                "excluded.terms)"
            ),
            {"bs": list(part), "ts": ["\n".join(blocks[b]) for b in part]},
        )


def unindex(conn: Connection, record_ids: Sequence[int]) -> None:
    for part in chunks(sorted(set(record_ids))):
        conn.execute(
            text("SELECT syncd_search_unindex(CAST(:ids AS integer[]))"), {"ids": list(part)}
        )


def clear(conn: Connection) -> None:
    conn.exec_driver_sql(f"DELETE FROM {INDEX}")


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


def blocks(conn: Connection, query: Query, most: int | None = None) -> list[int]:
    """The blocks holding every token of the query's wanted terms, newest first; at most
    ``most`` of them (any of them, then)."""
    found = conn.scalars(
        text("SELECT syncd_search_blocks(CAST(:q AS tsquery), :most)"),
        {"q": tsquery(Query(query.include)), "most": most},
    )
    return sorted(found, reverse=True)


def _lines(
    conn: Connection,
    query: Query,
    *,
    rows: Sequence[int] = (),
    ids: Sequence[int] = (),
    restrict: Restrict | None = None,
) -> list[tuple[int, str]]:
    """(id, line) of the matching records, newest first: those on these ``rows`` (that
    ``restrict`` lets through), or those of these ``ids``."""
    checks, params = _line_checks(query)
    if ids:  # each record's own line, not every line of its row
        source = (
            f"SELECT u.id, split_part(s.terms, E'\\n', mod(u.id, {BLOCK}) + 1) AS line "
            f"FROM unnest(CAST(:ids AS integer[])) AS u(id) JOIN {INDEX} s "
            f"ON s.block = u.id / {BLOCK}"
        )
        bound: dict[str, Any] = {"ids": list(ids), **params}
    else:
        source = (
            f"SELECT s.block * {BLOCK} + u.n - 1 AS id, u.line FROM {INDEX} s "
            "CROSS JOIN LATERAL unnest(string_to_array(s.terms, E'\\n')) "
            "WITH ORDINALITY AS u(line, n) WHERE s.block = ANY(CAST(:rows AS integer[]))"
        )
        bound = {"rows": list(rows), **params}
    lines = (
        text(
            f"SELECT id, line FROM ({source}) AS l "
            "CROSS JOIN LATERAL (SELECT ' ' || l.line || ' ' AS padded) AS p WHERE "
            + " AND ".join(checks)
        )
        .bindparams(**bound)
        .columns(column("id", Integer), column("line", String))
        .subquery()
    )
    stmt = select(lines.c.id, lines.c.line)
    if restrict is not None:
        stmt = restrict(stmt, lines.c.id)
    return [(int(i), line) for i, line in conn.execute(stmt.order_by(lines.c.id.desc()))]


def _batches(items: Sequence[int], first: int, last: int) -> Iterator[Sequence[int]]:
    size, start = first, 0
    while start < len(items):
        yield items[start : start + size]
        start += size
        size = min(size * 2, last)


def candidates(
    conn: Connection,
    query: Query,
    cap: int | None,
    *,
    narrow: Sequence[int] | None = None,
    restrict: Restrict | None = None,
) -> dict[int, list[str]]:
    """{id: tokens} of the newest matching records, at most ``cap`` (None: all, and no
    bound on the blocks read).  ``narrow``: the only records that may match (a filter's,
    newest first, already filtered); else ``restrict`` applies the filters in SQL."""
    found: dict[int, list[str]] = {}
    check = needs_check(query)
    if narrow is not None:
        ids = list(narrow)
        rows = len({i // BLOCK for i in ids})
        # The index's blocks if there are fewer than the filter's; else its records' lines
        # are read without it (for a word in most records, listing them costs more).
        holding = blocks(conn, query, rows)
        if len(holding) < rows:
            held = set(holding)
            ids = [i for i in ids if i // BLOCK in held]
        if cap is not None:  # the ids of the newest MAX_BLOCKS rows they are in
            newest = list(dict.fromkeys(i // BLOCK for i in ids))[:MAX_BLOCKS]
            ids = [i for i in ids if i // BLOCK >= newest[-1]] if newest else []
        work: Iterator[dict[str, Any]] = (
            {"ids": part} for part in _batches(ids, FIRST_BATCH * BLOCK, LAST_BATCH * BLOCK)
        )
    else:
        holding = blocks(conn, query)
        if cap is not None:
            del holding[MAX_BLOCKS:]
        work = (
            {"rows": part, "restrict": restrict}
            for part in _batches(holding, FIRST_BATCH, LAST_BATCH)
        )
    for batch in work:
        for rid, line in _lines(conn, query, **batch):
            words = line.split()
            if check and not matches(words, query):
                continue
            found[rid] = words
            if cap is not None and len(found) >= cap:
                return found
    return found


# BM25's constants, as FTS5 has them.  Without the count of records holding each term (a
# count over the whole index for a common word), every term weighs the same, as
# PostgreSQL's ts_rank weighs them.
_K1, _B = 1.2, 0.75


def scores(query: Query, found: Mapping[int, list[str]]) -> dict[int, float]:
    """Each record's BM25 without idf (higher is better), lengths against the found ones'
    mean."""
    if not found:
        return {}
    average = max(sum(len(words) for words in found.values()) / len(found), 1.0)
    out: dict[int, float] = {}
    for rid, words in found.items():
        norm = _K1 * (1 - _B + _B * len(words) / average)
        score = 0.0
        for term in query.include:
            tf = occurrences(words, term)
            score += tf * (_K1 + 1) / (tf + norm)
        out[rid] = score
    return out


def size(conn: Connection) -> int:
    return int(conn.scalar(text(f"SELECT pg_total_relation_size('{INDEX}')")) or 0)
