"""follow-up tasks

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import syncd.schema.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=True),
        sa.Column("record_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=320), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("due_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("snoozed_until", syncd.schema.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("closed_by_record_id", sa.Integer(), nullable=True),
        sa.Column("closed_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=16), nullable=True),
        sa.Column("created_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("vtodo_href", sa.String(length=2000), nullable=True),
        sa.Column("vtodo_etag", sa.String(length=300), nullable=True),
        sa.Column("vtodo_synced_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["closed_by_record_id"], ["records.id"],
            name=op.f("fk_tasks_closed_by_record_id_records"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_tasks_customer_id_customers"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"],
            name=op.f("fk_tasks_record_id_records"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("rule", "record_id", name=op.f("uq_tasks_rule_record_id")),
    )  # fmt: skip
    op.create_index(op.f("ix_tasks_owner"), "tasks", ["owner"], unique=False)
    op.create_index(op.f("ix_tasks_customer_id"), "tasks", ["customer_id"], unique=False)
    op.create_index("ix_tasks_status_due_at", "tasks", ["status", "due_at"], unique=False)


def downgrade() -> None:
    op.drop_table("tasks")
