"""customer pages: a record's occurred_at copied into record_customers, under an index

A customer's page (``records list --customer``, ``GET /records?customer=``, the timeline)
read every record of the customer, one table lookup each, and sorted them for fifty.  With
``record_customers.occurred_at`` beside ``(customer_id, occurred_at, record_id)`` the page is
that index read backwards for limit + 1 entries.

The copy is kept by the database, so that no path that links a record (capture, calendar
sync, reconcile, assign, directory relinks, logged records) or moves one (a meeting
rescheduled, a logged record's new time) can leave it behind: an insert with no value takes
the record's, and an update of ``records.occurred_at`` moves its links' copies.

On PostgreSQL a link and a move (an update that changes occurred_at) of the same record
are ordered by the record's row lock in its two weakest and strongest modes: a link reads the
record FOR KEY SHARE (the mode its foreign key check takes anyway), a move first takes the
row FOR UPDATE, the one mode KEY SHARE conflicts with.  Every other update of a record
(FOR NO KEY UPDATE: a subject, a redaction, a logged edit) neither waits for a link nor
holds one up.  FOR SHARE, as first written, conflicted with every such update, and was taken
again for each link that already existed (a BEFORE trigger runs before ON CONFLICT DO
NOTHING looks): calendar sync, which updates changed meetings and then re-links the
unchanged ones, deadlocked two daemons.  An advisory lock per record (the other way) fills
PostgreSQL's shared lock table: one entry a linked record until commit, "out of shared
memory" for a transaction that links a few thousand; a row lock is kept in the row.
Whichever of a link and a move comes second sees the other's work: a link waiting for a move
reads the moved row (READ COMMITTED follows the update), and a move made after a link had to
wait for its commit, so its links' UPDATE (a statement of its own, a snapshot of its own)
includes it.

Existing rows are filled in batches of record ids (each a range of the primary key), the
index built once they are.

Revision ID: 0031
Revises: 0030
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import syncd.schema.types

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

INDEX = "ix_record_customers_customer_id_occurred_at_record_id"
BATCH = 50_000  # record ids filled a statement

_SQLITE_TRIGGERS = (
    # SQLite cannot change NEW in a BEFORE trigger: the row is completed after its insert.
    "CREATE TRIGGER record_customers_occurred_at AFTER INSERT ON record_customers "
    "WHEN NEW.occurred_at IS NULL BEGIN "
    "UPDATE record_customers SET occurred_at = "
    "(SELECT occurred_at FROM records WHERE id = NEW.record_id) "
    "WHERE record_id = NEW.record_id AND customer_id = NEW.customer_id; END",
    "CREATE TRIGGER records_occurred_at_moved AFTER UPDATE OF occurred_at ON records "
    "WHEN NEW.occurred_at IS NOT OLD.occurred_at BEGIN "
    "UPDATE record_customers SET occurred_at = NEW.occurred_at WHERE record_id = NEW.id; END",
)
_POSTGRES_TRIGGERS = (
    "CREATE FUNCTION record_customers_occurred_at() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN SELECT occurred_at INTO NEW.occurred_at FROM records WHERE id = NEW.record_id "
    "FOR KEY SHARE; RETURN NEW; END $$",
    "CREATE TRIGGER record_customers_occurred_at BEFORE INSERT ON record_customers "
    "FOR EACH ROW WHEN (NEW.occurred_at IS NULL) "
    "EXECUTE FUNCTION record_customers_occurred_at()",
    # Only a move waits for links (and they for it): the update holds FOR NO KEY UPDATE,
    # which KEY SHARE does not conflict with, and FOR UPDATE is taken here before its write.
    "CREATE FUNCTION records_occurred_at_moving() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN PERFORM 1 FROM records WHERE id = NEW.id FOR UPDATE; RETURN NEW; END $$",
    "CREATE TRIGGER records_occurred_at_moving BEFORE UPDATE OF occurred_at ON records "
    "FOR EACH ROW WHEN (NEW.occurred_at IS DISTINCT FROM OLD.occurred_at) "
    "EXECUTE FUNCTION records_occurred_at_moving()",
    "CREATE FUNCTION records_occurred_at_moved() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN UPDATE record_customers SET occurred_at = NEW.occurred_at "
    "WHERE record_id = NEW.id; RETURN NULL; END $$",
    "CREATE TRIGGER records_occurred_at_moved AFTER UPDATE OF occurred_at ON records "
    "FOR EACH ROW WHEN (NEW.occurred_at IS DISTINCT FROM OLD.occurred_at) "
    "EXECUTE FUNCTION records_occurred_at_moved()",
)


def backfill(conn: sa.Connection, batch: int = BATCH) -> None:
    """Copy each linked record's occurred_at into its links, ``batch`` record ids a
    statement (a range of record_customers' primary key, and of records')."""
    top = conn.scalar(sa.text("SELECT max(record_id) FROM record_customers"))
    start = 0
    while top is not None and start <= top:
        conn.execute(
            sa.text(
                "UPDATE record_customers SET occurred_at = "
                "(SELECT r.occurred_at FROM records r WHERE r.id = record_customers.record_id) "
                "WHERE record_id >= :start AND record_id < :end"
            ),
            {"start": start, "end": start + batch},
        )
        start += batch


def upgrade() -> None:
    conn = op.get_bind()
    op.add_column(
        "record_customers",
        sa.Column("occurred_at", syncd.schema.types.UtcDateTime(timezone=True), nullable=True),
    )
    # The whole upgrade is one transaction, and ADD COLUMN holds record_customers ACCESS
    # EXCLUSIVE until it commits: no link is written (nor a page read) meanwhile, so the
    # backfill sees every link and the triggers complete the ones written after.  The table
    # is therefore locked for the migration's duration: 2.7 s for 200,000 links on
    # PostgreSQL (0.65 s on SQLite, which locks the whole file), load average 4.9 on 2 cores.
    for statement in _SQLITE_TRIGGERS if conn.dialect.name == "sqlite" else _POSTGRES_TRIGGERS:
        conn.exec_driver_sql(statement)
    backfill(conn)
    op.create_index(
        INDEX, "record_customers", ["customer_id", "occurred_at", "record_id"], unique=False
    )


def downgrade() -> None:
    conn = op.get_bind()
    conn.exec_driver_sql("DROP TRIGGER IF EXISTS records_occurred_at_moved ON records"
                         if conn.dialect.name == "postgresql"
                         else "DROP TRIGGER IF EXISTS records_occurred_at_moved")  # fmt: skip
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS records_occurred_at_moving ON records")
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS records_occurred_at_moving()")
    conn.exec_driver_sql("DROP TRIGGER IF EXISTS record_customers_occurred_at ON record_customers"
                         if conn.dialect.name == "postgresql"
                         else "DROP TRIGGER IF EXISTS record_customers_occurred_at")  # fmt: skip
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS records_occurred_at_moved()")
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS record_customers_occurred_at()")
    op.drop_index(INDEX, table_name="record_customers")
    with op.batch_alter_table("record_customers") as batch:
        batch.drop_column("occurred_at")
