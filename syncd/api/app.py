"""The API as an ASGI app: routes under /api/v1, the OpenAPI document and its page, and
the middleware every request passes (body size, metrics)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd import __version__
from syncd.api import problems
from syncd.api.auth import Authenticator
from syncd.api.context import Api
from syncd.api.feed import Feed
from syncd.api.lane import Lane
from syncd.api.models import Problem as ProblemModel
from syncd.api.problems import problem_response
from syncd.api.routes import customers, feed, reconcile, records, tasks
from syncd.api.workers import Workers
from syncd.config import ApiConfig, Config
from syncd.metrics import Metrics

MAX_BODY = 1024 * 1024  # bytes: a logged note with a long body fits many times over
BODY_SECONDS = 30.0  # to send a whole body: a client trickling bytes is cut off after it
HANDLER_THREADS = 8  # requests reading the database at once (long polls wait without one)
LEAN_STOP_SECONDS = 5.0  # for the reads in hand at shutdown
LEAN_THREADS = 4  # the lean path's own readers (syncd/api/workers.py): few contend less

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemModel, "description": text, "content": {problems.MEDIA_TYPE: {}}}
    for status, text in (
        (401, "No token, or not a live one"),
        (403, "Outside the token's scope"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Body over 1 MB"),
        (422, "A field is not valid: each is listed in `errors`"),
        (429, "Over the token's rate limit; see Retry-After"),
    )
}


class Bounded:
    """Refuses bodies over ``MAX_BODY`` (by Content-Length, or as they arrive) and bodies
    that take longer than ``BODY_SECONDS`` to arrive; counts every request in the metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            length = _content_length(scope)
            if length is not None and length > MAX_BODY:
                await problem_response(413, f"the body is over {MAX_BODY} bytes")(
                    scope, receive, sending
                )
                return
            await self.app(scope, _bounded(receive, started), sending)
        except _TooMuch as err:
            await problem_response(err.status, err.detail)(scope, receive, sending)
        finally:
            if self.metrics is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "(unmatched)"
                self.metrics.api_requests.labels(
                    template, scope["method"], str(status["code"])
                ).inc()
                self.metrics.api_latency.labels(template).observe(time.perf_counter() - started)


class _TooMuch(StarletteHTTPException):
    """Raised while the body arrives: an HTTP error, so that FastAPI's body parsing passes
    it on as it is (anything else it reports as a 400 "error parsing the body")."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status = status


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _bounded(receive: Receive, started: float) -> Receive:
    seen = 0

    async def bounded_receive() -> Message:
        nonlocal seen
        left = BODY_SECONDS - (time.perf_counter() - started)
        try:
            message = await asyncio.wait_for(receive(), max(left, 0.001))
        except TimeoutError:
            raise _TooMuch(408, f"the body took over {BODY_SECONDS:g} s to arrive") from None
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise _TooMuch(413, f"the body is over {MAX_BODY} bytes")
        return message

    return bounded_receive


def create_app(
    config: Config,
    engine: Engine,
    *,
    metrics: Metrics | None = None,
    lean_reads: Workers | None = None,
    processes: int = 1,
) -> ASGIApp:
    """The API as uvicorn serves it: every request bounded and counted (``Bounded``), the
    hottest read answered by its lean path (``Lane``), the rest by FastAPI.  ``processes``:
    how many serve it in all (each takes its share of the rate limit)."""
    api_config = config.api or ApiConfig()
    event_feed = Feed(engine)
    if lean_reads is None:
        lean_reads = Workers(LEAN_THREADS)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Handlers read the database from this loop's thread pool: no more threads than
        # the engine keeps connections (a request past the pool would open and close one
        # of its own), and few, so that they do not take turns at the GIL to no purpose.
        to_thread.current_default_thread_limiter().total_tokens = HANDLER_THREADS
        try:
            yield
        finally:
            await event_feed.close()
            # In a thread: joining the readers here would stop the loop, uvicorn's own
            # shutdown (its force_exit) included.
            await asyncio.to_thread(lean_reads.stop, LEAN_STOP_SECONDS)

    app = FastAPI(
        title="syncd",
        version=__version__,
        summary="Records, customers, tasks, reconciliation and events of syncd, over HTTP.",
        description=(
            "Every request carries `Authorization: Bearer TOKEN` (`syncd tokens create`). "
            "Objects are the CLI's `--json` objects; lists are `{items, next_cursor}`; errors "
            "are RFC 9457 problem documents."
        ),
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
        responses=_ERRORS,
    )
    api = Api(
        config,
        engine,
        Authenticator(engine, rate_limit=api_config.rate_limit, processes=processes),
    )
    app.state.api = api
    app.state.feed = event_feed
    problems.install(app)
    for module in (records, customers, tasks, reconcile, feed):
        app.include_router(module.router)
    return Bounded(Lane(app, api, lean_reads), metrics)
