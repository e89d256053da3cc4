"""event ids never reused on SQLite; meetings found by their end (held sweep)

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import syncd.schema.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _events_table(name: str, *, autoincrement: bool) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("occurred_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sqlite_autoincrement=autoincrement,
    )


def _rebuild_events(*, autoincrement: bool) -> None:
    """SQLite: AUTOINCREMENT is part of CREATE TABLE, so the table is made anew, ids kept
    (the copy also sets sqlite_sequence to the largest id)."""
    _events_table("_events_new", autoincrement=autoincrement)
    op.execute(
        "INSERT INTO _events_new (id, type, subject, occurred_at, created_at, data) "
        "SELECT id, type, subject, occurred_at, created_at, data FROM events"
    )
    op.drop_index("ix_events_subject_id", table_name="events")
    op.drop_table("events")
    op.rename_table("_events_new", "events")
    op.create_index("ix_events_subject_id", "events", ["subject", "id"])


def upgrade() -> None:
    op.create_index(op.f("ix_records_ends_at"), "records", ["ends_at"])
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_events(autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_events(autoincrement=False)
    op.drop_index(op.f("ix_records_ends_at"), table_name="records")
