"""logged records (call, visit, note) beside captured ones; task type and priority

Revision ID: 0018
Revises: 0017

A logged record is a row of ``records`` like a captured one, so that links, explain, events,
the timeline and the rules see it without a second path.  Its identity (``records.key``) is
``logged:<external_id>`` when the system it came from named it, else a key of its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from syncd.schema.types import UtcDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("owner", sa.String(320), nullable=True))
        batch.add_column(sa.Column("origin", sa.String(16), nullable=True))
        batch.add_column(sa.Column("external_id", sa.String(300), nullable=True))
        batch.add_column(sa.Column("duration_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(16), nullable=True))
        batch.add_column(sa.Column("location", sa.String(500), nullable=True))
        batch.add_column(sa.Column("updated_at", UtcDateTime(timezone=True), nullable=True))
    op.create_index("ix_records_owner", "records", ["owner"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("type", sa.String(8), nullable=False, server_default="todo"))
        batch.add_column(
            sa.Column("priority", sa.String(8), nullable=False, server_default="normal")
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("priority")
        batch.drop_column("type")
    op.drop_index("ix_records_owner", table_name="records")
    with op.batch_alter_table("records") as batch:
        for column in (
            "updated_at",
            "location",
            "outcome",
            "duration_seconds",
            "external_id",
            "origin",
            "owner",
        ):
            batch.drop_column(column)
