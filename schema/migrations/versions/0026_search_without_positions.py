"""the search index keeps no token positions (FTS5 detail=none, tsvector stripped)

Revision ID: 0026
Revises: 0025

Positions were most of the index (3.6x the text on PostgreSQL) and only phrases used them;
phrases are now checked on their candidates' tokens (store/search_index.py).  The index is
converted from what it holds, without reading the records again: on SQLite the FTS5 table
is made anew from each record's stored tokens, on PostgreSQL each tsvector is stripped.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from syncd.store import search_index

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

INDEX = search_index.INDEX


def _fts(sql: str) -> None:
    """Make the FTS5 table anew with ``sql``, filled from each record's stored tokens."""
    conn = op.get_bind()
    # The delete trigger names the table and reads it only when it fires: it stays.
    conn.exec_driver_sql(f"DROP TABLE {INDEX}")
    conn.exec_driver_sql(sql)
    conn.exec_driver_sql(
        f"INSERT INTO {INDEX} (rowid, terms) "
        f"SELECT record_id, {search_index.INFLATE}(terms) FROM {INDEX}_terms"
    )
    search_index.merge(conn)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(f"UPDATE {INDEX} SET terms = strip(terms)")
        return
    made = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (INDEX,)
    ).scalar()
    if made is not None and "detail=none" not in made:  # made at 0023 by the older code
        _fts(search_index.SQLITE_FTS)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        _fts(f"CREATE VIRTUAL TABLE {INDEX} USING fts5(terms, content='', tokenize='ascii')")
        return
    # Positions again, from the records as stored.
    last = 0
    while True:
        ids = list(
            conn.execute(
                text(f"SELECT record_id FROM {INDEX} WHERE record_id > :last "
                     "ORDER BY record_id LIMIT 5000"),
                {"last": last},
            ).scalars()
        )  # fmt: skip
        if not ids:
            return
        for rid, terms in search_index.current_terms(conn, ids).items():
            positions: dict[str, list[str]] = {}
            for i, token in enumerate(terms.split(), start=1):
                positions.setdefault(token, []).append(str(i))
            conn.execute(
                text(f"UPDATE {INDEX} SET terms = CAST(:t AS tsvector) WHERE record_id = :i"),
                {"i": rid, "t": " ".join(f"'{t}':{','.join(p)}" for t, p in positions.items())},
            )
        last = ids[-1]
