"""records search: find records by their words, in any language, best first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from syncd.cli.app import App, parse_day, pass_app
from syncd.cli.output import Output, View, output_options
from syncd.cli.present.dates import minute
from syncd.cli.present.records import record_json
from syncd.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

KINDS = ("email", "meeting", "call", "visit", "note")


def _found_json(row: dict[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in row.items() if k not in ("score", "highlights")}
    out = record_json(plain, datetime.now(UTC))
    out["score"] = row["score"]
    out["highlights"] = row["highlights"]
    return out


def _show(out: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("id", "when", "kind", "customers", "subject", "found")
    for row in rows:
        table.add_row(
            str(row["id"]),
            minute(row["occurred_at"]),
            row["kind"],
            ", ".join(c["name"] for c in row["customers"]) or "-",
            row["subject"],
            "\n".join(row["highlights"]) or "-",
        )
    out.print(table, markup=False)


FOUND: View[dict[str, Any]] = View(as_json=_found_json, show=_show)


def _until(value: str | None) -> datetime | None:
    """``--until``: a day includes all of it; a time is the last instant included."""
    moment = parse_day(value)
    if moment is None or value is None:
        return None
    day_only = len(value.strip()) == 10
    return moment + (timedelta(days=1) if day_only else timedelta(microseconds=1))


@click.command("search")
@click.argument("words", metavar="QUERY", nargs=-1, required=True)
@click.option(
    "--customer", "customer_ref", metavar="NAME|ID", help="Only records linked to this customer."
)
@click.option("--contact", metavar="EMAIL", help="Only records with this participant.")
@click.option("--owner", metavar="EMAIL", help="Only records logged by this rep.")
@click.option(
    "--kind", "kinds", type=click.Choice(KINDS), multiple=True, help="Only these kinds (repeat)."
)
@click.option("--since", metavar="DATE", help="Only records on or after this date.")
@click.option("--until", metavar="DATE", help="Only records on or before this date.")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20, show_default=True)
@output_options
@pass_app
def records_search(
    app: App,
    words: tuple[str, ...],
    customer_ref: str | None,
    contact: str | None,
    owner: str | None,
    kinds: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    output: Output,
) -> None:
    """Find records by their words, best match first.

    Every word must match; "a phrase" in a row; word* as a prefix; -word excludes (after
    `--`, or inside one quoted QUERY).  Case and accents are ignored; Chinese, Japanese and
    Korean are found by any word of two characters or more.
    """
    from syncd.domain.addresses import normalize_address
    from syncd.domain.search_text import QueryError, highlights, parse_query
    from syncd.store import search_index
    from syncd.store.directory import find_customer
    from syncd.store.queries import records_by_id

    try:
        parsed = parse_query(" ".join(words))
    except QueryError as err:
        raise UserError(str(err), hint='give a word to find, e.g. "price" or "报价"') from None
    addresses: dict[str, str | None] = {}
    for name, value in (("--contact", contact), ("--owner", owner)):
        if value is not None:
            addresses[name] = normalize_address(value)
            if addresses[name] is None:
                raise UserError(f"{name} {value!r} is not an email address")
    filters = search_index.Filters(
        contact_address=addresses.get("--contact"),
        owner=addresses.get("--owner"),
        kinds=kinds,
        since=parse_day(since),
        before=_until(until),
    )
    with app.engine.connect() as conn:
        if customer_ref:
            filters = search_index.Filters(
                customer_id=find_customer(conn, customer_ref).id,
                contact_address=filters.contact_address,
                owner=filters.owner,
                kinds=filters.kinds,
                since=filters.since,
                before=filters.before,
            )
        hits = search_index.search(conn, parsed, filters, limit=limit)
        rows = {row["id"]: row for row in records_by_id(conn, [rid for rid, _ in hits])}
    found: list[dict[str, Any]] = []
    for record_id, score in hits:
        row = rows.get(record_id)
        if row is None:
            continue
        names = [f"{p['name']} <{p['address']}>" for p in row["participants"]]
        texts = [row["subject"], row.get("location") or "", row["body"] or row["snippet"] or ""]
        fragments = highlights([*texts, *names], parsed)
        found.append(dict(row, score=score, highlights=fragments))
    output.emit(found, FOUND, app.out)
