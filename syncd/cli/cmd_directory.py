"""customers and contacts."""

from __future__ import annotations

import csv
from pathlib import Path

import click

from syncd.cli.app import App, pass_app
from syncd.cli.output import Output, output_options
from syncd.cli.present.directory import CUSTOMERS
from syncd.errors import UserError
from syncd.store.directory import ensure_contact, ensure_customer, find_customer, list_customers

CSV_HEADER = ["customer", "domains", "contact_name", "contact_email"]


@click.group()
def customers() -> None:
    """Customers (companies) and their domains."""


@customers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def customers_import(app: App, file: Path) -> None:
    """Import customers and contacts from a CSV file.

    Header: customer,domains,contact_name,contact_email (domains separated by ";").
    A row may define only a customer.  Re-importing the same file changes nothing.
    """
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise UserError(f"cannot read {file}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{file} is not UTF-8 text", hint="save the file as UTF-8 CSV") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if header[: len(CSV_HEADER)] != CSV_HEADER:
        raise UserError(
            f"{file}: the header is {','.join(header) or '(empty)'}",
            hint=f"the first line must be: {','.join(CSV_HEADER)}",
        )
    problems: list[str] = []
    counts = {"customers": 0, "contacts": 0, "unchanged": 0}
    with app.engine.begin() as conn:
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            try:
                if not row["customer"]:
                    raise UserError("customer is empty")
                domains = [d for d in row["domains"].split(";") if d.strip()]
                customer_id, changed = ensure_customer(conn, row["customer"], domains)
                counts["customers"] += changed
                touched = changed
                if row["contact_email"]:
                    _, contact_changed = ensure_contact(
                        conn,
                        row["contact_email"],
                        customer_id=customer_id,
                        name=row["contact_name"],
                    )
                    counts["contacts"] += contact_changed
                    touched = touched or contact_changed
                counts["unchanged"] += not touched
            except UserError as err:
                problems.append(f"line {line}: {err.message}")
        if problems:
            conn.rollback()
            raise UserError(
                f"{file}: nothing imported, {len(problems)} bad row(s):\n  "
                + "\n  ".join(problems),
                hint="fix these rows and import again",
            )
    click.echo(
        f"customers added or changed: {counts['customers']}, contacts added or changed: "
        f"{counts['contacts']}, rows unchanged: {counts['unchanged']}"
    )


@customers.command("add")
@click.argument("name")
@click.option(
    "--domain",
    "domains",
    multiple=True,
    metavar="DOMAIN",
    help="A domain the customer owns (repeatable).",
)
@pass_app
def customers_add(app: App, name: str, domains: tuple[str, ...]) -> None:
    """Add a customer, or add domains to an existing one."""
    with app.engine.begin() as conn:
        customer_id, changed = ensure_customer(conn, name, list(domains))
    click.echo(f"customer {customer_id} {name}: {'saved' if changed else 'unchanged'}")


@customers.command("list")
@output_options
@pass_app
def customers_list(app: App, output: Output) -> None:
    """List customers with their domains."""
    with app.engine.connect() as conn:
        rows = list_customers(conn)
    output.emit(rows, CUSTOMERS, app.out)


@click.group()
def contacts() -> None:
    """Contacts (people) and their addresses."""


@contacts.command("add")
@click.argument("email")
@click.option(
    "--customer", "customer_ref", required=True, metavar="NAME|ID", help="The contact's customer."
)
@click.option("--name", default="", help="The contact's name.")
@pass_app
def contacts_add(app: App, email: str, customer_ref: str, name: str) -> None:
    """Add a contact (or move an address to another customer)."""
    with app.engine.begin() as conn:
        customer = find_customer(conn, customer_ref)
        contact_id, changed = ensure_contact(conn, email, customer_id=customer.id, name=name)
    click.echo(
        f"contact {contact_id} {email} at {customer.name}: {'saved' if changed else 'unchanged'}"
    )
