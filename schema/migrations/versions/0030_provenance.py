"""provenance: the table ``sources`` is named for what it holds, a record's provenance

Each row says which mailbox, folder and UID a record was read from, while "source"
everywhere else means an account (a configured mailbox or calendar).  A rename in place
(ALTER TABLE ... RENAME), with the names of its index and constraints that carry the
table's name.  PostgreSQL renames each in place; SQLite cannot rename a constraint, so
after its ALTER TABLE the table is copied once into the same shape with the new names
(an SQLite database is one daemon's, of a size to copy in seconds).

Revision ID: 0030
Revises: 0029
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

# The names that carry the table's, after its prefix (kind) and before their suffix.
NAMED = (
    ("pk", ""),
    ("fk", "_record_id_records"),
    ("uq", "_mailbox_folder_uidvalidity_uid"),
)
INDEX = "ix_{}_record_id_id_mailbox"


def _shape(name: str) -> sa.Table:
    """The table as it stands (its columns read from the database), every constraint and
    index named from ``name`` as schema/tables.py names them."""
    meta = sa.MetaData()
    sa.Table("records", meta, sa.Column("id", sa.Integer(), primary_key=True))
    found = sa.Table(name, sa.MetaData(), autoload_with=op.get_bind())
    return sa.Table(
        name,
        meta,
        *(sa.Column(c.name, c.type, nullable=c.nullable) for c in found.columns),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=f"fk_{name}_record_id_records", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        sa.UniqueConstraint(
            *("mailbox", "folder", "uidvalidity", "uid"),
            name=f"uq_{name}_mailbox_folder_uidvalidity_uid",
        ),
        sa.Index(INDEX.format(name), "record_id", "id", "mailbox"),
    )


def _rename(old: str, new: str) -> None:
    op.rename_table(old, new)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX {INDEX.format(old)} RENAME TO {INDEX.format(new)}")
        for kind, suffix in NAMED:
            op.execute(
                f"ALTER TABLE {new} RENAME CONSTRAINT {kind}_{old}{suffix} TO {kind}_{new}{suffix}"
            )
        # The id's sequence, which the column's default names by OID (unaffected).
        op.execute(f"ALTER SEQUENCE IF EXISTS {old}_id_seq RENAME TO {new}_id_seq")
        return
    # SQLite: the constraints' names live in the table's CREATE statement.
    op.drop_index(INDEX.format(old), table_name=new)
    with op.batch_alter_table(new, recreate="always", copy_from=_shape(new)):
        pass


def upgrade() -> None:
    _rename("sources", "provenance")


def downgrade() -> None:
    _rename("provenance", "sources")
