"""The lean path of the hottest read: ``GET /api/v1/records`` with nothing but ``customer``,
``limit`` and ``cursor`` (a CRM page showing a customer's history, and its next pages).

FastAPI's way to the same handler (its middleware, dependency solving, a pydantic check of
each parameter) cost more CPU than the page itself.  This lane answers such a request
straight from the ASGI scope, with the same token check, handler, problem documents and
metrics label, when every value is one that FastAPI would pass unchanged.  Anything else
(another parameter, a repeated or empty one, a limit out of range, HEAD) goes to FastAPI,
which validates and answers it as always: the OpenAPI document still comes from the route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from syncd.api import paging, problems
from syncd.api.auth import require
from syncd.api.context import Api, Caller
from syncd.api.routes import PREFIX, records
from syncd.api.routes.records import records_page
from syncd.api.workers import Workers

PATH = PREFIX + "/records"
_MAX_LENGTH = {"customer": 300, "cursor": 500}  # the route's Query(max_length=...)


def plain_query(raw: bytes) -> dict[str, str] | None:
    """The lane's parameters, decoded as Starlette decodes them; None when FastAPI must
    judge the query (a name the lane does not take, a value it would not pass as is)."""
    found: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name in found or not value:
            return None
        if name == "limit":
            # Plain decimal only: "050", "+5" or " 5" are FastAPI's to read.
            if not (value.isascii() and value.isdigit() and value[0] != "0"):
                return None
            if int(value) > paging.MAX_LIMIT:
                return None
        elif len(value) > _MAX_LENGTH.get(name, -1):
            return None
        found[name] = value
    return found


class Lane:
    """ASGI: the lean requests answered here, every other one passed to ``app``."""

    def __init__(self, app: FastAPI, api: Api, workers: Workers) -> None:
        self.app = app
        self.api = api
        self.workers = workers
        # The route's own object: the metrics label the request by its template.
        self.route = next(
            route
            for route in records.router.routes
            if getattr(route, "path", None) == PATH and "GET" in getattr(route, "methods", ())
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == PATH:
            query = plain_query(scope["query_string"])
            if query is not None:
                scope["route"] = self.route
                response = await self._records(scope, query)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _records(self, scope: Scope, query: dict[str, str]) -> Response:
        try:
            token = await self.api.auth.token_async(_authorization(scope))
            require(token, "read")
            limit = int(query.get("limit", paging.DEFAULT_LIMIT))
            args: tuple[Any, ...] = (query.get("customer"), None, None, [], None, None, None)
            return await self.workers.run(
                records_page, Caller(self.api, token), *args, limit, query.get("cursor")
            )
        except Exception as err:  # answered as FastAPI's handlers answer it
            return problems.answer(err)


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None
