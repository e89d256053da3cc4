"""refresh tokens an OAuth2 endpoint rotated, encrypted with the installation secret

Revision ID: 0020
Revises: 0019

A provider that rotates refresh tokens and detects reuse answers ``invalid_grant`` to the
token a members file still holds once it has been exchanged: the newest one must outlive
the process that received it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from syncd.schema.types import UtcDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refresh_tokens",
        sa.Column("origin", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("refresh_tokens")
