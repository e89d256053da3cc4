"""Migration 0030: the table ``sources`` renamed ``provenance``, its rows kept, and back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic import command
from sqlalchemy import Engine, insert, inspect, text

from syncd.schema.tables import records
from syncd.store import database

ROWS = [(1, 1, "alice", "INBOX", 7, 1), (2, 1, "bob", "Sent", 9, 4), (3, 2, "alice", "INBOX", 7, 2)]


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    cfg = database._alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _names(engine: Engine, table: str) -> set[str]:
    """The names of the table's index and constraints (those that carry a table's name)."""
    seen = inspect(engine)
    names = {i["name"] for i in seen.get_indexes(table)}
    names |= {u["name"] for u in seen.get_unique_constraints(table)}
    names |= {f["name"] for f in seen.get_foreign_keys(table)}
    names.add(seen.get_pk_constraint(table)["name"])
    return {n for n in names if n is not None}


def _rows(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        query = f"SELECT id, record_id, mailbox, folder, uidvalidity, uid FROM {table} ORDER BY id"
        return [tuple(row) for row in conn.execute(text(query))]


def test_the_rename_keeps_every_row_and_names_what_carries_the_name(db_url: str) -> None:
    engine = database.make_engine(db_url)
    try:
        _migrate(engine, "0029")
        with engine.begin() as conn:
            now = datetime.now(UTC)
            conn.execute(
                insert(records),
                [
                    {"id": n, "key": f"k{n}", "kind": "email", "direction": "inbound",
                     "occurred_at": now, "created_at": now}
                    for n in (1, 2)
                ],
            )  # fmt: skip
            for row in ROWS:  # ids from the table's own sequence, as capture writes them
                conn.execute(
                    text(
                        "INSERT INTO sources (record_id, mailbox, folder, uidvalidity, uid) "
                        "VALUES (:b, :c, :d, :e, :f)"
                    ),
                    dict(zip("bcdef", row[1:], strict=True)),
                )
        _migrate(engine, "0030")
        tables = set(inspect(engine).get_table_names())
        assert "provenance" in tables and "sources" not in tables
        assert _rows(engine, "provenance") == ROWS
        assert _names(engine, "provenance") == {
            "pk_provenance",
            "fk_provenance_record_id_records",
            "uq_provenance_mailbox_folder_uidvalidity_uid",
            "ix_provenance_record_id_id_mailbox",
        }
        assert not any("sources" in name for name in _names(engine, "provenance"))
        with engine.begin() as conn:  # the id goes on where it stood
            conn.execute(
                text(
                    "INSERT INTO provenance (record_id, mailbox, folder, uidvalidity, uid) "
                    "VALUES (2, 'bob', 'INBOX', 5, 1)"
                )
            )
        assert _rows(engine, "provenance")[-1][0] == 4
        _migrate(engine, "0029", down=True)
        tables = set(inspect(engine).get_table_names())
        assert "sources" in tables and "provenance" not in tables
        assert _rows(engine, "sources") == [*ROWS, (4, 2, "bob", "INBOX", 5, 1)]
        assert not any("provenance" in name for name in _names(engine, "sources"))
        assert "uq_sources_mailbox_folder_uidvalidity_uid" in _names(engine, "sources")
    finally:
        engine.dispose()
