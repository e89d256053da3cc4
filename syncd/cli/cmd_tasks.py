"""tasks: follow-ups the rules made (and closed), and the ones people add."""

from __future__ import annotations

import click

from syncd.cli.app import App, parse_day, pass_app
from syncd.cli.output import Output, output_options
from syncd.cli.present.tasks import TASKS
from syncd.domain.addresses import normalize_address
from syncd.errors import UserError
from syncd.store import tasks as store
from syncd.store.directory import find_customer

STATUSES = ("open", "done", "dismissed", "snoozed")


@click.group()
def tasks() -> None:
    """Follow-up tasks: list, done, dismiss, snooze, add."""


@tasks.command("list")
@click.option("--owner", metavar="EMAIL", help="Only this rep's tasks.")
@click.option("--status", type=click.Choice(STATUSES), help="Only tasks in this state.")
@click.option("--due-before", metavar="DATE", help="Only tasks due before this date.")
@click.option("--customer", "customer_ref", metavar="NAME|ID", help="Only this customer's tasks.")
@output_options
@pass_app
def list_cmd(
    app: App,
    owner: str | None,
    status: str | None,
    due_before: str | None,
    customer_ref: str | None,
    output: Output,
) -> None:
    """Tasks, soonest due first."""
    with app.engine.connect() as conn:
        customer_id = find_customer(conn, customer_ref).id if customer_ref else None
        rows = store.list_tasks(
            conn,
            owner=_owner(owner) if owner else None,
            status=status,
            due_before=parse_day(due_before),
            customer_id=customer_id,
        )
    output.emit(rows, TASKS, app.out)


def _owner(value: str) -> str:
    address = normalize_address(value)
    if address is None:
        raise UserError(
            f"{value!r} is not an email address", hint="--owner takes the rep's address"
        )
    return address


@tasks.command("done")
@click.argument("task_id", type=int)
@pass_app
def done(app: App, task_id: int) -> None:
    """Mark a task done."""
    _close(app, task_id, "done")


@tasks.command("dismiss")
@click.argument("task_id", type=int)
@pass_app
def dismiss(app: App, task_id: int) -> None:
    """Dismiss a task: the rules never bring it back."""
    _close(app, task_id, "dismissed")


def _close(app: App, task_id: int, status: str) -> None:
    with app.engine.begin() as conn:
        store.set_status(conn, task_id, status)
    click.echo(f"task {task_id}: {status}")


@tasks.command("snooze")
@click.argument("task_id", type=int)
@click.option("--until", "until", required=True, metavar="DATE", help="When it comes back.")
@pass_app
def snooze(app: App, task_id: int, until: str) -> None:
    """Hide a task until DATE; it comes back open then."""
    when = parse_day(until)
    with app.engine.begin() as conn:
        store.set_status(conn, task_id, "snoozed", until=when)
    click.echo(f"task {task_id}: snoozed until {when.isoformat() if when else until}")


@tasks.command("add")
@click.option("--customer", "customer_ref", required=True, metavar="NAME|ID")
@click.option("--owner", required=True, metavar="EMAIL")
@click.option("--title", required=True)
@click.option("--due", required=True, metavar="DATE")
@pass_app
def add(app: App, customer_ref: str, owner: str, title: str, due: str) -> None:
    """Add a task by hand."""
    due_at = parse_day(due)
    assert due_at is not None
    if not title.strip():
        raise UserError("the title is empty", hint='give --title "what to do"')
    with app.engine.begin() as conn:
        customer = find_customer(conn, customer_ref)
        task_id = store.add_task(
            conn, title=title.strip(), owner=_owner(owner), customer_id=customer.id, due_at=due_at
        )
    click.echo(f"task {task_id}: added for {customer.name}")
