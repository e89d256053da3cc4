"""the search index of records (SQLite FTS5, PostgreSQL tsvector + GIN), filled

Revision ID: 0023
Revises: 0020

The index's objects differ per engine, so store/search_index.py makes them (and keeps
them out of schema/tables.py); existing records are indexed here, in the migration's
transaction.
"""

from __future__ import annotations

from alembic import op

from syncd.store import search_index, search_pg

revision = "0023"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        # PostgreSQL's layout of 0023 to 0032: 0033 replaces it and indexes the records.
        for statement in search_pg.ROW_PER_RECORD:
            conn.exec_driver_sql(statement)
        return
    search_index.create(conn)
    search_index.rebuild(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql("DROP TABLE IF EXISTS record_search")
        return
    search_index.drop(conn)
