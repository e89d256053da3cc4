"""`syncd sync`'s first look (issue #20): an unchanged pass without SQLAlchemy.

Most runs of `syncd sync` (cron, every few minutes) find nothing new, and importing
SQLAlchemy alone took longer than the rest of such a run.  Before it is imported, the
first look reads the folder cursors through the DB-API driver (sqlite3), asks the server
for each folder's STATUS with the connector the pass uses, and when every folder is
unchanged and nothing else the command does has work, writes what the full pass would
have written (each mailbox's attempt and success, the held-meetings mark) in one
transaction and prints what it prints.  Anything else (a changed folder, a schema behind
the code, a [directory], [[webhook]], calendar, --repair, PostgreSQL, an error of any
kind) leaves everything to the full pass, which decides and reports as before.

The follow-up rules and the events upkeep are time-driven: they may create a task with no
new mail.  So each full pass records (``MARK``, in ``settings``) the earliest time after
which they could do anything with the data they saw (``horizon`` of engine/followups.py
and engine/event_upkeep.py), a fingerprint of that data (``data_stamp``) and of the
configuration they read (``rules_digest``); the first look goes ahead only before that
time, with the same fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from syncd.errors import RemoteError
from syncd.store.change_counter import APPENDED, COUNTER, operations, stamped, trigger_name
from syncd.store.status_read import ACCOUNT, Reader, code_head, driver_target, stored_revision

if TYPE_CHECKING:
    from syncd.config import Config, MailboxConfig
    from syncd.connectors.base import MailSession
    from syncd.engine.imap.unchanged import Cursor, SessionOpener

MARK = "first_look"  # settings row: {"due", "stamp", "config"} (see the module's docstring)
HELD_MARK = "events_held_swept_at"  # store/event_upkeep.py's own mark, moved as it moves it
HELD_SETTLE = timedelta(minutes=1)  # store/event_upkeep.py's SETTLE
# Tests set it to compare the full pass with the first look's (tests/integration/...).
DISABLE_ENV = "SYNCD_NO_FIRST_LOOK"


def _sqlite_time(at: datetime) -> str:
    """A time as SQLAlchemy's ``UtcDateTime`` stores it in SQLite (naive UTC text)."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


# -- what the full pass records -------------------------------------------------------------


def rules_digest(config: Config) -> str:
    """A digest of what the rules and the upkeep read from the configuration: a changed
    rule, lookback, working week, owner or retention makes the next pass evaluate."""
    org = config.organization

    def week(source: Any = None) -> list[Any]:
        w = org.working_week(source)
        return [str(w.zone), sorted(w.workdays), str(w.opens), str(w.closes),
                sorted(str(d) for d in w.holidays)]  # fmt: skip

    what = [
        [repr(entry) for entry in config.followup],
        sorted((name, repr(span)) for name, span in config.followup_rules().items()),
        repr(config.tasks),
        repr(config.events),
        sorted(config.internal_domains),
        week(),
        [[s.name, s.owner, week(s)] for s in [*config.mailbox, *config.calendar]],
        [hook.name for hook in config.webhook],
    ]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()


def data_stamp(reader: Reader) -> str | None:
    """A fingerprint of the data the rules read (SQLite): the ``settings`` rows other than
    the marks, among them the change counter every write to that data moves (its triggers:
    migration 0032), in place or not, and the highest rowid of each table capture appends
    to (whose inserts no trigger counts).  A few rows read, whatever the database's size.
    None, so that every run takes the full pass: on PostgreSQL (the first look is
    SQLite's), without the counter, or when a table the rules may read has not its three
    triggers (a table added or rebuilt since without them)."""
    if reader.dialect != "sqlite":
        return None
    counted = {
        row["name"]: (row["sql"] or "").lower()
        for row in reader.rows("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        if stamped(row["name"])
    }
    triggers = {
        (row["tbl_name"], row["name"])
        for row in reader.rows("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
    }
    for table in counted:
        if any((table, trigger_name(table, op)) not in triggers for op in operations(table)):
            return None
    parts: list[str] = []
    for table in sorted(APPENDED & counted.keys()):
        if "without rowid" in counted[table]:
            return None
        quoted = '"' + table.replace('"', '""') + '"'
        (row,) = reader.rows(f"SELECT MAX(rowid) AS top FROM {quoted}")
        parts.append(f"{table}:{row['top']}")
    for row in reader.rows(
        "SELECT name, value FROM settings WHERE name NOT IN (?, ?) ORDER BY name",
        (MARK, HELD_MARK),
    ):
        parts.append(f"settings:{row['name']}={row['value']}")
    if not any(part.startswith(f"settings:{COUNTER}=") for part in parts):
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def mark_value(horizon: Sequence[datetime], stamp: str, digest: str) -> str:
    due = min(horizon) if horizon else None
    return json.dumps(
        {"due": due.astimezone(UTC).isoformat() if due else None, "stamp": stamp, "config": digest}
    )


# -- the first look -----------------------------------------------------------------------


def disabled() -> bool:
    return bool(os.environ.get(DISABLE_ENV))


def _connect(path: str) -> sqlite3.Connection | None:
    if not Path(path).is_file():
        return None  # SQLAlchemy creates and migrates it
    try:
        # mode=rw: never create a file.  Autocommit, so that BEGIN IMMEDIATE below is the
        # one transaction this look writes in.
        connection = sqlite3.connect(
            f"file:{quote(str(Path(path).resolve()))}?mode=rw",
            uri=True,
            timeout=30,
            isolation_level=None,
        )
        connection.execute("PRAGMA synchronous=NORMAL")  # as store/database.py sets it
        connection.execute("PRAGMA busy_timeout=30000")
        # As store/database.py requires of every connection: a page this one frees (the
        # source_states rows it rewrites) is zeroed, nothing forgotten left in the file.
        connection.execute("PRAGMA secure_delete=ON")
    except sqlite3.Error:
        return None
    return connection


NEVER = datetime.max.replace(tzinfo=UTC)


def _rules_quiet_until(reader: Reader, config: Config) -> datetime | None:
    """Until when the rules and the upkeep have nothing to do: the last full pass's mark,
    for this data and this configuration (``NEVER``: until the data changes); None when
    there is no such mark."""
    found = reader.rows("SELECT value FROM settings WHERE name = ?", (MARK,))
    if not found:
        return None
    try:
        mark = json.loads(found[0]["value"])
        if mark["config"] != rules_digest(config):
            return None
        if not mark["stamp"] or mark["stamp"] != data_stamp(reader):
            return None
        return NEVER if mark["due"] is None else datetime.fromisoformat(mark["due"])
    except (ValueError, KeyError, TypeError):
        return None


def _cursors(reader: Reader, names: list[str]) -> dict[str, dict[str, Cursor]]:
    from syncd.engine.imap.unchanged import Cursor

    out: dict[str, dict[str, Cursor]] = {name: {} for name in names}
    for row in reader.rows(
        "SELECT mailbox, folder, uidvalidity, last_uid, highestmodseq FROM folder_cursors"
    ):
        if row["mailbox"] in out:
            out[row["mailbox"]][row["folder"]] = Cursor(
                row["uidvalidity"], int(row["last_uid"] or 0), row["highestmodseq"]
            )
    return out


def _unchanged_box(
    opener: SessionOpener,
    box: MailboxConfig,
    max_bytes: int,
    cursors: dict[str, Cursor],
    failed: dict[str, RemoteError],
) -> list[str] | None:
    """The mailbox's folders when every one is unchanged since its cursor, else None.
    A login that fails (refused, unreachable, timed out, after the opener's own retries)
    is put in ``failed``, for the full pass to report as its own first attempt's failure
    (``replaying``): a refused password is tried once per run, a mute server waited for
    as often as without the first look."""
    from syncd.engine.imap.unchanged import unchanged_folders

    if not cursors:
        return None
    try:
        session: MailSession = opener(box, max_bytes)
    except RemoteError as err:
        failed[box.name] = err
        return None
    try:
        folders = box.folders or session.default_folders()
        if any(f not in cursors for f in folders):
            return None
        return list(folders) if unchanged_folders(session, list(folders), cursors) else None
    finally:
        session.close()


def unchanged_sync(
    config: Config,
    opener_of: Any,
    names: list[str] | None,
    calendars: list[str] | None,
    failed: dict[str, RemoteError] | None = None,
) -> list[str] | None:
    """The lines `syncd sync` prints, when the first look found every selected mailbox
    unchanged and nothing else to do, and wrote what the pass would have; None: run the
    full pass (nothing was written).  ``opener_of()`` gives the IMAP opener; a mailbox
    whose login failed is put in ``failed`` (see ``replaying``)."""
    if failed is None:
        failed = {}
    from syncd.group_tokens import uses_refresh_tokens

    if disabled() or config.directory is not None or config.webhook:
        return None
    if (calendars is None and config.calendar) or calendars:
        return None  # a calendar's pass is its own REPORT: the full pass
    if uses_refresh_tokens(config):
        return None  # the engine's opening keeps rotated refresh tokens
    target = driver_target(config.database.url)
    if target is None or target.dialect != "sqlite":
        return None
    boxes = [b for b in config.mailbox if names is None or b.name in names]
    if not boxes:
        return None
    connection = _connect(target.target)
    if connection is None:
        return None
    reader = Reader(connection, "sqlite", owned=True)
    try:
        head = code_head()
        if head is None or stored_revision(reader) != head:
            return None
        quiet_until = _rules_quiet_until(reader, config)
        if quiet_until is None or quiet_until <= datetime.now(UTC):
            return None
        cursors = _cursors(reader, [b.name for b in boxes])
        opener = opener_of()
        seen: list[tuple[str, datetime, list[str], datetime]] = []
        for box in boxes:
            attempt = datetime.now(UTC)
            try:
                folders = _unchanged_box(
                    opener, box, config.capture.max_message_bytes, cursors[box.name], failed
                )
            except Exception:  # a refused folder, a dropped connection: the pass
                return None  # reports it (a failed login: ``failed``)
            if folders is None:
                return None
            seen.append((box.name, attempt, folders, datetime.now(UTC)))
        now = datetime.now(UTC)
        if quiet_until <= now:  # the rules fell due while the server answered
            return None
        _record(connection, seen, now, lambda: _rules_quiet_until(reader, config) == quiet_until)
    except (sqlite3.Error, Changed):
        return None  # locked, damaged, changed meanwhile...: the full pass decides
    finally:
        reader.close()
    return [f"{name}: 0 captured, 0 skipped, 0 quarantined" for name, *_ in seen]


class Changed(Exception):
    """The data changed between the first look's reading and its writing."""


def _record(
    connection: sqlite3.Connection,
    seen: list[tuple[str, datetime, list[str], datetime]],
    now: datetime,
    unchanged: Callable[[], bool],
) -> None:
    """What an unchanged pass writes, in one transaction: per mailbox, the account's
    attempt (state.mailbox_attempt) then the account's and each folder's success
    (state.mailbox_done), and the events upkeep's held-meetings mark (announce_held).
    ``unchanged()`` asks again, inside the write lock, whether the mark still vouches for
    the data: a write committed while the server answered (a concurrent pass, a command)
    raises ``Changed`` and leaves the run to the full pass."""
    attempt_sql = (
        "INSERT INTO source_states (kind, source, place, captured, skipped, last_attempt_at)"
        " VALUES ('mailbox', ?, ?, 0, 0, ?) ON CONFLICT (kind, source, place)"
        " DO UPDATE SET last_attempt_at = excluded.last_attempt_at"
    )
    success_sql = (
        "INSERT INTO source_states (kind, source, place, captured, skipped, last_success_at)"
        " VALUES ('mailbox', ?, ?, 0, 0, ?) ON CONFLICT (kind, source, place)"
        " DO UPDATE SET last_success_at = excluded.last_success_at, last_error = NULL,"
        " last_error_kind = NULL, last_error_at = NULL"
    )
    connection.execute("BEGIN IMMEDIATE")
    try:
        if not unchanged():
            raise Changed
        for name, attempted, folders, done in seen:
            connection.execute(attempt_sql, (name, ACCOUNT, _sqlite_time(attempted)))
            for place in (ACCOUNT, *folders):
                connection.execute(success_sql, (name, place, _sqlite_time(done)))
        _move_held_mark(connection, now)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _move_held_mark(connection: sqlite3.Connection, now: datetime) -> None:
    """announce_held's mark, moved as it moves it when no meeting ended since (the rules'
    mark guarantees none did: a meeting's end is part of its horizon)."""
    upto = now - HELD_SETTLE
    row = connection.execute("SELECT value FROM settings WHERE name = ?", (HELD_MARK,)).fetchone()
    since: datetime | None
    if row is not None:
        since = datetime.fromisoformat(row[0])
    else:
        first = connection.execute("SELECT created_at FROM events ORDER BY id LIMIT 1").fetchone()
        since = None if first is None else datetime.fromisoformat(first[0]).replace(tzinfo=UTC)
    if since is not None and since < upto:
        connection.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (HELD_MARK, upto.isoformat()),
        )


def replaying(opener: SessionOpener, failed: dict[str, RemoteError]) -> SessionOpener:
    """The full pass's opener after a first look: a mailbox whose login failed in the
    look gets that failure at its first opening instead of a second login (its retry
    policy, retryable or not, then goes on as without the look: one attempt already
    made); later openings, and the other mailboxes, log in as usual."""

    def open_session(box: MailboxConfig, max_bytes: int) -> MailSession:
        err = failed.pop(box.name, None)
        if err is not None:
            raise err
        return opener(box, max_bytes)

    return open_session
