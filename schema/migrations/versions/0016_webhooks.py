"""webhook endpoints (cursor into the outbox, state) and pending deliveries

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import syncd.schema.types

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = syncd.schema.types.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_event_id", _ID, nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("config_hash", sa.String(length=64), nullable=True),
        sa.Column("delivered", _ID, nullable=False),
        sa.Column("last_success_at", _TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("endpoint", sa.String(length=100), nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("ready", sa.Integer(), nullable=False),
        sa.Column("queued_at", _TIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("endpoint", "event_id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_ready",
        "webhook_deliveries",
        ["endpoint", "state", "ready", "event_id"],
    )
    op.create_index(
        "ix_webhook_deliveries_subject",
        "webhook_deliveries",
        ["endpoint", "subject", "event_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_subject", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_ready", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
