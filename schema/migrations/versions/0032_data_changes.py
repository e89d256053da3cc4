"""data_changes: on SQLite, a counter of every change to the data the rules read

`syncd sync`'s first look (engine/first_look.py, issue #20) skips the follow-up rules and
the events upkeep when the data did not change since the last full pass.  Row counts and
highest rowids miss a row changed in place (a contact moved to another customer), and
reading every table grows with the database.  So the database counts its own changes:
after every INSERT, UPDATE and DELETE on each table the rules, the upkeep or the pass may
read (UPDATE and DELETE only on the tables capture appends to: ``APPENDED``), a trigger adds one to the ``settings`` row ``data_changes``; the first look reads
that one row.  A table that is only bookkeeping written on every poll (the sources'
state and health, the daemons' leases, the cursors) or the search index's (FTS5's own
tables, written with each record) has none, so an unchanged pass does not move it.

PostgreSQL has none of this: its `syncd sync` always takes the full pass.

The sets are store/change_counter.py's, which the first look checks on every look: a
table added or rebuilt later without its triggers makes every run take the full pass,
never a wrong skip.

Revision ID: 0032
Revises: 0031
"""

from __future__ import annotations

from alembic import op

from syncd.store.change_counter import COUNTER, OPERATIONS, operations, stamped, trigger_name

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def _tables() -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    )
    return [name for (name,) in rows if stamped(name)]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    bind.exec_driver_sql(
        "INSERT INTO settings (name, value) VALUES (?, '0') ON CONFLICT (name) DO NOTHING",
        (COUNTER,),
    )
    for table in _tables():
        for operation in operations(table):
            event = operation.upper()
            if table == "record_customers" and operation == "update":
                # Not its occurred_at: migration 0031's trigger writes that copy of the
                # record's time on every link capture adds, which is no change the rules see.
                event = "UPDATE OF record_id, customer_id, link"
            bind.exec_driver_sql(
                f'CREATE TRIGGER IF NOT EXISTS "{trigger_name(table, operation)}"'
                f' AFTER {event} ON "{table}" BEGIN'
                f" UPDATE settings SET value = CAST(value AS INTEGER) + 1"
                f" WHERE name = '{COUNTER}'; END"
            )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table in _tables():
        for operation in OPERATIONS:
            bind.exec_driver_sql(f'DROP TRIGGER IF EXISTS "{trigger_name(table, operation)}"')
    bind.exec_driver_sql("DELETE FROM settings WHERE name = ?", (COUNTER,))
