"""one state table and one quarantine for every kind of source; cursors per kind

Revision ID: 0011
Revises: 0010

mailbox_states, folder_states (health columns) and calendar_states (health columns, and its
url "" account rows) become rows of source_states; quarantine (mail) and calendar_quarantine
become rows of one quarantine table.  The connectors' checkpoints stay per kind, untouched:
folder_states' UIDVALIDITY/last UID/HIGHESTMODSEQ move to folder_cursors, calendar_states'
sync token, discovery time and display name to calendar_cursors; calendar_objects (ETags)
does not change.  Every row is moved, none is dropped, so nothing is downloaded again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import syncd.schema.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _at() -> syncd.schema.types.UtcDateTime:
    return syncd.schema.types.UtcDateTime(timezone=True)


def _create_new_tables() -> None:
    op.create_table(
        "source_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("place", sa.String(length=2000), nullable=False),
        sa.Column("last_attempt_at", _at(), nullable=True),
        sa.Column("last_success_at", _at(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_kind", sa.String(length=32), nullable=True),
        sa.Column("last_error_at", _at(), nullable=True),
        sa.Column("captured", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_states")),
        sa.UniqueConstraint(
            "kind", "source", "place", name=op.f("uq_source_states_kind_source_place")
        ),
    )
    op.create_table(
        "folder_cursors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("folder", sa.String(length=1000), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("highestmodseq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_folder_cursors")),
        sa.UniqueConstraint("mailbox", "folder", name=op.f("uq_folder_cursors_mailbox_folder")),
    )
    op.create_table(
        "calendar_cursors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("calendar", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("display_name", sa.String(length=300), nullable=False),
        sa.Column("sync_token", sa.Text(), nullable=True),
        sa.Column("discovered_at", _at(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_cursors")),
        sa.UniqueConstraint("calendar", "url", name=op.f("uq_calendar_cursors_calendar_url")),
    )


def _create_quarantine() -> None:
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("place", sa.String(length=2000), nullable=False),
        sa.Column("item", sa.String(length=2000), nullable=False),
        sa.Column("version", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint(
            "kind",
            "source",
            "place",
            "item",
            "version",
            name=op.f("uq_quarantine_kind_source_place_item_version"),
        ),
    )


def upgrade() -> None:
    _create_new_tables()
    run = op.execute
    # Cursors: copied as they are, so every source resumes where it stood.  (Ids are new:
    # copying them would leave PostgreSQL's sequences behind the rows.)
    run(
        "INSERT INTO folder_cursors (mailbox, folder, uidvalidity, last_uid, highestmodseq) "
        "SELECT mailbox, folder, uidvalidity, last_uid, highestmodseq FROM folder_states "
        "ORDER BY id"
    )
    run(
        "INSERT INTO calendar_cursors (calendar, url, display_name, sync_token, discovered_at) "
        "SELECT calendar, url, display_name, sync_token, discovered_at FROM calendar_states "
        "WHERE url <> '' ORDER BY id"
    )
    # Health: the account rows (mailbox_states, calendar_states with url "") get place "".
    # Calendar errors of 0010 had no kind; "config" keeps them failing, as 0010 showed them.
    run(
        "INSERT INTO source_states (kind, source, place, last_attempt_at, last_success_at, "
        "last_error, last_error_kind, last_error_at, captured, skipped) "
        "SELECT 'mailbox', mailbox, '', last_attempt_at, last_success_at, last_error, "
        "last_error_kind, last_error_at, 0, 0 FROM mailbox_states"
    )
    run(
        "INSERT INTO source_states (kind, source, place, last_success_at, last_error, "
        "last_error_at, captured, skipped) "
        "SELECT 'mailbox', mailbox, folder, last_success_at, last_error, last_error_at, "
        "messages_captured, messages_skipped FROM folder_states"
    )
    run(
        "INSERT INTO source_states (kind, source, place, last_success_at, last_error, "
        "last_error_kind, last_error_at, captured, skipped) "
        "SELECT 'calendar', calendar, url, last_success_at, last_error, "
        "CASE WHEN last_error IS NULL THEN NULL ELSE 'config' END, last_error_at, "
        "meetings_captured, 0 FROM calendar_states"
    )
    # Quarantine: the old table's name is the new one's, so its rows wait in a copy.
    run("CREATE TABLE quarantine_0010 AS SELECT * FROM quarantine")
    op.drop_table("quarantine")
    _create_quarantine()
    run(
        "INSERT INTO quarantine (kind, source, place, item, version, reason, created_at) "
        "SELECT 'mailbox', mailbox, folder, CAST(uid AS VARCHAR(2000)), "
        "CAST(uidvalidity AS VARCHAR(300)), reason, created_at FROM quarantine_0010 ORDER BY id"
    )
    run(
        "INSERT INTO quarantine (kind, source, place, item, version, reason, created_at) "
        "SELECT 'calendar', calendar, url, href, etag, reason, created_at "
        "FROM calendar_quarantine ORDER BY id"
    )
    op.drop_table("quarantine_0010")
    op.drop_table("calendar_quarantine")
    op.drop_table("calendar_states")
    op.drop_table("folder_states")
    op.drop_table("mailbox_states")


def _create_old_tables() -> None:
    """The 0010 tables, as 0001 and 0003 made them."""
    op.create_table(
        "folder_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("folder", sa.String(length=1000), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("highestmodseq", sa.BigInteger(), nullable=True),
        sa.Column("messages_captured", sa.Integer(), nullable=False),
        sa.Column("messages_skipped", sa.Integer(), nullable=False),
        sa.Column("last_success_at", _at(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", _at(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_folder_states")),
        sa.UniqueConstraint("mailbox", "folder", name=op.f("uq_folder_states_mailbox_folder")),
    )
    op.create_table(
        "mailbox_states",
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("last_attempt_at", _at(), nullable=True),
        sa.Column("last_success_at", _at(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_kind", sa.String(length=32), nullable=True),
        sa.Column("last_error_at", _at(), nullable=True),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_mailbox_states")),
    )
    op.create_table(
        "calendar_quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("calendar", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("href", sa.String(length=2000), nullable=False),
        sa.Column("etag", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_quarantine")),
        sa.UniqueConstraint(
            "calendar", "url", "href", name=op.f("uq_calendar_quarantine_calendar_url_href")
        ),
    )
    op.create_table(
        "calendar_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("calendar", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("display_name", sa.String(length=300), nullable=False),
        sa.Column("sync_token", sa.Text(), nullable=True),
        sa.Column("discovered_at", _at(), nullable=True),
        sa.Column("last_success_at", _at(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", _at(), nullable=True),
        sa.Column("meetings_captured", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_states")),
        sa.UniqueConstraint("calendar", "url", name=op.f("uq_calendar_states_calendar_url")),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("folder", sa.String(length=1000), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint(
            "mailbox",
            "folder",
            "uidvalidity",
            "uid",
            name=op.f("uq_quarantine_mailbox_folder_uidvalidity_uid"),
        ),
    )


def downgrade() -> None:
    """Back to 0010, every row kept (a calendar error's kind is the one thing 0010 had no
    column for)."""
    run = op.execute
    run("CREATE TABLE quarantine_0011 AS SELECT * FROM quarantine")
    op.drop_table("quarantine")
    _create_old_tables()
    run(
        "INSERT INTO mailbox_states (mailbox, last_attempt_at, last_success_at, last_error, "
        "last_error_kind, last_error_at) "
        "SELECT source, last_attempt_at, last_success_at, last_error, last_error_kind, "
        "last_error_at FROM source_states WHERE kind = 'mailbox' AND place = ''"
    )
    run(
        "INSERT INTO folder_states (mailbox, folder, uidvalidity, last_uid, highestmodseq, "
        "messages_captured, messages_skipped, last_success_at, last_error, last_error_at) "
        "SELECT c.mailbox, c.folder, c.uidvalidity, c.last_uid, c.highestmodseq, "
        "COALESCE(s.captured, 0), COALESCE(s.skipped, 0), s.last_success_at, s.last_error, "
        "s.last_error_at FROM folder_cursors c LEFT JOIN source_states s "
        "ON s.kind = 'mailbox' AND s.source = c.mailbox AND s.place = c.folder"
    )
    run(
        "INSERT INTO folder_states (mailbox, folder, uidvalidity, last_uid, highestmodseq, "
        "messages_captured, messages_skipped, last_success_at, last_error, last_error_at) "
        "SELECT s.source, s.place, NULL, 0, NULL, s.captured, s.skipped, s.last_success_at, "
        "s.last_error, s.last_error_at FROM source_states s "
        "WHERE s.kind = 'mailbox' AND s.place <> '' AND NOT EXISTS (SELECT 1 FROM "
        "folder_cursors c WHERE c.mailbox = s.source AND c.folder = s.place)"
    )
    run(
        "INSERT INTO calendar_states (calendar, url, display_name, sync_token, discovered_at, "
        "last_success_at, last_error, last_error_at, meetings_captured) "
        "SELECT c.calendar, c.url, c.display_name, c.sync_token, c.discovered_at, "
        "s.last_success_at, s.last_error, s.last_error_at, COALESCE(s.captured, 0) "
        "FROM calendar_cursors c LEFT JOIN source_states s "
        "ON s.kind = 'calendar' AND s.source = c.calendar AND s.place = c.url"
    )
    run(
        "INSERT INTO calendar_states (calendar, url, display_name, sync_token, discovered_at, "
        "last_success_at, last_error, last_error_at, meetings_captured) "
        "SELECT s.source, s.place, '', NULL, NULL, s.last_success_at, s.last_error, "
        "s.last_error_at, s.captured FROM source_states s "
        "WHERE s.kind = 'calendar' AND NOT EXISTS (SELECT 1 FROM calendar_cursors c "
        "WHERE c.calendar = s.source AND c.url = s.place)"
    )
    run(
        "INSERT INTO quarantine (mailbox, folder, uidvalidity, uid, reason, created_at) "
        "SELECT source, place, CAST(version AS BIGINT), CAST(item AS BIGINT), reason, "
        "created_at FROM quarantine_0011 WHERE kind = 'mailbox' ORDER BY id"
    )
    run(
        "INSERT INTO calendar_quarantine (calendar, url, href, etag, reason, created_at) "
        "SELECT source, place, item, version, reason, created_at FROM quarantine_0011 "
        "WHERE kind = 'calendar' ORDER BY id"
    )
    op.drop_table("quarantine_0011")
    op.drop_table("calendar_cursors")
    op.drop_table("folder_cursors")
    op.drop_table("source_states")
