"""Where the API meets logged records (calls, visits, notes) and search.

One adapter per operation over the stores the CLI uses (syncd/store/logged_records.py,
syncd/store/search_index.py), so the API logs, edits, deletes and searches exactly as
``records add``, ``edit``, ``delete`` and ``search`` do.  Each takes the open transaction
(whose audit rows already name the token, ``Caller.write``), the config and the request's
fields.  What cannot be stored is a 422 listing every bad field: the domain's and the
store's problems are sentences, each mapped here onto the field it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from syncd.api.problems import Problem
from syncd.config import Config
from syncd.domain.bounds import clean_text
from syncd.domain.logged import (
    KEY_PREFIX,
    TAKES_DURATION,
    TAKES_LOCATION,
    TAKES_OUTCOME,
    BadDraft,
    LoggedDraft,
    RawFields,
    draft_from,
)
from syncd.domain.search_text import Query, QueryError, highlights, parse_query
from syncd.errors import UserError
from syncd.schema.tables import records
from syncd.store import logged_records as store
from syncd.store import search_index
from syncd.store.audit import current_actor
from syncd.store.directory import active_customer, load_directory
from syncd.store.errors import KeyTaken

# The field a problem sentence is about, by how the sentence starts (syncd/domain/logged.py
# and the store's people check word them); first match wins.
_FIELDS = (
    ("kind ", "kind"),
    ("owner ", "owner"),
    ("the subject", "subject"),
    ("contact ", "contacts"),
    ("more than ", "contacts"),
    ("give a customer or a contact", "customer"),
    ("no customer", "customer"),
    ("customer ", "customer"),
    ("direction ", "direction"),
    ("a note has no direction", "direction"),
    ("outcome ", "outcome"),
    ("the location", "location"),
    ("the body", "body"),
    ("the external id", "external_id"),
    ("record ", "external_id"),  # KeyTaken on an edit: another record has this id
)


def field_of(problem: str, *, duration_field: str = "duration") -> str:
    """``body.<field>`` for a problem sentence of a draft or of the store."""
    text = problem.strip()
    if text.startswith("a ") and text.endswith(" has no duration"):
        return f"body.{duration_field}"
    if text.startswith("a ") and text.endswith(" has no outcome"):
        return "body.outcome"
    if text.startswith("a ") and text.endswith(" has no location"):
        return "body.location"
    for start, name in _FIELDS:
        if text.startswith(start):
            return f"body.{name}"
    # What is left is parse_seconds's: a duration that is not one, or too long.
    return f"body.{duration_field}"


def invalid(problems: Iterable[tuple[str, str]]) -> Problem:
    """422 listing every (field, message)."""
    errors = [{"field": f, "message": m} for f, m in problems]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(422, detail, kind="validation", extra={"errors": errors})


def _duration(fields: dict[str, Any]) -> tuple[str | None, str]:
    """The duration as ``records add --duration`` takes it, and the field it came from:
    ``duration`` ("15m", "1h", "90s" or seconds) or ``duration_seconds`` (a number)."""
    if fields.get("duration") is not None and fields.get("duration_seconds") is not None:
        raise invalid([("body.duration", "give duration or duration_seconds, not both")])
    if fields.get("duration_seconds") is not None:
        return str(fields["duration_seconds"]), "duration_seconds"
    if fields.get("duration") is not None:
        return str(fields["duration"]), "duration"
    return None, "duration"


def _customer_ids(
    conn: Connection, ref: str | None, problems: list[tuple[str, str]]
) -> tuple[int, ...]:
    if not ref:
        return ()
    try:
        return (active_customer(conn, ref).id,)
    except UserError as err:  # NotFound is one: an unknown customer is a bad field here
        problems.append(("body.customer", err.message))
        return ()


def _draft(
    conn: Connection,
    config: Config,
    raw: RawFields,
    customer_ids: tuple[int, ...],
    origin: str,
    problems: list[tuple[str, str]],
    duration_field: str,
) -> LoggedDraft:
    """The draft, checked by the domain and against the database (customers, contacts);
    422 with every problem at once."""
    draft: LoggedDraft | None = None
    try:
        draft = draft_from(raw, customer_ids=customer_ids, origin=origin)
    except BadDraft as err:
        problems.extend((field_of(p, duration_field=duration_field), p) for p in err.problems)
    if draft is not None:
        found = store.check(
            conn,
            draft,
            directory=load_directory(conn, config.capture),
            internal_domains=config.internal_domains,
        )
        problems.extend((field_of(p), p) for p in found)
    if problems or draft is None:
        raise invalid(problems)
    return draft


def create(conn: Connection, config: Config, fields: dict[str, Any]) -> tuple[int, bool]:
    """Log a call, visit or note (``records add``'s fields, ``origin="api"``): the record's
    id and True if it is new, False if its ``external_id`` was logged before."""
    problems: list[tuple[str, str]] = []
    duration, duration_field = _duration(fields)
    customer_ids = _customer_ids(conn, fields.get("customer"), problems)
    raw = RawFields(
        kind=fields["kind"], owner=fields["owner"], subject=fields["subject"],
        occurred_at=fields.get("occurred_at") or datetime.now(UTC),
        contacts=fields.get("contacts") or (), direction=fields.get("direction"),
        body=fields.get("body"), duration=duration, outcome=fields.get("outcome"),
        location=fields.get("location"), external_id=fields.get("external_id"),
        has_customer=bool(fields.get("customer")),
    )  # fmt: skip
    if raw.external_id is not None:
        # Known already: the same record again, whatever else this body says (a retry).
        known = _holding(conn, raw.external_id)
        if known is not None:
            return known, False
    draft = _draft(conn, config, raw, customer_ids, fields.get("origin", "api"), problems,
                   duration_field)  # fmt: skip
    try:
        # A savepoint: a concurrent request that logged the same external id first makes
        # this insert fail on the key; that record is then the answer.
        with conn.begin_nested():
            record_id = store.add(
                conn, draft, actor=current_actor(),
                directory=load_directory(conn, config.capture),
                internal_domains=config.internal_domains,
            )  # fmt: skip
    except KeyTaken as err:
        return err.record_id, False
    except IntegrityError:
        known = _holding(conn, draft.external_id) if draft.external_id else None
        if known is None:
            raise
        return known, False
    return record_id, True


def _holding(conn: Connection, external_id: str) -> int | None:
    """The record an external id names (its key), if any."""
    key = KEY_PREFIX + clean_text(external_id.strip())  # as draft_from and record_key make it
    found = conn.scalar(select(records.c.id).where(records.c.key == key))
    return int(found) if found is not None else None


def edit(conn: Connection, config: Config, record_id: int, fields: dict[str, Any]) -> list[str]:
    """``records edit``: only the given fields change (null clears an optional one); the
    names of the fields that changed."""
    before = store.draft_of(conn, record_id)
    problems: list[tuple[str, str]] = []
    for name in ("kind", "owner", "subject", "occurred_at"):
        if name in fields and fields[name] is None:
            problems.append((f"body.{name}", f"{name} cannot be cleared"))
    kind = fields.get("kind") or before.kind
    duration, duration_field = _duration(fields)
    clears_duration = "duration" in fields or "duration_seconds" in fields

    def kept(given: str | None, cleared: bool, value: Any, takes: Sequence[str]) -> Any:
        """The value given; else the stored one while the new kind still takes it."""
        if given is not None or cleared:
            return given
        return None if value is None or kind not in takes else str(value)

    stored_direction = {"inbound": "in", "outbound": "out"}.get(before.direction)
    if "customer" in fields:
        customer_ids = _customer_ids(conn, fields["customer"], problems)
    else:
        customer_ids = before.customer_ids
    contacts = (fields["contacts"] or ()) if "contacts" in fields else before.contacts
    raw = RawFields(
        kind=kind,
        owner=fields.get("owner") or before.owner,
        subject=fields["subject"] if fields.get("subject") is not None else before.subject,
        occurred_at=fields.get("occurred_at") or before.occurred_at,
        contacts=contacts,
        direction=kept(fields.get("direction"), "direction" in fields,
                       stored_direction, TAKES_DURATION),
        body=fields.get("body", before.body),
        duration=kept(duration, clears_duration, before.duration_seconds,
                      TAKES_DURATION),
        outcome=kept(fields.get("outcome"), "outcome" in fields, before.outcome,
                     TAKES_OUTCOME),
        location=kept(fields.get("location"), "location" in fields,
                      before.location, TAKES_LOCATION),
        external_id=fields.get("external_id", before.external_id),
        has_customer=bool(customer_ids),
    )  # fmt: skip
    draft = _draft(conn, config, raw, customer_ids, before.origin, problems, duration_field)
    try:
        return store.edit(
            conn, record_id, draft, actor=current_actor(),
            directory=load_directory(conn, config.capture),
            internal_domains=config.internal_domains,
        )  # fmt: skip
    except KeyTaken as err:
        raise Problem(
            409, str(err.message), kind="external-id-taken",
            extra={"errors": [{"field": "body.external_id", "message": err.message}]},
        ) from None  # fmt: skip


def delete(conn: Connection, config: Config, record_id: int) -> None:
    """``records delete``."""
    store.delete_record(conn, record_id, actor=current_actor())


def parse(q: str) -> Query:
    """The query ``records search`` would run; 422 for one that asks nothing."""
    try:
        return parse_query(q)
    except QueryError as err:
        raise invalid([("query.q", str(err))]) from None


def search(
    conn: Connection,
    config: Config,
    query: Query,
    *,
    customer_id: int | None,
    contact: str | None,
    owner: str | None,
    kinds: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[tuple[int, float]]:
    """``records search``: (record id, score) by rank, best first, with its filters (the
    owner: records logged by that rep; ``until`` excluded, as the list's)."""
    filters = search_index.Filters(
        customer_id=customer_id,
        contact_address=contact,
        owner=owner,
        kinds=tuple(kinds),
        since=since,
        before=until,
    )
    # The API reads on connections that never write: a term's count may be reused.
    return search_index.search(conn, query, filters, limit=limit, reader=True)


def marks(row: dict[str, Any], query: Query) -> list[str]:
    """The highlights ``records search`` shows for a record it found."""
    names = [f"{p['name']} <{p['address']}>" for p in row["participants"]]
    texts = [row["subject"], row.get("location") or "", row["body"] or row["snippet"] or ""]
    return highlights([*texts, *names], query)
