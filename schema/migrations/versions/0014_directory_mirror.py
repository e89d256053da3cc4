"""customers and contacts can be archived: a directory mirrored from the CRM

Revision ID: 0014
Revises: 0012

``archived_at`` is set on a customer or contact that a mirrored directory file no longer
lists, and cleared when a later file lists it again.  Archived rows keep their history
(record links, participants' contact ids) but match no new mail and are never suggested.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import syncd.schema.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("customers", "contacts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(
                    "archived_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=True
                )
            )


def downgrade() -> None:
    for table in ("customers", "contacts"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("archived_at")
