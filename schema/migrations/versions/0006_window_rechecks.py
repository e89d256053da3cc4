"""calendar objects remember their next start after the window

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import syncd.schema.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calendar_objects") as batch:
        batch.add_column(
            sa.Column("next_start_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=True)
        )
        batch.create_index(
            "ix_calendar_objects_calendar_url_next_start_at",
            ["calendar", "url", "next_start_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("calendar_objects") as batch:
        batch.drop_index("ix_calendar_objects_calendar_url_next_start_at")
        batch.drop_column("next_start_at")
