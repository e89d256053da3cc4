"""the search index of records (SQLite FTS5, PostgreSQL tsvector + GIN), filled

Revision ID: 0023
Revises: 0020

The index's objects differ per engine, so store/search_index.py makes them (and keeps
them out of schema/tables.py); existing records are indexed here, in the migration's
transaction.
"""

from __future__ import annotations

from alembic import op

from syncd.store import search_index

revision = "0023"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    search_index.create(conn)
    search_index.rebuild(conn)


def downgrade() -> None:
    search_index.drop(op.get_bind())
