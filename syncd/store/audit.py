"""Who did what, when: every change an admin makes from the CLI."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from syncd.schema.tables import audit_log

# Who acts, when it is not the login behind the process: an API request names its token.
# A context variable, set only for the block that does the request's work: each request
# runs in its own context, so two requests at once never see each other's actor.
_ACTOR: ContextVar[str | None] = ContextVar("syncd_audit_actor", default=None)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Audit rows written inside the block name ``actor``."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def current_actor() -> str:
    """Whoever ``acting_as`` names; else the person behind the command: the sudo caller if
    any, else the login name."""
    acting = _ACTOR.get()
    if acting is not None:
        return acting
    for var in ("SUDO_USER", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def record(conn: Connection, action: str, target: str, **detail: Any) -> None:
    record_as(conn, None, action, target, **detail)


def record_as(conn: Connection, actor: str | None, action: str, target: str, **detail: Any) -> None:
    """``record`` naming who acted, when the caller knows (an API token's owner); None: the
    person behind the command."""
    conn.execute(
        audit_log.insert().values(
            at=datetime.now(UTC),
            actor=actor or current_actor(),
            action=action,
            target=target,
            detail=json.dumps(detail, sort_keys=True, default=str) if detail else "",
        )
    )


def record_many(conn: Connection, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
    """``record`` for each (action, target, detail), in one statement: a mirror archiving a
    thousand customers writes its audit rows without a round trip each."""
    if not rows:
        return
    at, actor = datetime.now(UTC), current_actor()
    conn.execute(
        audit_log.insert(),
        [
            {
                "at": at,
                "actor": actor,
                "action": action,
                "target": target,
                "detail": json.dumps(detail, sort_keys=True, default=str) if detail else "",
            }
            for action, target, detail in rows
        ],
    )


def entries(conn: Connection, limit: int | None = None) -> list[dict[str, Any]]:
    query = select(audit_log).order_by(audit_log.c.id.desc())
    if limit:
        query = query.limit(limit)
    return [
        {
            "id": row.id,
            "at": row.at,
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "detail": json.loads(row.detail) if row.detail else {},
        }
        for row in conn.execute(query)
    ]
