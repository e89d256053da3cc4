"""directory fingerprints: a large CRM export with a few changed rows skips its unchanged customers

Revision ID: 0029
Revises: 0026
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_fingerprints",
        sa.Column("customer_key", sa.String(length=300), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("rows_digest", sa.String(length=64), nullable=False),
        sa.Column("state_digest", sa.String(length=64), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("domains", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_key", name=op.f("pk_directory_fingerprints")),
    )


def downgrade() -> None:
    op.drop_table("directory_fingerprints")
