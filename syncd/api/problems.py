"""Errors as RFC 9457 problem details (``application/problem+json``): ``type, title,
status, detail``, and for a request that failed validation, ``errors``: every bad field."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from syncd.errors import SyncdError, UserError
from syncd.logs import get_logger
from syncd.store.errors import NotFound

log = get_logger("syncd.api")

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://syncd.invalid/problems/"  # a stable name per kind, not a page to fetch

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal error",
    501: "Not implemented",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raised by a handler: answered as a problem document with this status."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    kind = kind or _TITLES.get(status, "error").lower().replace(" ", "-")
    body = {
        "type": TYPE_BASE + kind,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **(extra or {}),
    }
    return Response(orjson.dumps(body), status, headers=headers, media_type=MEDIA_TYPE)


def _field(loc: tuple[Any, ...]) -> str:
    """``query.limit``, ``body.due_at``, ``query.kind[1]``: where the bad value was."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "request"


def bad_fields(err: RequestValidationError) -> list[dict[str, str]]:
    return [
        {"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", "invalid"))}
        for e in err.errors()
    ]


def answer(err: Exception) -> Response:
    """The problem document for an error a handler raised (what ``install`` registers,
    for the lean routes too, which answer without FastAPI)."""
    if isinstance(err, Problem):
        return problem_response(
            err.status, err.detail, kind=err.kind, headers=err.headers, extra=err.extra
        )
    if isinstance(err, RequestValidationError):
        fields = bad_fields(err)
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return problem_response(422, detail, kind="validation", extra={"errors": fields})
    if isinstance(err, StarletteHTTPException):
        return problem_response(err.status_code, str(err.detail), headers=dict(err.headers or {}))
    if isinstance(err, SyncdError):
        if isinstance(err, NotFound):
            return problem_response(404, err.message, kind="not-found")
        if isinstance(err, UserError):
            extra = {"hint": err.hint} if err.hint else None
            return problem_response(422, err.message, kind="invalid", extra=extra)
        log.warning("api.error", error=type(err).__name__)
        return problem_response(503, err.message, kind="unavailable")
    # The class only: a message may quote stored data, which is not the log's to keep.
    log.error("api.internal_error", error=type(err).__name__)
    return problem_response(500, "internal error; see the server's log", kind="internal")


def install(app: FastAPI) -> None:
    """Every error the app can raise, as a problem document."""

    async def on_error(_request: Request, err: Exception) -> Response:
        return answer(err)

    for kind in (Problem, RequestValidationError, StarletteHTTPException, SyncdError, Exception):
        app.add_exception_handler(kind, on_error)
