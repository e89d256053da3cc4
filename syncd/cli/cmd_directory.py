"""customers and contacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from syncd.cli.app import App, json_option, pass_app, print_json
from syncd.cli.output import Output, output_options
from syncd.cli.params import PERIOD, owned_by, rep_address
from syncd.cli.present.directory import CUSTOMERS
from syncd.domain.insight import SORTS, arrange
from syncd.store.directory import active_customer, ensure_contact, ensure_customer
from syncd.store.insight import customer_overview


@click.group()
def customers() -> None:
    """Customers (companies) and their domains."""


@customers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--mirror",
    is_flag=True,
    help="Make the directory equal to the file: customers and contacts it does not list are "
    "archived (history kept, no new links), listed archived ones restored.",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="With --mirror: let a file listing no customer, no contact or no domain archive "
    "every customer or contact, or remove every domain.",
)
@click.option("--dry-run", is_flag=True, help="Say what the import would change; change nothing.")
@json_option
@pass_app
def customers_import(
    app: App, file: Path, mirror: bool, allow_empty: bool, dry_run: bool, as_json: bool
) -> None:
    """Import customers and contacts from a CSV file.

    Header: customer,domains,contact_name,contact_email (domains separated by ";").
    A row may define only a customer.  Re-importing the same file changes nothing.
    A file with bad rows imports nothing and lists every bad row.
    """
    from syncd.domain.directory_file import RowReader, text_stream
    from syncd.engine.directory_sync import read_file
    from syncd.store.directory_mirror import BATCH, mirror_directory

    directory = app.config.directory
    done = mirror_directory(
        app.engine,
        RowReader(text_stream(read_file(file)), str(file)),
        mirror=mirror,
        source=str(file),
        allow_empty=allow_empty,
        dry_run=dry_run,
        batch=directory.batch if directory is not None else BATCH,
    )
    assert done is not None  # (only a ``skip_if`` makes it None)
    if as_json:
        print_json(
            {
                "mirror": mirror,
                "dry_run": dry_run,
                "rows": done.rows,
                **done.counts,
                "archived_customers": done.archived_customers,
            }
        )
        return
    for kind, counts in done.counts.items():
        click.echo(f"{kind}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    if done.archived_customers:
        shown, more = done.archived_customers[:20], len(done.archived_customers) - 20
        click.echo("archived: " + ", ".join(shown) + (f" and {more} more" if more > 0 else ""))
    if dry_run:
        click.echo("dry run: nothing was changed")


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
@click.option(
    "--window",
    type=PERIOD,
    default="90d",
    show_default=True,
    help="Count emails and meetings of this recent period (36h, 90d, 12w).",
)
@click.option(
    "--sort",
    "sort_by",
    type=click.Choice(SORTS),
    default="name",
    show_default=True,
    help="last-contact: the longest silent first; the counts: the most first.",
)
@click.option(
    "--quiet-for",
    type=PERIOD,
    metavar="PERIOD",
    help="Only customers with no contact for this long (or never).",
)
@click.option("--owner", metavar="EMAIL", help="Only customers this rep has records with.")
@click.option("--archived", "which", flag_value="archived", help="Only archived customers.")
@click.option("--all", "which", flag_value="all", help="Active and archived customers.")
@output_options
@pass_app
def customers_list(
    app: App,
    window: timedelta,
    sort_by: str,
    quiet_for: timedelta | None,
    owner: str | None,
    which: str | None,
    output: Output,
) -> None:
    """List customers with their domains, last contact and recent activity (archived ones
    with --archived or --all)."""
    archived = {"archived": True, "all": None}.get(which or "", False)
    now = datetime.now(UTC)
    rep = owned_by(app.config, rep_address(owner)) if owner else None
    with app.engine.connect() as conn:
        rows = customer_overview(
            conn, now=now, window_start=now - window, owner=rep, archived=archived
        )
    quiet_since = now - quiet_for if quiet_for else None
    output.emit(arrange(rows, sort_by=sort_by, quiet_since=quiet_since), CUSTOMERS, app.out)


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
        customer = active_customer(conn, customer_ref)
        contact_id, changed = ensure_contact(conn, email, customer_id=customer.id, name=name)
    click.echo(
        f"contact {contact_id} {email} at {customer.name}: {'saved' if changed else 'unchanged'}"
    )


@contacts.command("list")
@click.option(
    "--customer", "customer_ref", metavar="NAME|ID", help="Only this customer's contacts."
)
@output_options
@pass_app
def contacts_list(app: App, customer_ref: str | None, output: Output) -> None:
    """List contacts with their addresses and customer."""
    from syncd.cli.present.contacts import CONTACTS
    from syncd.store.contact_list import list_contacts
    from syncd.store.directory import find_customer

    with app.engine.connect() as conn:
        customer_id = find_customer(conn, customer_ref).id if customer_ref else None
        rows = list_contacts(conn, customer_id=customer_id)
    output.emit(rows, CONTACTS, app.out)
