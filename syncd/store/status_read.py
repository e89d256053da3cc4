"""The status queries: daemon heartbeats, source health, sync state, cursors, quarantine.

``syncd status`` is what monitoring runs every minute, so it must start fast: these queries
are plain parameterised SQL through the DB-API driver (sqlite3, psycopg), with no
SQLAlchemy, whose import alone costs more than the rest of the command.  They are the only
implementation: the store's SQLAlchemy functions (``queries.sync_status``,
``health.live_daemons``...) run them on the driver connection under their ``Connection``.

``open_if_current`` opens a read-only connection when the URL is a plain SQLite file or
``postgresql+psycopg`` and the schema is at the newest migration; otherwise the caller
takes the usual SQLAlchemy path, which migrates on open.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from syncd.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy import Connection

ACCOUNT = ""  # the place of a source's account-level row (login, discovery)

# A daemon whose heartbeat is older than this is not running.
HEARTBEAT_STALE = timedelta(seconds=20)

# libpq waits forever for a server that accepts the connection and never answers; the
# daemon's heartbeat and every sync would wait with it.  Keepalives find a connection
# whose server vanished mid-query (a host gone, a dropped route) in about a minute, not
# the kernel's fifteen.  A URL may set any of these itself (?connect_timeout=...).
# (Here, not in store/database.py, so that status connects without SQLAlchemy.)
POSTGRES_CONNECT_ARGS: dict[str, int] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

# Columns holding times: SQLite returns them as UTC text, PostgreSQL as aware datetimes.
_TIMES = frozenset(
    {
        "started_at",
        "heartbeat_at",
        "stopped_at",
        "retry_at",
        "lease_until",
        "updated_at",
        "last_attempt_at",
        "last_success_at",
        "last_error_at",
        "discovered_at",
        "created_at",
        "oldest_at",
    }
)


def _utc(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime, as ``UtcDateTime`` gives it to SQLAlchemy."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: "YYYY-MM-DD HH:MM:SS.ffffff", UTC, no offset
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime), value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Reader:
    """A DB-API connection and its dialect: rows as dicts, times as aware UTC datetimes."""

    def __init__(self, dbapi_connection: Any, dialect: str, *, owned: bool = False) -> None:
        self.connection = dbapi_connection
        self.dialect = dialect  # "sqlite" | "postgresql"
        self._owned = owned

    @classmethod
    def of(cls, conn: Connection) -> Reader:
        """The driver connection under a SQLAlchemy ``Connection``, in its transaction."""
        return cls(conn.connection.driver_connection, conn.dialect.name)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Run ``sql`` with ``?`` placeholders (written as ``%s`` for psycopg: the SQL in
        this module has no other ``?`` or ``%`` for PostgreSQL)."""
        if self.dialect != "sqlite":
            sql = sql.replace("?", "%s")
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            names = [column[0] for column in cursor.description]
            found = cursor.fetchall()
        finally:
            cursor.close()
        return [
            {n: _utc(v) if n in _TIMES else v for n, v in zip(names, row, strict=True)}
            for row in found
        ]

    def close(self) -> None:
        if self._owned:
            self.connection.close()


# -- opening ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DriverTarget:
    """What a SQLAlchemy URL means to the DB-API driver."""

    dialect: str  # "sqlite" | "postgresql"
    target: str  # a SQLite file path, or a libpq connection URI


def driver_target(url: str) -> DriverTarget | None:
    """The DB-API form of a SQLAlchemy URL; None for anything else (an in-memory SQLite,
    URL options, another driver), which the caller leaves to SQLAlchemy.

    The configuration has already made a relative SQLite path absolute (relative to the
    config file); one left relative here is relative to the working directory, as SQLAlchemy
    reads it.  A ``postgresql+psycopg`` URL is a libpq URI once the driver name is dropped:
    libpq reads the same user, password, host, port, database and ``?options``.
    """
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :]
            if not path or path == ":memory:" or any(c in path for c in "?%"):
                return None
            return DriverTarget("sqlite", path)
    prefix = "postgresql+psycopg://"
    if url.startswith(prefix):
        return DriverTarget("postgresql", "postgresql://" + url[len(prefix) :])
    return None


def _connect_sqlite(path: str) -> Reader | None:
    import sqlite3

    if not Path(path).is_file():
        return None  # SQLAlchemy creates and migrates it
    try:
        # mode=rw: never create a file (SQLAlchemy does, and migrates it).  query_only and
        # not mode=ro: a read-only connection cannot remove the WAL files when it closes.
        connection = sqlite3.connect(
            f"file:{quote(str(Path(path).resolve()))}?mode=rw", uri=True, timeout=30
        )
        connection.execute("PRAGMA query_only = ON")
    except sqlite3.Error:
        return None
    return Reader(connection, "sqlite", owned=True)


def _connect_postgres(uri: str) -> Reader:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(uri)
        extra = {k: v for k, v in POSTGRES_CONNECT_ARGS.items() if k not in given}
        connection = psycopg.connect(uri, **extra)  # type: ignore[arg-type]
    except psycopg.Error as err:
        # The message the SQLAlchemy path gives for the same failure.
        raise StoreError(
            f"cannot open or migrate the database: {err}",
            hint="check database.url and that the database server is running",
        ) from None
    connection.read_only = True
    return Reader(connection, "postgresql", owned=True)


def _driver_error(reader: Reader) -> type[Exception]:
    if reader.dialect == "sqlite":
        import sqlite3

        return sqlite3.Error
    import psycopg

    return psycopg.Error


_REVISION = re.compile(r"^revision\s*=\s*['\"](\w+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*=\s*(.*)$", re.MULTILINE)


def code_head() -> str | None:
    """The newest migration, read from the version files' ``revision``/``down_revision``
    lines without loading alembic; None when there is not exactly one head (then the
    caller lets alembic decide)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    # The package's folder, not importlib.resources.files(): that import (tempfile, random,
    # zipfile behind it) was ~0.01 s of every `syncd status`; the migrations are files on
    # disk anyway (alembic reads them there, store/database.py).
    from syncd import schema

    for path in (Path(schema.__path__[0]) / "migrations" / "versions").iterdir():
        if not path.name.endswith(".py") or path.name.startswith("_"):
            continue
        source = path.read_text(encoding="utf-8")
        found = _REVISION.search(source)
        down = _DOWN_REVISION.search(source)
        if found is None or down is None:
            return None
        revisions.add(found.group(1))
        parents.update(re.findall(r"['\"](\w+)['\"]", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def stored_revision(reader: Reader) -> str | None:
    """The revision alembic stamped in the database; None when there is none."""
    if reader.dialect == "sqlite":
        exists = "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        exists = "SELECT 1 AS found WHERE to_regclass(?) IS NOT NULL"
    if not reader.rows(exists, ("alembic_version",)):
        return None
    stamped = reader.rows("SELECT version_num FROM alembic_version")
    return str(stamped[0]["version_num"]) if len(stamped) == 1 else None


def open_if_current(url: str) -> Reader | None:
    """A read-only connection for the status queries, or None when the URL is not one the
    drivers take directly or the schema is behind the code (the caller then opens the
    database through SQLAlchemy, which migrates it, exactly as before)."""
    target = driver_target(url)
    if target is None:
        return None
    if target.dialect == "sqlite":
        reader = _connect_sqlite(target.target)
        if reader is None:
            return None
    else:
        reader = _connect_postgres(target.target)
    driver_error = _driver_error(reader)
    try:
        head = code_head()
        if head is not None and stored_revision(reader) == head:
            return reader
    except driver_error:  # a locked or damaged file...: the SQLAlchemy path reports it
        pass
    reader.close()
    return None


# -- daemons and source health ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    summary: str


def live_daemons(reader: Reader, now: datetime | None = None) -> list[DaemonInfo]:
    """Daemons that have not stopped and beat within ``HEARTBEAT_STALE`` of the database's
    clock (of ``now`` when given): hosts drift, the database's clock is the one clock."""
    seconds = -HEARTBEAT_STALE.total_seconds()
    params: tuple[Any, ...] = ()
    if now is not None:
        stale = "?"
        cutoff = (now - HEARTBEAT_STALE).astimezone(UTC)
        # SQLite compares the stored UTC text; the same format makes the text order right.
        params = (
            cutoff.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
            if reader.dialect == "sqlite"
            else cutoff,
        )
    elif reader.dialect == "sqlite":
        # As health.db_now writes it: milliseconds, then "000" for the stored microseconds.
        stale = f"(strftime('%Y-%m-%d %H:%M:%f', 'now', '{seconds:+.3f} seconds') || '000')"
    else:
        stale = f"(clock_timestamp() + make_interval(secs => {seconds:.6f}))"
    rows = reader.rows(
        "SELECT id, host, pid, started_at, heartbeat_at, summary FROM daemons"
        f" WHERE stopped_at IS NULL AND heartbeat_at > {stale} ORDER BY started_at",
        params,
    )
    return [DaemonInfo(**row) for row in rows]


def health_rows(reader: Reader) -> dict[tuple[str, str], dict[str, Any]]:
    """Every ``source_health`` row, by (kind, name)."""
    return {
        (row["kind"], row["name"]): row
        for row in reader.rows(
            "SELECT kind, name, state, reason, retry_at, failures, daemon_id, lease_until,"
            " updated_at FROM source_health"
        )
    }


# -- sync state of mailboxes and calendars ------------------------------------------------


def source_state(account: Any, places: list[dict[str, Any]]) -> str:
    """One rule for every kind of source: an account-level error is "degraded" while it is
    transient (the next try may work) and "failing" otherwise; a failing place (a folder, a
    calendar) leaves the rest of the source working, hence "degraded"."""
    if account is None:
        return "never synced"
    if account["last_error"]:
        return "degraded" if account["last_error_kind"] == "transient" else "failing"
    if any(p["last_error"] for p in places):
        return "degraded"
    return "ok"


def _states(reader: Reader, kind: str) -> dict[str, dict[str, Any]]:
    """{source: {place: source_states row}} of one kind."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in reader.rows(
        "SELECT source, place, last_attempt_at, last_success_at, last_error, last_error_kind,"
        " last_error_at, captured, skipped FROM source_states WHERE kind = ?",
        (kind,),
    ):
        out[row["source"]][row["place"]] = row
    return out


def _held(reader: Reader, kind: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for row in reader.rows(
        "SELECT source, place, item, reason, created_at FROM quarantine WHERE kind = ? ORDER BY id",
        (kind,),
    ):
        out[row["source"]].append(row)
    return out


def sync_status(reader: Reader, mailbox_names: list[str]) -> list[dict[str, Any]]:
    """Per configured mailbox: its state and, per folder, the cursor and counters."""
    states = _states(reader, "mailbox")
    cursors: dict[str, dict[str, Any]] = defaultdict(dict)
    for found in reader.rows(
        "SELECT mailbox, folder, uidvalidity, last_uid, highestmodseq FROM folder_cursors"
    ):
        cursors[found["mailbox"]][found["folder"]] = found
    held = _held(reader, "mailbox")
    out = []
    for name in mailbox_names:
        places = states.get(name, {})
        box = places.get(ACCOUNT)
        folders: list[dict[str, Any]] = []
        for folder in sorted((set(places) - {ACCOUNT}) | set(cursors.get(name, {}))):
            row, cursor = places.get(folder), cursors[name].get(folder)
            folders.append(
                {
                    "folder": folder,
                    "uidvalidity": cursor["uidvalidity"] if cursor else None,
                    "last_uid": cursor["last_uid"] if cursor else 0,
                    "highestmodseq": cursor["highestmodseq"] if cursor else None,
                    "messages_captured": row["captured"] if row else 0,
                    "messages_skipped": row["skipped"] if row else 0,
                    "last_success_at": row["last_success_at"] if row else None,
                    "last_error": row["last_error"] if row else None,
                    "last_error_at": row["last_error_at"] if row else None,
                }
            )
        out.append(
            {
                "mailbox": name,
                "state": source_state(box, folders),
                "last_attempt_at": box["last_attempt_at"] if box else None,
                "last_success_at": box["last_success_at"] if box else None,
                "last_error": box["last_error"] if box else None,
                "last_error_kind": box["last_error_kind"] if box else None,
                "messages_captured": sum(f["messages_captured"] for f in folders),
                "folders": folders,
                "quarantined": [
                    {
                        "folder": q["place"],
                        "uid": int(q["item"]),
                        "reason": q["reason"],
                        "at": q["created_at"],
                    }
                    for q in held.get(name, [])
                ],
            }
        )
    return out


def calendar_status(reader: Reader, names: list[str]) -> list[dict[str, Any]]:
    """Per configured [[calendar]]: account state, and per calendar its last sync and errors."""
    states = _states(reader, "calendar")
    cursors: dict[str, dict[str, Any]] = defaultdict(dict)
    for found in reader.rows(
        "SELECT calendar, url, display_name, sync_token FROM calendar_cursors"
    ):
        cursors[found["calendar"]][found["url"]] = found
    held = _held(reader, "calendar")
    out = []
    for name in names:
        places = states.get(name, {})
        account = places.get(ACCOUNT)
        calendars: list[dict[str, Any]] = []
        for url in (set(places) - {ACCOUNT}) | set(cursors.get(name, {})):
            row, cursor = places.get(url), cursors[name].get(url)
            calendars.append(
                {
                    "collection": cursor["display_name"] if cursor else "",
                    "url": url,
                    "last_success_at": row["last_success_at"] if row else None,
                    "last_error": row["last_error"] if row else None,
                    "meetings_captured": row["captured"] if row else 0,
                    "sync_token": bool(cursor and cursor["sync_token"]),
                }
            )
        calendars.sort(key=lambda c: (c["collection"], c["url"]))
        out.append(
            {
                "calendar": name,
                "state": source_state(account, calendars),
                "last_success_at": account["last_success_at"] if account else None,
                "last_error": account["last_error"] if account else None,
                "last_error_kind": account["last_error_kind"] if account else None,
                "meetings_captured": sum(c["meetings_captured"] for c in calendars),
                "calendars": calendars,
                "quarantined": [
                    {"url": q["place"], "href": q["item"], "reason": q["reason"]}
                    for q in held.get(name, [])
                ],
            }
        )
    return out


# -- the [directory] source ----------------------------------------------------------------


def directory_status(reader: Reader) -> dict[str, Any]:
    """The directory source's state: ok, error (with the reason; the directory in use is the
    one last applied) or never checked; when it was last applied and what that changed."""
    found = reader.rows(
        "SELECT last_success_at, last_error, last_error_at FROM source_states"
        " WHERE kind = ? AND source = ? AND place = ?",
        ("directory", "directory", ACCOUNT),
    )
    applied = reader.rows("SELECT value FROM settings WHERE name = ?", ("directory_source",))
    last = json.loads(applied[0]["value"]) if applied else {}
    row = found[0] if found else None
    return {
        "state": "never checked" if row is None else "error" if row["last_error"] else "ok",
        "last_error": row["last_error"] if row else None,
        "last_error_at": row["last_error_at"] if row else None,
        "last_success_at": row["last_success_at"] if row else None,
        "last_applied_at": last.get("applied_at"),
        "source": last.get("source"),
        "rows": last.get("rows"),
        "counts": last.get("counts"),
    }


@dataclass(frozen=True, slots=True)
class EndpointFilter:
    """What an endpoint takes from the outbox: its ``events`` types (None: every type) and
    its ``since`` (events about records that occurred earlier are skipped)."""

    types: tuple[str, ...] | None = None
    since: datetime | None = None


def webhook_status(
    reader: Reader, names: list[str], filters: dict[str, EndpointFilter] | None = None
) -> dict[str, dict[str, Any]]:
    """Per configured webhook endpoint: state, counters, backlog (syncd/webhooks/).

    ``not_taken`` counts the outbox events after the endpoint's cursor that its type and
    ``since`` filters will take; ``oldest_at`` is the creation time of the oldest event not
    yet delivered, taken or not.
    """
    out: dict[str, dict[str, Any]] = {}
    wanted = set(names)
    for row in reader.rows(
        "SELECT name, state, reason, delivered, last_event_id, last_success_at, last_error, "
        "last_error_at FROM webhook_endpoints"
    ):
        if row["name"] in wanted:
            out[row["name"]] = {**row, "pending": 0, "failed": 0, "oldest_at": None}
    for name in names:  # not started yet: every event in the outbox is still to come
        out.setdefault(
            name,
            {"name": name, "state": "active", "reason": None, "delivered": 0,
             "last_event_id": 0, "last_success_at": None, "last_error": None,
             "last_error_at": None, "pending": 0, "failed": 0, "oldest_at": None},
        )  # fmt: skip
    for row in reader.rows(
        "SELECT endpoint, state, COUNT(*) AS n FROM webhook_deliveries GROUP BY endpoint, state"
    ):
        if row["endpoint"] in out and row["state"] in ("pending", "failed"):
            out[row["endpoint"]][row["state"]] = row["n"]
    for row in reader.rows(
        "SELECT d.endpoint, MIN(e.created_at) AS oldest_at FROM webhook_deliveries d "
        "JOIN events e ON e.id = d.event_id WHERE d.state = 'pending' GROUP BY d.endpoint"
    ):
        if row["endpoint"] in out:
            out[row["endpoint"]]["oldest_at"] = row["oldest_at"]
    for name, item in out.items():
        sql, params = _untaken_query(reader, item["last_event_id"], (filters or {}).get(name))
        found = reader.rows(sql, params)[0]
        item["not_taken"] = found["n"]
        if found["oldest_at"] is not None and (
            item["oldest_at"] is None or found["oldest_at"] < item["oldest_at"]
        ):
            item["oldest_at"] = found["oldest_at"]
    return out


def _untaken_query(
    reader: Reader, cursor: int, wanted: EndpointFilter | None
) -> tuple[str, tuple[Any, ...]]:
    """The count and age of the events after ``cursor`` that the endpoint will take, as its
    deliverer's ``take_new`` filters them (the ``events`` table is indexed by id)."""
    sql = "SELECT COUNT(*) AS n, MIN(created_at) AS oldest_at FROM events WHERE id > ?"
    params: list[Any] = [cursor]
    if wanted is not None and wanted.types:
        sql += f" AND type IN ({', '.join('?' for _ in wanted.types)})"
        params += wanted.types
    if wanted is not None and wanted.since is not None:
        since = wanted.since.astimezone(UTC)
        # SQLAlchemy keeps SQLite's times as naive UTC text, which sorts as time does.
        bound = since.strftime("%Y-%m-%d %H:%M:%S.%f") if reader.dialect == "sqlite" else since
        sql += " AND (occurred_at IS NULL OR occurred_at >= ?)"
        params.append(bound)
    return sql, tuple(params)
