"""reconcile, ignore, audit, forget."""

from __future__ import annotations

import click

from syncd.cli.app import App, pass_app
from syncd.cli.output import Output, output_options
from syncd.cli.present.reconcile import AUDIT, IGNORE, QUEUE, suggestion_text
from syncd.store import audit as audit_store
from syncd.store import reconcile as rec
from syncd.store.database import reclaim_freed_pages
from syncd.store.directory import active_customer, load_directory
from syncd.store.privacy import forget as forget_person


@click.group()
def reconcile() -> None:
    """The queue of unknown external addresses: link, create, ignore."""


@reconcile.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many entries.")
@output_options
@pass_app
def reconcile_list(app: App, limit: int | None, output: Output) -> None:
    """Unknown addresses, most seen first, with a suggested customer and why."""
    with app.engine.connect() as conn:
        entries = rec.queue(conn, load_directory(conn, app.config.capture), limit=limit)
    output.emit(entries, QUEUE, app.out)


@reconcile.command("assign")
@click.argument("address")
@click.option("--customer", "customer_ref", required=True, metavar="NAME|ID", help="The customer.")
@click.option("--name", default="", help="The contact's name (default: the name seen in mail).")
@pass_app
def reconcile_assign(app: App, address: str, customer_ref: str, name: str) -> None:
    """Make ADDRESS a contact of a customer and link its past records and threads."""
    with app.engine.begin() as conn:
        customer = active_customer(conn, customer_ref)
        done = rec.assign(
            conn,
            address,
            customer.id,
            name=name,
            plus_addressing=app.config.capture.plus_addressing,
        )
    click.echo(
        f"{address} -> {customer.name}: contact {done['contact_id']}, {done['records_linked']} record(s) linked"
    )


@reconcile.command("create-customer")
@click.argument("address")
@click.option("--name", required=True, help="The new customer's name.")
@pass_app
def reconcile_create_customer(app: App, address: str, name: str) -> None:
    """Create a customer owning ADDRESS's domain, then assign ADDRESS to it."""
    with app.engine.begin() as conn:
        done = rec.create_customer(
            conn, address, name, plus_addressing=app.config.capture.plus_addressing
        )
    click.echo(
        f"customer {done['customer_id']} {name}: {done['records_linked']} record(s) linked, "
        f"{done['queue_entries_removed']} queue entr(y/ies) cleared"
    )


@reconcile.command("ignore")
@click.argument("entry", metavar="ADDRESS|@DOMAIN")
@pass_app
def reconcile_ignore(app: App, entry: str) -> None:
    """Exclude an address or @domain from now on and drop its queue entries."""
    _ignore(app, entry)


def _ignore(app: App, entry: str) -> None:
    with app.engine.begin() as conn:
        done = rec.add_exclusion(conn, entry, plus_addressing=app.config.capture.plus_addressing)
    state = "added" if done["added"] else "already excluded"
    click.echo(f"{entry}: {state}, {done['queue_entries_removed']} queue entr(y/ies) dropped")


@reconcile.command("accept")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.8, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print what would be done, change nothing.")
@pass_app
def reconcile_accept(app: App, min_confidence: float, dry_run: bool) -> None:
    """Apply every suggestion at or above a confidence, printing each."""
    applied = 0
    with app.engine.begin() as conn:
        entries = rec.queue(conn, load_directory(conn, app.config.capture))
        for entry in entries:
            best = entry.suggestions[0] if entry.suggestions else None
            if best is None or best.confidence < min_confidence:
                continue
            applied += 1
            click.echo(f"{entry.address} -> {suggestion_text(entry)}")
            if not dry_run:
                rec.assign(
                    conn,
                    entry.address,
                    best.customer_id,
                    plus_addressing=app.config.capture.plus_addressing,
                )
        if dry_run:
            conn.rollback()
    click.echo(f"{applied} suggestion(s) {'would be ' if dry_run else ''}applied")


@click.group()
def ignore() -> None:
    """The exclusion list: addresses and @domains never linked or queued."""


@ignore.command("add")
@click.argument("entry", metavar="ADDRESS|@DOMAIN")
@pass_app
def ignore_add(app: App, entry: str) -> None:
    """Exclude an address or @domain (subdomains included)."""
    _ignore(app, entry)


@ignore.command("list")
@output_options
@pass_app
def ignore_list(app: App, output: Output) -> None:
    """Exclusions from the config ([capture] exclude) and from the CLI."""
    with app.engine.connect() as conn:
        stored = rec.list_exclusions(conn)
    rows = [{"entry": e, "source": "config"} for e in app.config.capture.exclude] + [
        {"entry": e, "source": "cli"} for e in stored
    ]
    output.emit(rows, IGNORE, app.out)


@ignore.command("remove")
@click.argument("entry", metavar="ADDRESS|@DOMAIN")
@pass_app
def ignore_remove(app: App, entry: str) -> None:
    """Remove an exclusion added with the CLI (config entries live in the config)."""
    with app.engine.begin() as conn:
        removed = rec.remove_exclusion(conn, entry)
    if not removed and entry in app.config.capture.exclude:
        click.echo(f"{entry} comes from [capture] exclude in the config: remove it there")
    else:
        click.echo(f"{entry}: {'removed' if removed else 'was not excluded'}")


@click.command()
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@output_options
@pass_app
def audit(app: App, limit: int, output: Output) -> None:
    """Who changed what and when, newest first."""
    with app.engine.connect() as conn:
        rows = audit_store.entries(conn, limit)
    output.emit(rows, AUDIT, app.out)


@click.command()
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def forget(app: App, address: str, yes: bool) -> None:
    """Erase a person and never capture ADDRESS again.

    Deletes the contact, participant rows, queue entries, the records with no other
    customer party and their tasks; redacts the address and display name everywhere else
    (subjects, snippets, bodies, task titles, audit); keeps only a keyed fingerprint so
    that later mail and meetings naming the address never store it.
    """
    if not yes:
        click.confirm(f"Erase everything syncd holds about {address}?", abort=True)
    with app.engine.begin() as conn:
        names: list[str] = []
        directory = load_directory(conn, app.config.capture)
        done = forget_person(conn, address, directory, names_out=names)
    with app.engine.connect() as conn:
        on_file = reclaim_freed_pages(conn)
    click.echo(
        f"removed {done['contacts']} contact(s), {done['participants']} participant row(s), "
        f"{done['records']} record(s), {done['queue_entries']} queue entr(y/ies), "
        f"{done['tasks']} task(s); redacted {done['redacted']} row(s); "
        + (
            "future mail and meetings naming the address will not be captured"
            if done["suppressed"]
            else "the address was already suppressed"
        )
    )
    if names:  # only in the records the person took part in: a name is what a sender wrote
        click.echo("display names redacted in their records: " + ", ".join(map(repr, names)))
    if not on_file:
        click.echo(
            "PostgreSQL keeps erased rows in its table files until VACUUM reuses the space, "
            "and in WAL archives and backups: see README, Privacy"
        )
