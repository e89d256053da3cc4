"""records list, explain, link, unlink; timeline."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from syncd.cli.app import App, json_option, parse_day, pass_app, print_json
from syncd.cli.cmd_logged import records_add, records_delete, records_edit, records_import
from syncd.cli.cmd_record_search import records_search
from syncd.cli.output import Output, output_options
from syncd.cli.present import explain as explain_view
from syncd.cli.present.dates import minute
from syncd.cli.present.records import RECORDS, logged_arrow, logged_detail, record_json
from syncd.domain.addresses import is_internal, normalize_address
from syncd.domain.logged import KINDS
from syncd.errors import UserError
from syncd.store import reconcile as rec
from syncd.store.directory import find_customer, load_directory
from syncd.store.explain import explain
from syncd.store.queries import list_records


@click.group()
def records() -> None:
    """Communication records: captured emails and meetings, logged calls, visits and notes."""


records.add_command(records_add)
records.add_command(records_edit)
records.add_command(records_delete)
records.add_command(records_import)
records.add_command(records_search)


@records.command("list")
@click.option(
    "--customer", "customer_ref", metavar="NAME|ID", help="Only records linked to this customer."
)
@click.option("--contact", "contact", metavar="EMAIL", help="Only records with this participant.")
@click.option("--since", metavar="DATE", help="Only records on or after this date (YYYY-MM-DD).")
@click.option(
    "--kind",
    type=click.Choice(["email", "meeting", *KINDS]),
    help="Only this kind.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@output_options
@pass_app
def records_list(
    app: App,
    customer_ref: str | None,
    contact: str | None,
    since: str | None,
    kind: str | None,
    limit: int | None,
    output: Output,
) -> None:
    """List records, newest first."""
    address = None
    if contact is not None:
        address = normalize_address(contact)
        if address is None:
            raise UserError(f"{contact!r} is not an email address")
    with app.engine.connect() as conn:
        customer_id = find_customer(conn, customer_ref).id if customer_ref else None
        rows = list_records(
            conn,
            customer_id=customer_id,
            contact_address=address,
            since=parse_day(since),
            kind=kind,
            limit=limit,
        )
    output.emit(rows, RECORDS, app.out)


@click.command()
@click.argument("customer_ref", metavar="CUSTOMER")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@pass_app
def timeline(app: App, customer_ref: str, limit: int) -> None:
    """A customer's history, newest first, for people to read."""
    with app.engine.connect() as conn:
        customer = find_customer(conn, customer_ref)
        stored = list_records(conn, customer_id=customer.id, limit=limit)
    now = datetime.now(UTC)
    rows = [record_json(row, now) for row in stored]
    app.out.print(f"[bold]{customer.name}[/bold]: {len(rows)} record(s)")
    internal = app.config.internal_domains
    for row in rows:
        when = minute(row["occurred_at"])
        arrow = "<-" if row["direction"] == "inbound" else "->"
        if row["kind"] == "meeting":
            people = [p for p in row["participants"] if not is_internal(p["address"], internal)]
            arrow = f"[{row['status']}]"
        elif row["kind"] in KINDS:
            people = [p for p in row["participants"] if p["role"] == "contact"]
            arrow = logged_arrow(row)
        elif row["direction"] == "inbound":
            people = [p for p in row["participants"] if p["role"] == "from"]
        else:
            people = [p for p in row["participants"] if p["role"] in ("to", "cc")]
        who = ", ".join(p["name"] or p["address"] for p in people[:3])
        if row["kind"] in KINDS:
            who += logged_detail(row)
        app.out.print(f"{when}  {row['kind']:7} {arrow} {who}", markup=False)
        app.out.print(f"    {row['subject'] or '(no subject)'}", markup=False)
        text = row["snippet"] or (row["body"] if row["kind"] in KINDS else None)
        if text:
            app.out.print(f"    {' '.join(text.split())[:160]}", markup=False)


@records.command("explain")
@click.argument("record_id", type=int, metavar="ID")
@json_option
@pass_app
def records_explain(app: App, record_id: int, as_json: bool) -> None:
    """Why each participant of a record is or is not linked, and which rule decided."""
    with app.engine.connect() as conn:
        found = explain(conn, record_id, load_directory(conn, app.config.capture))
    if as_json:
        print_json(explain_view.explain_json(found))
    else:
        explain_view.show(found)


@records.command("link")
@click.argument("record_id", type=int, metavar="ID")
@click.option("--customer", "customer_ref", required=True, metavar="NAME|ID")
@pass_app
def records_link(app: App, record_id: int, customer_ref: str) -> None:
    """Link a record to a customer by hand (survives every re-sync)."""
    with app.engine.begin() as conn:
        customer = find_customer(conn, customer_ref)
        changed = rec.set_link(conn, record_id, customer.id, linked=True)
    click.echo(
        f"record {record_id} -> {customer.name}: {'linked' if changed else 'already linked'}"
    )


@records.command("unlink")
@click.argument("record_id", type=int, metavar="ID")
@click.option("--customer", "customer_ref", required=True, metavar="NAME|ID")
@pass_app
def records_unlink(app: App, record_id: int, customer_ref: str) -> None:
    """Remove a record's link to a customer; no rule will add it back."""
    with app.engine.begin() as conn:
        customer = find_customer(conn, customer_ref)
        changed = rec.set_link(conn, record_id, customer.id, linked=False)
    click.echo(
        f"record {record_id} -x- {customer.name}: {'unlinked' if changed else 'was not linked'}"
    )
