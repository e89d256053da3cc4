"""Records a page at a time, newest first, for the HTTP API: the filters of ``records list``
and more (several kinds, until, a rep's records) with a keyset position, so that a page
starts right after the last one given however many records were captured meanwhile."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import Label

from syncd.schema.tables import (
    customers,
    meeting_sources,
    participants,
    provenance,
    record_customers,
    records,
)
from syncd.store.insight import Owned
from syncd.store.queries import _COLUMNS, RecordRow, record_dict
from syncd.store.sql import chunks


def of_rep(owner: Owned) -> ColumnElement[bool]:
    """A rep's records: they logged it, took part in it, or it came from their mailbox or
    calendar (a Bcc copy names nobody but reached their mailbox)."""
    parts: list[ColumnElement[bool]] = [
        records.c.owner == owner.address,
        records.c.id.in_(
            select(participants.c.record_id).where(participants.c.address == owner.address)
        ),
    ]
    if owner.mailboxes:
        parts.append(
            records.c.id.in_(
                select(provenance.c.record_id).where(
                    provenance.c.mailbox.in_(sorted(owner.mailboxes))
                )
            )
        )
    if owner.calendars:
        parts.append(
            records.c.id.in_(
                select(meeting_sources.c.record_id).where(
                    meeting_sources.c.calendar.in_(sorted(owner.calendars))
                )
            )
        )
    return or_(*parts)


def page(
    conn: Connection,
    *,
    customer_id: int | None = None,
    contact_address: str | None = None,
    owners: Sequence[Owned] = (),
    kinds: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    ids: Sequence[int] | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Up to ``limit`` records newest first (then by id), older than ``after`` (the
    (occurred_at, id) of the last one given).  Each of ``owners`` must see the record (the
    ``owner`` filter and a rep token's own restriction).

    One statement: each record's customers, participants and sources come with it as JSON
    arrays the database aggregates (json_group_array on SQLite, json_agg on PostgreSQL),
    not as four more queries a page."""
    params: dict[str, Any] = {
        "customer_id": customer_id,
        "contact_address": contact_address,
        "kinds": sorted(set(kinds)) if kinds else None,
        "since": since,
        "until": until,
        "ids": list(ids) if ids is not None else None,
        "after_at": after[0] if after is not None else None,
        "after_id": after[1] if after is not None else None,
    }
    params = {name: value for name, value in params.items() if value is not None}
    shape_of = frozenset(params)
    params["limit"] = limit
    # Without owners the statement depends only on which filters are set: built once,
    # so that neither building it nor its cache key costs a request anything.
    if owners:
        statement = _statement(conn.dialect.name, shape_of, tuple(owners))
    else:
        statement = _cached_statement(conn.dialect.name, shape_of)
    return _shaped(conn.execute(statement, params).all())


@cache
def _cached_statement(dialect: str, filters: frozenset[str]) -> Select[Any]:
    return _statement(dialect, filters, ())


def _statement(dialect: str, filters: frozenset[str], owners: Sequence[Owned]) -> Select[Any]:
    """The page's statement with a parameter for each of ``filters``, ``limit`` too.

    A customer's page is one pass over the customer's links newest first, from their
    index (``record_customers`` carries each record's occurred_at): no sort, and it stops
    at ``limit``, so each record's own row and what it aggregates are read for the page
    only, however many records the customer has."""
    customer = "customer_id" in filters
    if customer:
        # Aliased: the correlated subquery of a record's customers reads the table too.
        link = record_customers.alias("page_link")
        when, rid = link.c.occurred_at, link.c.record_id
        query = (
            select(*_COLUMNS, *_nested(dialect))
            .join_from(link, records, records.c.id == rid)
            .where(link.c.customer_id == bindparam("customer_id"))
        )
    else:
        when, rid = records.c.occurred_at, records.c.id
        query = select(rid, when)
    # The same order for ties either way: the record's id after its time.
    query = query.order_by(when.desc(), rid.desc())
    if "contact_address" in filters:
        query = query.where(
            rid.in_(
                select(participants.c.record_id).where(
                    participants.c.address == bindparam("contact_address")
                )
            )
        )
    for owner in owners:
        query = query.where(of_rep(owner))
    if "kinds" in filters:
        query = query.where(records.c.kind.in_(bindparam("kinds", expanding=True)))
    if "since" in filters:
        query = query.where(when >= bindparam("since", type_=when.type))
    if "until" in filters:
        query = query.where(when < bindparam("until", type_=when.type))
    if "ids" in filters:
        query = query.where(rid.in_(bindparam("ids", expanding=True)))
    if "after_at" in filters:
        query = query.where(
            tuple_(when, rid)
            < tuple_(bindparam("after_at", type_=when.type), bindparam("after_id", type_=Integer))
        )
    if customer:
        return query.limit(bindparam("limit", type_=Integer))
    # The page's ids first, then its rows and what each aggregates: the subqueries run
    # for the page only, not for every record the filters match before the sort.
    chosen = query.limit(bindparam("limit", type_=Integer)).subquery("page")
    return (
        select(*_COLUMNS, *_nested(dialect))
        .join_from(records, chosen, chosen.c.id == records.c.id)
        .order_by(chosen.c.occurred_at.desc(), chosen.c.id.desc())
    )


@cache
def _nested(dialect: str) -> tuple[Label[Any], ...]:
    """A record's customers, participants, calendar and mail sources, each as one JSON
    array of arrays (correlated subqueries over the same indexes the separate queries
    use).  Their order is set in Python (``_shaped``), not by each database's collation."""
    if dialect == "postgresql":

        def agg(*values: Any) -> Any:
            rows = cast(func.json_agg(func.json_build_array(*values)), Text)
            return func.coalesce(rows, literal_column("'[]'"))
    else:

        def agg(*values: Any) -> Any:
            return func.json_group_array(func.json_array(*values))

    def nested(name: str, *values: Any, source: Any, record_id: Any) -> Label[Any]:
        return (
            select(agg(*values))
            .select_from(source)
            .where(record_id == records.c.id)
            .scalar_subquery()
            .label(name)
        )

    return (
        nested(
            "linked",
            customers.c.id, customers.c.name, record_customers.c.link,
            source=record_customers.join(customers, customers.c.id == record_customers.c.customer_id),
            record_id=record_customers.c.record_id,
        ),
        nested(
            "people",
            participants.c.id, participants.c.address, participants.c.name, participants.c.role,
            participants.c.contact_id,
            source=participants, record_id=participants.c.record_id,
        ),
        nested(
            "calendars",
            meeting_sources.c.id, meeting_sources.c.calendar, meeting_sources.c.url,
            meeting_sources.c.href,
            source=meeting_sources, record_id=meeting_sources.c.record_id,
        ),
        nested(
            "mailboxes",
            provenance.c.id, provenance.c.mailbox, provenance.c.folder, provenance.c.uid,
            source=provenance, record_id=provenance.c.record_id,
        ),
    )  # fmt: skip


def _shaped(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of ``_COLUMNS`` and ``_nested`` in the one shape of a record (queries.shape):
    participants and calendar sources in the order they were written, customers by name,
    mail sources by mailbox and folder (then as written).  Each row carries its own lists,
    so each record is built as it comes, with no regrouping by id."""
    width = len(_COLUMNS)
    out: list[dict[str, Any]] = []
    for row in rows:
        # Plain tuples: a named tuple's fields cost far less to read than a Row's.
        record = RecordRow._make(row[:width])
        linked, people, calendars, mailboxes = row[width:]
        # A list of one or none (most are) is in order already: no sort to call.
        links = orjson.loads(linked)
        if len(links) > 1:
            links.sort(key=_name)
        persons = orjson.loads(people)
        if len(persons) > 1:
            persons.sort()
        sources = [
            {"calendar": calendar, "url": url, "href": href}
            for _, calendar, url, href in (
                sorted(orjson.loads(calendars)) if calendars != _EMPTY else ()
            )
        ]
        if mailboxes != _EMPTY:
            places = orjson.loads(mailboxes)
            if len(places) > 1:
                places.sort()
                places.sort(key=_place)
            sources += [
                {"mailbox": mailbox, "folder": folder, "uid": uid}
                for _, mailbox, folder, uid in places
            ]
        out.append(
            record_dict(
                record,
                [{"id": cid, "name": name, "link": link} for cid, name, link in links],
                [
                    {"address": address, "name": name, "role": role, "contact_id": contact}
                    for _, address, name, role, contact in persons
                ],
                sources,
            )
        )
    return out


_EMPTY = "[]"  # an empty aggregate, as both databases write it


def _name(link: list[Any]) -> Any:
    return link[1]


def _place(source: list[Any]) -> Any:
    return source[1], source[2]


def occurred(
    conn: Connection, record_ids: Sequence[int], owners: Sequence[Owned] = ()
) -> dict[int, datetime]:
    """When each of these records happened, for those every one of ``owners`` sees (a
    search's hits, narrowed to a rep token's records)."""
    out: dict[int, datetime] = {}
    for part in chunks(sorted(set(record_ids))):
        query = select(records.c.id, records.c.occurred_at).where(records.c.id.in_(part))
        for owner in owners:
            query = query.where(of_rep(owner))
        out.update((int(rid), when) for rid, when in conn.execute(query))
    return out


def visible(conn: Connection, record_id: int, owner: Owned) -> bool:
    """Whether ``owner`` sees this record."""
    query = select(records.c.id).where(records.c.id == record_id, of_rep(owner))
    return conn.execute(query).first() is not None
