"""/events (the feed, long-polled), /status, /reports/responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from syncd import insight_reports
from syncd.api import paging
from syncd.api.context import Caller, Reader, json, page, utc
from syncd.api.feed import MAX_WAIT
from syncd.api.models import Event, Page, ResponseLine, Status
from syncd.api.routes import PREFIX
from syncd.cli.present import status as status_view
from syncd.cli.present.report import responses_view
from syncd.store import events as store
from syncd.store import status_read

router = APIRouter(prefix=PREFIX)
EventType = Literal[
    "record.created", "record.updated", "record.deleted",
    "task.created", "task.updated", "contact.forgotten",
]  # fmt: skip
assert set(EventType.__args__) == set(store.TYPES)  # type: ignore[attr-defined]


def _rep_sees(caller: Caller, event: store.StoredEvent) -> bool:
    """A rep token's share of the feed: events of its records and tasks."""
    rep = caller.rep
    assert rep is not None
    data: dict[str, Any] = event.data
    if event.type.startswith("task."):
        return bool(data.get("owner") == rep.address)
    if not event.type.startswith("record."):
        return False
    if data.get("owner") == rep.address:
        return True
    if any(p.get("address") == rep.address for p in data.get("participants") or []):
        return True
    return any(
        s.get("mailbox") in rep.mailboxes or s.get("calendar") in rep.calendars
        for s in data.get("sources") or []
    )


def _read(caller: Caller, after: int, types: list[str], limit: int) -> tuple[list[Any], int]:
    """Events after ``after`` and the id read up to (a rep token skips others' events)."""
    with caller.read() as conn:
        batch = store.read(conn, after=after, types=types, limit=limit)
    last = batch[-1].id if batch else after
    if caller.token.rep:
        batch = [event for event in batch if _rep_sees(caller, event)]
    return batch, last


@router.get("/events", response_model=Page[Event], tags=["events"],
            summary="The event feed, oldest first; long-poll with wait")  # fmt: skip
async def list_events(
    request: Request,
    caller: Reader,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    type: Annotated[list[EventType], Query()] = [],  # noqa: B006 - the contract's name
    limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.MAX_LIMIT,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait for an event.")
    ] = 0,
    cursor: Annotated[str | None, Query(max_length=40, pattern=r"^[0-9]+$")] = None,
) -> Response:
    """``next_cursor`` is the id of the last event read (``after`` for the next call); it is
    null only when nothing was read and no ``after`` was given."""
    position = after if after is not None else int(cursor) if cursor is not None else 0
    feed = request.app.state.feed
    deadline = datetime.now(UTC).timestamp() + wait
    while True:
        batch, last = await run_in_threadpool(_read, caller, position, list(type), limit)
        left = deadline - datetime.now(UTC).timestamp()
        if batch or left <= 0 or await request.is_disconnected():
            break
        position = last
        await feed.wait_past(position, min(left, 5.0))
    next_cursor = str(last) if (last or after is not None or cursor is not None) else None
    return page([store.envelope(event) for event in batch], next_cursor)


@router.get("/status", response_model=Status, tags=["status"], summary="The status --json document")
def get_status(caller: Reader) -> Response:
    with caller.read() as conn:
        doc = status_view.read(caller.api.config, status_read.Reader.of(conn), datetime.now(UTC))
    return json(doc)


@router.get("/reports/responses", response_model=Page[ResponseLine], tags=["reports"],
            summary="First-response times, per rep or per customer")  # fmt: skip
def responses(
    caller: Reader,
    since: datetime | None = None,
    by: Literal["rep", "customer"] = "rep",
) -> Response:
    with caller.read() as conn:
        stats = insight_reports.responses(
            conn, caller.api.config, since=utc(since), by=by, now=datetime.now(UTC)
        )
    view = responses_view(by)
    return page([view.as_json(line) for line in stats], None)
