"""records list, timeline."""

from __future__ import annotations

import click
from rich.table import Table

from syncd.cli.app import App, json_option, parse_day, pass_app, print_json
from syncd.domain.addresses import is_internal, normalize_address
from syncd.errors import UserError
from syncd.store.directory import find_customer
from syncd.store.queries import list_records


@click.group()
def records() -> None:
    """Communication records (emails, meetings)."""


@records.command("list")
@click.option(
    "--customer", "customer_ref", metavar="NAME|ID", help="Only records linked to this customer."
)
@click.option("--contact", "contact", metavar="EMAIL", help="Only records with this participant.")
@click.option("--since", metavar="DATE", help="Only records on or after this date (YYYY-MM-DD).")
@click.option("--kind", type=click.Choice(["email", "meeting"]), help="Only this kind.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@json_option
@pass_app
def records_list(
    app: App,
    customer_ref: str | None,
    contact: str | None,
    since: str | None,
    kind: str | None,
    limit: int | None,
    as_json: bool,
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
    if as_json:
        print_json(rows)
        return
    table = Table("id", "when", "kind", "dir", "customers", "subject")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["occurred_at"][:16].replace("T", " "),
            row["kind"],
            row["direction"][:3],
            ", ".join(c["name"] for c in row["customers"]) or "-",
            row["subject"],
        )
    app.out.print(table)


@click.command()
@click.argument("customer_ref", metavar="CUSTOMER")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@pass_app
def timeline(app: App, customer_ref: str, limit: int) -> None:
    """A customer's history, newest first, for people to read."""
    with app.engine.connect() as conn:
        customer = find_customer(conn, customer_ref)
        rows = list_records(conn, customer_id=customer.id, limit=limit)
    app.out.print(f"[bold]{customer.name}[/bold]: {len(rows)} record(s)")
    internal = app.config.internal_domains
    for row in rows:
        when = row["occurred_at"][:16].replace("T", " ")
        arrow = "<-" if row["direction"] == "inbound" else "->"
        if row["kind"] == "meeting":
            people = [p for p in row["participants"] if not is_internal(p["address"], internal)]
            arrow = f"[{row['status']}]"
        elif row["direction"] == "inbound":
            people = [p for p in row["participants"] if p["role"] == "from"]
        else:
            people = [p for p in row["participants"] if p["role"] in ("to", "cc")]
        who = ", ".join(p["name"] or p["address"] for p in people[:3])
        app.out.print(f"{when}  {row['kind']:7} {arrow} {who}", markup=False)
        app.out.print(f"    {row['subject'] or '(no subject)'}", markup=False)
        if row["snippet"]:
            app.out.print(f"    {row['snippet'][:160]}", markup=False)
