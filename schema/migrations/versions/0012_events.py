"""the transactional outbox of record, task and contact events

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import syncd.schema.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("occurred_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_subject_id", "events", ["subject", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_subject_id", table_name="events")
    op.drop_table("events")
