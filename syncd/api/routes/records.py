"""/records: list (filters, search), one, explain; log, edit, delete calls, visits, notes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import Connection, select
from starlette.responses import Response

from syncd.api import logged, paging
from syncd.api.context import Caller, Reader, Writer, address, json, page, rep_owned, utc
from syncd.api.models import Explanation, Id, Kind, Page, Record, RecordIn, RecordPatch
from syncd.api.problems import Problem
from syncd.api.routes import PREFIX
from syncd.cli.present import explain as explain_view
from syncd.domain.addresses import normalize_address
from syncd.domain.payloads import ISO_TIMES, record_fields, record_json
from syncd.schema.tables import records
from syncd.store import record_pages
from syncd.store.directory import find_customer, load_directory
from syncd.store.errors import NotFound
from syncd.store.explain import explain

router = APIRouter(prefix=PREFIX, tags=["records"])
CAPTURED = ("email", "meeting")


def _record(conn: Connection, caller: Caller, record_id: Id) -> dict[str, Any]:
    """One record as ``records list --json`` shows it; 404 if none, or not the rep's."""
    found = record_pages.page(conn, ids=[record_id], owners=caller.owners, limit=1)
    if not found:
        raise NotFound("record", record_id)
    return record_json(found[0])


@router.get("/records", response_model=Page[Record], summary="Records, newest first")
def list_records(
    caller: Reader,
    customer: Annotated[str | None, Query(max_length=300, description="Name or id.")] = None,
    contact: Annotated[str | None, Query(max_length=320)] = None,
    owner: Annotated[str | None, Query(max_length=320, description="A rep's address.")] = None,
    kind: Annotated[list[Kind], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    since: datetime | None = None,
    until: datetime | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    return records_page(caller, customer, contact, owner, kind, since, until, q, limit, cursor)


def records_page(
    caller: Caller,
    customer: str | None,
    contact: str | None,
    owner: str | None,
    kind: list[Kind],
    since: datetime | None,
    until: datetime | None,
    q: str | None,
    limit: int,
    cursor: str | None,
) -> Response:
    """``GET /records`` (and a customer's timeline), in the calling thread."""
    owners = list(caller.owners)
    if owner is not None:
        owners.append(rep_owned(caller, owner, "query.owner"))
    contact_address = address(contact, "query.contact") if contact is not None else None
    # A keyset page is one statement (two when a customer is named, not numbered).
    with caller.read() if q is not None else caller.read_once() as conn:
        if q is not None:
            customer_id = find_customer(conn, customer).id if customer else None
            return _search(conn, caller, q, customer_id, contact_address, owner, owners, kind,
                           utc(since), utc(until), limit, cursor)  # fmt: skip
        after = None
        if cursor is not None:
            when, rid = paging.decode(cursor, 2)
            try:
                after = (datetime.fromisoformat(str(when)), int(rid))
            except (TypeError, ValueError):
                raise Problem(
                    422, "cursor: not a cursor from this API", kind="validation"
                ) from None

        def read(customer_id: int | None) -> list[dict[str, Any]]:
            return record_pages.page(
                conn,
                customer_id=customer_id,
                contact_address=contact_address,
                owners=owners,
                kinds=kind,
                since=utc(since),
                until=utc(until),
                after=after,
                limit=limit + 1,
            )

        # A customer given by an id that has records is that customer (an id comes before
        # a name): the page itself shows it exists.  Otherwise look it up (a name, an id
        # with no record on this page, or none: 404).
        guess = int(customer) if customer and customer.isdigit() and len(customer) < 19 else None
        rows = read(guess) if guess is not None or not customer else []
        if customer and not rows:
            found = find_customer(conn, customer).id
            rows = read(found) if found != guess else rows
    now = datetime.now(UTC)
    shown = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = shown[-1]
        next_cursor = paging.encode([last["occurred_at"].isoformat(), last["id"]])
    return page([record_fields(row, now) for row in shown], next_cursor, option=ISO_TIMES)


def _search(
    conn: Connection,
    caller: Caller,
    q: str,
    customer_id: int | None,
    contact: str | None,
    owner: str | None,
    owners: list[Any],
    kinds: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> Response:
    """The search of ``records search``, ranked; paged over the ranking.  Only the page
    shown is read whole and highlighted."""
    query = logged.parse(q)
    hits = logged.search(
        conn, caller.api.config, query, customer_id=customer_id, contact=contact,
        owner=address(owner, "query.owner") if owner else None, kinds=kinds,
        since=since, until=until, limit=paging.MAX_LIMIT,
    )  # fmt: skip
    # The ranking's own order (score, then newest, then id) as the cursor's key; a rep
    # token's hits narrowed to the records it sees.
    when = record_pages.occurred(conn, [rid for rid, _ in hits], owners)
    ranked = [(rid, score, when[rid]) for rid, score in hits if rid in when]
    shown, next_cursor = paging.page_of(
        ranked, lambda hit: [-hit[1], -hit[2].timestamp(), -hit[0]], limit, cursor
    )
    rows = {r["id"]: r for r in record_pages.page(
        conn, ids=[rid for rid, _, _ in shown], limit=len(shown) or 1
    )}  # fmt: skip
    now = datetime.now(UTC)
    items = [
        {
            **record_json(rows[rid], now),
            "score": score,
            "highlights": logged.marks(rows[rid], query),
        }
        for rid, score, _ in shown
        if rid in rows
    ]
    return page(items, next_cursor)


@router.get("/records/{record_id}", response_model=Record, summary="One record")
def get_record(caller: Reader, record_id: Id) -> Response:
    with caller.read() as conn:
        return json(_record(conn, caller, record_id))


@router.get("/records/{record_id}/explain", response_model=Explanation,
            summary="Why each participant is or is not linked")  # fmt: skip
def explain_record(caller: Reader, record_id: Id) -> Response:
    with caller.read() as conn:
        _record(conn, caller, record_id)
        found = explain(conn, record_id, load_directory(conn, caller.api.config.capture))
    return json(explain_view.explain_json(found))


def _logged_only(conn: Connection, caller: Caller, record_id: Id) -> None:
    kind = conn.scalar(select(records.c.kind).where(records.c.id == record_id))
    if kind is None:
        raise NotFound("record", record_id)
    _record(conn, caller, record_id)
    if kind in CAPTURED:
        raise Problem(
            409,
            f"record {record_id} is a captured {kind}: it belongs to its mailbox or calendar; "
            "only logged calls, visits and notes change here",
            kind="captured-record",
        )


def _own(caller: Caller, owner: str | None) -> None:
    """A rep token logs and edits records as its rep only (an owner that is no address at
    all is left to the validation, which lists it with every other bad field)."""
    if not caller.token.rep or owner is None:
        return
    found = normalize_address(owner)
    if found is not None and found != caller.token.rep:
        raise Problem(403, f"this token logs records of {caller.token.rep} only")


@router.post("/records", response_model=Record, status_code=201,
             responses={200: {"model": Record, "description": "Logged before (same external_id)"}},
             summary="Log a call, visit or note")  # fmt: skip
def create_record(caller: Writer, body: RecordIn) -> Response:
    _own(caller, body.owner)
    fields = body.model_dump()
    fields["occurred_at"] = utc(body.occurred_at)
    fields["origin"] = "api"
    with caller.write() as conn:
        record_id, created = logged.create(conn, caller.api.config, fields)
        shown = _record(conn, caller, record_id)
    return json(shown, 201 if created else 200)


@router.patch("/records/{record_id}", response_model=Record, summary="Edit a logged record")
def patch_record(caller: Writer, record_id: Id, body: RecordPatch) -> Response:
    _own(caller, body.owner)
    fields = body.model_dump(exclude_unset=True)
    if "occurred_at" in fields:
        fields["occurred_at"] = utc(body.occurred_at)
    with caller.write() as conn:
        _logged_only(conn, caller, record_id)
        logged.edit(conn, caller.api.config, record_id, fields)
        shown = _record(conn, caller, record_id)
    return json(shown)


@router.delete("/records/{record_id}", status_code=204, summary="Delete a logged record")
def delete_record(caller: Writer, record_id: Id) -> Response:
    with caller.write() as conn:
        _logged_only(conn, caller, record_id)
        logged.delete(conn, caller.api.config, record_id)
    return Response(status_code=204)
