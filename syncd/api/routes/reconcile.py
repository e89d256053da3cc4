"""/reconcile: the queue of unknown addresses, and assigning, creating or ignoring them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from syncd.api import paging
from syncd.api.context import Admin, Reader, json, page
from syncd.api.models import AssignIn, CreateCustomerIn, Done, IgnoreIn, Page, QueueEntry
from syncd.api.routes import PREFIX
from syncd.cli.present.reconcile import queue_json
from syncd.store import reconcile as rec
from syncd.store.directory import active_customer, load_directory

router = APIRouter(prefix=PREFIX, tags=["reconcile"])


@router.get("/reconcile", response_model=Page[QueueEntry],
            summary="Unknown addresses, most seen first, with a suggested customer")  # fmt: skip
def queue(
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    with caller.read() as conn:
        entries = rec.queue(conn, load_directory(conn, caller.api.config.capture))
    # Most seen first, then by address: the key a cursor holds.
    items, next_cursor = paging.page_of(
        [queue_json(entry) for entry in entries],
        lambda e: [-int(e["count"]), str(e["address"])],
        limit,
        cursor,
    )
    return page(items, next_cursor)


@router.post("/reconcile/assign", response_model=Done,
             summary="Make an address a contact of a customer; link its records")  # fmt: skip
def assign(caller: Admin, body: AssignIn) -> Response:
    plus = caller.api.config.capture.plus_addressing
    with caller.write() as conn:
        customer = active_customer(conn, body.customer)
        done = rec.assign(conn, body.address, customer.id, name=body.name, plus_addressing=plus)
    return json({"address": body.address, "customer_id": customer.id, **done})


@router.post("/reconcile/create-customer", response_model=Done,
             summary="Create a customer owning the address's domain, then assign it")  # fmt: skip
def create_customer(caller: Admin, body: CreateCustomerIn) -> Response:
    plus = caller.api.config.capture.plus_addressing
    with caller.write() as conn:
        done = rec.create_customer(conn, body.address, body.name, plus_addressing=plus)
    return json({"address": body.address, "name": body.name, **done})


@router.post("/reconcile/ignore", response_model=Done,
             summary="Exclude an address or @domain and drop its queue entries")  # fmt: skip
def ignore(caller: Admin, body: IgnoreIn) -> Response:
    plus = caller.api.config.capture.plus_addressing
    with caller.write() as conn:
        done = rec.add_exclusion(conn, body.entry, plus_addressing=plus)
    return json({"entry": body.entry, **done})
