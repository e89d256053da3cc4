"""the PostgreSQL search index keeps 32 records to a compressed row (SQLite unchanged)

Revision ID: 0033
Revises: 0032

One ``tsvector`` row per record was 2.8x the text it indexes; the records' tokens kept 32 to
a row, compressed, under a GIN index of each row's lexemes are 1.2x (store/search_pg.py; a
record with long tokens, a whole mail body, gets a row of its own).
The new index is built from the records as stored, in the migration's transaction.
Downgrading builds the row-per-record index again.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from syncd.domain.search_text import tsvector
from syncd.store import search_index, search_pg

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

INDEX = search_pg.INDEX


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        return
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {INDEX}")
    search_pg.create(conn)
    search_index.rebuild(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        return
    search_pg.drop(conn)
    for statement in search_pg.ROW_PER_RECORD:
        conn.exec_driver_sql(statement)
    last = 0
    while True:
        ids = list(
            conn.execute(
                text("SELECT id FROM records WHERE id > :last ORDER BY id LIMIT 5000"),
                {"last": last},
            ).scalars()
        )
        if not ids:
            return
        found = search_index.current_terms(conn, ids)
        conn.execute(
            text(
                f"INSERT INTO {INDEX} (record_id, terms) SELECT i, CAST(t AS tsvector) "
                "FROM unnest(CAST(:ids AS integer[]), CAST(:ts AS text[])) AS u(i, t)"
            ),
            {"ids": list(found), "ts": [tsvector(t) for t in found.values()]},
        )
        last = ids[-1]
