"""Bearer tokens of the HTTP API: made, listed, revoked, and checked on each request.

A token is shown once, when it is made; the table keeps its SHA-256 only (a token is 256
random bits, so a plain hash is as strong as a slow one and costs a request nothing).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from syncd.errors import UserError
from syncd.schema.tables import api_tokens
from syncd.store import audit
from syncd.store.errors import NotFound

SCOPES = ("read", "write", "admin")
PREFIX = "syncd_"  # tells a leaked token apart in a log or a secret scanner
# Writing last_used_at on every request would make each read a write: once a minute is
# enough for "is this token still used?".
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    scope: str
    rep: str | None
    expires_at: datetime | None
    last_used_at: datetime | None

    def allows(self, needed: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(needed)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create(
    conn: Connection,
    name: str,
    *,
    scope: str,
    rep: str | None = None,
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[str, dict[str, Any]]:
    """A new token: its secret (shown once) and its row as ``tokens list`` shows it."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise UserError(f"{name!r} is not a token name", hint="1 to 100 printable characters")
    if scope not in SCOPES:
        raise UserError(f"{scope!r} is not a scope", hint="read, write or admin")
    if conn.scalar(select(api_tokens.c.id).where(api_tokens.c.name == name)) is not None:
        raise UserError(
            f"a token named {name!r} exists",
            hint="choose another name, or revoke that one first (`syncd tokens revoke`)",
        )
    now = now or datetime.now(UTC)
    secret = PREFIX + secrets.token_urlsafe(32)
    expires_at = now + expires_in if expires_in else None
    conn.execute(
        api_tokens.insert().values(
            name=name,
            token_hash=digest(secret),
            scope=scope,
            rep=rep,
            expires_at=expires_at,
            created_at=now,
        )
    )
    audit.record(conn, "token-create", f"token {name}", scope=scope, rep=rep)
    row = conn.execute(select(api_tokens).where(api_tokens.c.name == name)).mappings().one()
    return secret, dict(row)


def listed(conn: Connection) -> list[dict[str, Any]]:
    """Every token, revoked ones too (a revoked name stays taken: the audit names it)."""
    query = select(api_tokens).order_by(api_tokens.c.name)
    return [dict(row) for row in conn.execute(query).mappings()]


def revoke(conn: Connection, name: str, *, now: datetime | None = None) -> bool:
    """True if the token was live; NotFound if no token has this name."""
    row = conn.execute(
        select(api_tokens.c.id, api_tokens.c.revoked_at).where(api_tokens.c.name == name)
    ).first()
    if row is None:
        raise NotFound("token", name)
    if row.revoked_at is not None:
        return False
    conn.execute(
        update(api_tokens)
        .where(api_tokens.c.id == row.id)
        .values(revoked_at=now or datetime.now(UTC))
    )
    audit.record(conn, "token-revoke", f"token {name}")
    return True


def check(conn: Connection, secret: str, *, now: datetime | None = None) -> Token | None:
    """The live token whose secret this is; None if none is (unknown, revoked, expired)."""
    row = conn.execute(
        select(api_tokens).where(
            api_tokens.c.token_hash == digest(secret), api_tokens.c.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    now = now or datetime.now(UTC)
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return Token(row.id, row.name, row.scope, row.rep, row.expires_at, row.last_used_at)


def touch(conn: Connection, token_id: int, now: datetime) -> None:
    conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now))
