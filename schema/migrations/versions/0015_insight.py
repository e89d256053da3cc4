"""indexes for customer insight: activity per customer, first replies, gone_quiet

Revision ID: 0015
Revises: 0012

record_customers gets (customer_id, record_id) in place of (customer_id): a customer's
records without a table lookup.  records gets (thread_key, occurred_at, id, direction):
every thread's emails in order from the index alone, so that one window over it gives each
inbound email its first reply.  sources gets (record_id, id, mailbox) in place of
(record_id): who received an email first, from the index alone.  tasks gets (customer_id,
status) in place of (customer_id), for the open tasks per customer.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_record_customers_customer_id_record_id",
        "record_customers",
        ["customer_id", "record_id"],
    )
    op.drop_index("ix_record_customers_customer_id", table_name="record_customers")
    op.create_index(
        "ix_records_thread_key_occurred_at_id_direction",
        "records",
        ["thread_key", "occurred_at", "id", "direction"],
    )
    op.create_index("ix_sources_record_id_id_mailbox", "sources", ["record_id", "id", "mailbox"])
    op.drop_index("ix_sources_record_id", table_name="sources")
    op.create_index("ix_tasks_customer_id_status", "tasks", ["customer_id", "status"])
    op.drop_index("ix_tasks_customer_id", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_customer_id", "tasks", ["customer_id"])
    op.drop_index("ix_tasks_customer_id_status", table_name="tasks")
    op.create_index("ix_sources_record_id", "sources", ["record_id"])
    op.drop_index("ix_sources_record_id_id_mailbox", table_name="sources")
    op.drop_index("ix_records_thread_key_occurred_at_id_direction", table_name="records")
    op.create_index("ix_record_customers_customer_id", "record_customers", ["customer_id"])
    op.drop_index("ix_record_customers_customer_id_record_id", table_name="record_customers")
