"""What every handler shares: the config, the database, the caller's token; and the
helpers that turn query values into what the stores take."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine
from starlette.responses import Response

from syncd.api.auth import Authenticator, actor, require
from syncd.api.problems import Problem
from syncd.cli.params import owned_by
from syncd.config import Config
from syncd.domain.addresses import normalize_address
from syncd.store import audit
from syncd.store.api_tokens import Token
from syncd.store.insight import Owned

_bearer = HTTPBearer(auto_error=False, description="A token from `syncd tokens create`.")


@dataclass
class Api:
    config: Config
    engine: Engine
    auth: Authenticator
    once: Engine = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        # Reads of one statement need no transaction: on PostgreSQL, autocommit spares the
        # BEGIN and the ROLLBACK (two round trips a page) and keeps psycopg's prepared
        # statements, which a ROLLBACK drops.  SQLite begins no transaction for a read.
        self.once = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql"
            else self.engine
        )


def api_of(request: Request) -> Api:
    found = request.app.state.api
    assert isinstance(found, Api)
    return found


@dataclass
class Caller:
    """The request's token and what it may see."""

    api: Api
    token: Token

    @property
    def rep(self) -> Owned | None:
        """The rep a ``--rep`` token is restricted to, with their mailboxes and calendars."""
        if not self.token.rep:
            return None
        found: Owned = owned_by(self.api.config, self.token.rep)
        return found

    @property
    def owners(self) -> list[Owned]:
        rep = self.rep
        return [rep] if rep is not None else []

    def read(self) -> Any:
        return self.api.engine.connect()

    def read_once(self) -> Any:
        """A connection for reads that need no snapshot shared by several statements."""
        return self.api.once.connect()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction whose audit rows name the token."""
        with audit.acting_as(actor(self.token)), self.api.engine.begin() as conn:
            yield conn


def needs(scope: str) -> Callable[..., Any]:
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        # Async: the token is almost always cached, and a thread hop per request would cost
        # more than the lookup; a miss reads the database in the thread pool.
        api = api_of(request)
        header = (
            f"Bearer {credentials.credentials}"
            if credentials
            else request.headers.get("authorization")
        )
        token = await api.auth.token_async(header)
        require(token, scope)
        return Caller(api, token)

    return dependency


Reader = Annotated[Caller, Depends(needs("read"))]
Writer = Annotated[Caller, Depends(needs("write"))]
Admin = Annotated[Caller, Depends(needs("admin"))]


def json(data: Any, status: int = 200, *, option: int = 0) -> Response:
    body = orjson.dumps(data, default=str, option=option)
    return Response(body, status, media_type="application/json")


def page(items: list[Any], next_cursor: str | None, *, option: int = 0) -> Response:
    return json({"items": items, "next_cursor": next_cursor}, option=option)


def utc(value: datetime | None) -> datetime | None:
    """A time from a query or a body, as aware UTC (a time with no offset is UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def address(value: str, field: str) -> str:
    found = normalize_address(value)
    if found is None:
        raise Problem(
            422,
            f"{field}: {value!r} is not an email address",
            kind="validation",
            extra={"errors": [{"field": field, "message": "not an email address"}]},
        )
    return found


def rep_owned(caller: Caller, value: str, field: str) -> Owned:
    found: Owned = owned_by(caller.api.config, address(value, field))
    return found
