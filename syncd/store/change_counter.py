"""The change counter `syncd sync`'s first look reads (SQLite; engine/first_look.py): a
``settings`` row the database moves by triggers (migration 0032) on every change to the
data the follow-up rules, the events upkeep and the pass read.

Kept here once, for the migration that makes the triggers and the look that checks them: a
table added later without its triggers makes every look step aside (the full pass runs),
never skip wrongly.  Changing these sets needs a migration that makes the triggers anew.
"""

from __future__ import annotations

COUNTER = "data_changes"
# Bookkeeping written on every poll (the first look's own writes among them), and the
# tables of migrations and settings: no triggers, so an unchanged pass moves nothing.
UNSTAMPED = frozenset(
    {
        "alembic_version",
        "settings",
        "source_states",
        "source_health",
        "daemons",
        "folder_cursors",
        "calendar_cursors",
        "verify_states",
    }
)
OPERATIONS = ("insert", "update", "delete")
# Tables capture appends to (several rows a message): an INSERT trigger on them costs a
# backfill a fifth of its CPU (measured: bench/capture.py's backfill, 2,000 messages), so
# they have UPDATE and DELETE triggers only, and the first look sees a row added through
# their highest rowid (a new row takes one above it: no syncd writer gives them a rowid).
APPENDED = frozenset(
    {
        "records",
        "participants",
        "record_customers",
        "provenance",
        "events",
        "unmatched_addresses",
        "unmatched_sightings",
        "skipped_messages",
    }
)


def stamped(table: str) -> bool:
    """Whether changes to ``table`` move the counter (the search index's FTS5 tables are
    written with their record, and SQLite's own are not ours)."""
    return (
        table not in UNSTAMPED
        and not table.startswith("sqlite_")
        and not table.startswith("record_search")
    )


def operations(table: str) -> tuple[str, ...]:
    """The statements whose triggers move the counter for ``table``."""
    return OPERATIONS[1:] if table in APPENDED else OPERATIONS


def trigger_name(table: str, operation: str) -> str:
    return f"{COUNTER}_{table}_{operation}"
