"""CRM connectors: per CRM a cursor into the outbox, pending deliveries, syncd ids -> CRM ids

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import syncd.schema.types

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = syncd.schema.types.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "crm_endpoints",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_event_id", _ID, nullable=False),
        sa.Column("pushed", _ID, nullable=False),
        sa.Column("pulled", _ID, nullable=False),
        sa.Column("last_success_at", _TIME, nullable=True),
        sa.Column("last_pull_at", _TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_crm_endpoints")),
    )
    op.create_table(
        "crm_deliveries",
        sa.Column("crm", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("queued_at", _TIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", _TIME, nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("crm", "subject", name=op.f("pk_crm_deliveries")),
    )
    op.create_index("ix_crm_deliveries_due", "crm_deliveries", ["crm", "state", "next_attempt_at"])
    op.create_table(
        "crm_objects",
        sa.Column("crm", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("crm_type", sa.String(length=40), nullable=False),
        sa.Column("crm_id", sa.String(length=100), nullable=False),
        sa.Column("remote_state", sa.String(length=40), nullable=True),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("crm", "subject", name=op.f("pk_crm_objects")),
    )
    op.create_index("ix_crm_objects_crm_id", "crm_objects", ["crm", "crm_type", "crm_id"])


def downgrade() -> None:
    op.drop_index("ix_crm_objects_crm_id", table_name="crm_objects")
    op.drop_table("crm_objects")
    op.drop_index("ix_crm_deliveries_due", table_name="crm_deliveries")
    op.drop_table("crm_deliveries")
    op.drop_table("crm_endpoints")
