"""/customers and /contacts: the directory, a customer's activity and timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from syncd import insight_reports
from syncd.api import paging
from syncd.api.context import Admin, Reader, json, page, rep_owned
from syncd.api.models import Contact, ContactIn, Customer, CustomerIn, Page, Record, Week
from syncd.api.problems import Problem
from syncd.api.routes import PREFIX
from syncd.api.routes.records import records_page
from syncd.cli.present.contacts import contact_json
from syncd.cli.present.directory import customer_json
from syncd.cli.present.report import activity_view
from syncd.domain.insight import SORTS, arrange
from syncd.domain.periods import parse_period
from syncd.store import audit
from syncd.store.contact_list import list_contacts
from syncd.store.directory import (
    active_customer,
    clean_address,
    ensure_contact,
    ensure_customer,
    find_customer,
)
from syncd.store.errors import NotFound
from syncd.store.insight import customer_overview
from syncd.store.queries import contact_exists

router = APIRouter(prefix=PREFIX, tags=["customers"])
Sort = Literal["name", "last-contact", "emails", "meetings", "calls", "visits", "open-tasks"]
assert set(SORTS) == set(Sort.__args__)  # type: ignore[attr-defined]


def _period(value: str, field: str) -> Any:
    try:
        return parse_period(value)
    except ValueError as err:
        raise Problem(
            422, f"{field}: {err}", kind="validation",
            extra={"errors": [{"field": field, "message": str(err)}]},
        ) from None  # fmt: skip


def _sort_key(sort: str) -> Any:
    """The order ``arrange`` gives, as a key a cursor can hold (ties by name, then id)."""
    if sort == "last-contact":
        return lambda r: [
            r["last_contact_at"] is not None,
            r["last_contact_at"] or "",
            r["name"],
            r["id"],
        ]
    if sort in ("emails", "meetings", "open-tasks"):
        key = sort.replace("-", "_")
        return lambda r: [-int(r[key]), r["name"], r["id"]]
    return lambda r: [r["name"], r["id"]]


def _overview(
    caller: Any, *, window: str, owner: str | None, archived: bool | None
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rep = rep_owned(caller, owner, "query.owner") if owner else None
    with caller.read() as conn:
        return customer_overview(
            conn, now=now, window_start=now - _period(window, "query.window"), owner=rep,
            archived=archived,
        )  # fmt: skip


@router.get("/customers", response_model=Page[Customer], summary="Customers with their activity")
def list_customers(
    caller: Reader,
    window: Annotated[str, Query(max_length=20, description="36h, 90d, 12w")] = "90d",
    sort: Sort = "name",
    quiet_for: Annotated[str | None, Query(max_length=20)] = None,
    owner: Annotated[str | None, Query(max_length=320)] = None,
    archived: Annotated[Literal["false", "true", "all"], Query()] = "false",
    limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    which = {"false": False, "true": True, "all": None}[archived]
    quiet = _period(quiet_for, "query.quiet_for") if quiet_for else None
    rows = _overview(caller, window=window, owner=owner, archived=which)
    quiet_since = datetime.now(UTC) - quiet if quiet else None
    shown = [customer_json(row) for row in arrange(rows, sort_by=sort, quiet_since=quiet_since)]
    items, next_cursor = paging.page_of(shown, _sort_key(sort), limit, cursor)
    return page(items, next_cursor)


def _customer(caller: Any, ref: str, window: str = "90d") -> dict[str, Any]:
    with caller.read() as conn:
        found = find_customer(conn, ref)
    rows = _overview(caller, window=window, owner=None, archived=None)
    for row in rows:
        if row["id"] == found.id:
            return customer_json(row)
    raise NotFound("customer", ref)


@router.get("/customers/{customer}", response_model=Customer, summary="One customer")
def get_customer(
    caller: Reader,
    customer: str,
    window: Annotated[str, Query(max_length=20)] = "90d",
) -> Response:
    return json(_customer(caller, customer, window))


@router.get("/customers/{customer}/timeline", response_model=Page[Record],
            summary="A customer's records, newest first")  # fmt: skip
def timeline(
    caller: Reader,
    customer: str,
    limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    return records_page(caller, customer, None, None, [], None, None, None, limit, cursor)


@router.get("/customers/{customer}/activity", response_model=Page[Week],
            summary="Emails in and out and meetings per week, oldest first")  # fmt: skip
def activity(
    caller: Reader,
    customer: str,
    weeks: Annotated[int, Query(ge=1, le=insight_reports.MAX_WEEKS)] = 26,
) -> Response:
    with caller.read() as conn:
        found = find_customer(conn, customer)
        rows, label = insight_reports.activity(
            conn, caller.api.config, found.id, weeks=weeks, now=datetime.now(UTC)
        )
    view = activity_view(found.name, label)
    return page([view.as_json(week) for week in rows], None)


@router.post("/customers", response_model=Customer, status_code=201,
             responses={200: {"model": Customer, "description": "Existed already"}},
             summary="Add a customer, or domains to one")  # fmt: skip
def create_customer(caller: Admin, body: CustomerIn) -> Response:
    with caller.write() as conn:
        existed = _exists(conn, body.name)
        customer_id, changed = ensure_customer(conn, body.name, body.domains)
        if changed:
            audit.record(conn, "customer-add", f"customer {body.name.strip()}",
                         customer_id=customer_id, domains=body.domains)  # fmt: skip
    return json(_customer(caller, str(customer_id)), 200 if existed else 201)


def _exists(conn: Any, name: str) -> bool:
    try:
        find_customer(conn, name.strip())
    except NotFound:
        return False
    return True


@router.get("/contacts", response_model=Page[Contact], tags=["contacts"], summary="Contacts")
def contacts(
    caller: Reader,
    customer: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    with caller.read() as conn:
        customer_id = find_customer(conn, customer).id if customer else None
        rows = list_contacts(conn, customer_id=customer_id)
    items, next_cursor = paging.page_of(
        [contact_json(row) for row in rows], lambda c: [c["id"]], limit, cursor
    )
    return page(items, next_cursor)


@router.post("/contacts", response_model=Contact, status_code=201, tags=["contacts"],
             responses={200: {"model": Contact, "description": "Known already"}},
             summary="Add a contact, or move an address to another customer")  # fmt: skip
def create_contact(caller: Admin, body: ContactIn) -> Response:

    with caller.write() as conn:
        customer = active_customer(conn, body.customer)
        known = contact_exists(conn, clean_address(body.email))
        contact_id, changed = ensure_contact(
            conn, body.email, customer_id=customer.id, name=body.name
        )
        if changed:
            audit.record(conn, "contact-add", f"contact {clean_address(body.email)}",
                         contact_id=contact_id, customer_id=customer.id)  # fmt: skip
        shown = contact_json(list_contacts(conn, ids=[contact_id])[0])
    return json(shown, 200 if known else 201)
