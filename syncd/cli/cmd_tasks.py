"""tasks: follow-ups the rules made (and closed), and the ones people add."""

from __future__ import annotations

import click

from syncd.cli.app import App, parse_day, pass_app
from syncd.cli.output import Output, output_options
from syncd.cli.present.tasks import TASKS
from syncd.domain.addresses import normalize_address
from syncd.domain.bounds import SUBJECT_MAX
from syncd.domain.logged import OUTCOMES
from syncd.errors import UserError
from syncd.store import tasks as store
from syncd.store.directory import find_customer

STATUSES = ("open", "done", "dismissed", "snoozed")
TYPES = ("call", "email", "visit", "todo")
PRIORITIES = ("low", "normal", "high")


@click.group()
def tasks() -> None:
    """Follow-up tasks: list, done, dismiss, snooze, add."""


@tasks.command("list")
@click.option("--owner", metavar="EMAIL", help="Only this rep's tasks.")
@click.option("--status", type=click.Choice(STATUSES), help="Only tasks in this state.")
@click.option("--due-before", metavar="DATE", help="Only tasks due before this date.")
@click.option("--customer", "customer_ref", metavar="NAME|ID", help="Only this customer's tasks.")
@click.option("--type", "type_", type=click.Choice(TYPES), help="Only tasks of this type.")
@output_options
@pass_app
def list_cmd(
    app: App,
    owner: str | None,
    status: str | None,
    due_before: str | None,
    customer_ref: str | None,
    type_: str | None,
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
            type_=type_,
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
@click.option(
    "--log",
    "summary",
    metavar="SUMMARY",
    help="A call or visit task: also log that call or visit, with this summary, linked to the "
    "task's customer and contact.",
)
@click.option("--duration", metavar="LENGTH", help="With --log: how long it took (10m, 1h).")
@click.option("--outcome", type=click.Choice(OUTCOMES), help="With --log, a call: how it went.")
@pass_app
def done(
    app: App, task_id: int, summary: str | None, duration: str | None, outcome: str | None
) -> None:
    """Mark a task done (with --log, log the call or visit that did it)."""
    if summary is None:
        if duration is not None or outcome is not None:
            raise UserError("--duration and --outcome go with --log", hint='add --log "summary"')
        _close(app, task_id, "done")
        return
    from syncd.store.audit import current_actor
    from syncd.store.directory import load_directory
    from syncd.store.logged_records import done_with_log

    with app.engine.begin() as conn:
        record_id = done_with_log(
            conn, task_id, summary, duration=duration, outcome=outcome, actor=current_actor(),
            directory=load_directory(conn, app.config.capture),
            internal_domains=app.config.internal_domains,
        )  # fmt: skip
    click.echo(f"task {task_id}: done; logged as record {record_id}")


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
@click.option("--type", "type_", type=click.Choice(TYPES), default="todo", show_default=True)
@click.option("--priority", type=click.Choice(PRIORITIES), default="normal", show_default=True)
@pass_app
def add(
    app: App, customer_ref: str, owner: str, title: str, due: str, type_: str, priority: str
) -> None:
    """Add a task by hand."""
    due_at = parse_day(due)
    assert due_at is not None
    if not title.strip():
        raise UserError("the title is empty", hint='give --title "what to do"')
    if len(title.strip()) > SUBJECT_MAX or "\x00" in title:
        raise UserError(f"the title is longer than {SUBJECT_MAX} characters or holds a NUL")
    with app.engine.begin() as conn:
        customer = find_customer(conn, customer_ref)
        task_id = store.add_task(
            conn, title=title.strip(), owner=_owner(owner), customer_id=customer.id,
            due_at=due_at, type_=type_, priority=priority,
        )  # fmt: skip
    click.echo(f"task {task_id}: added for {customer.name}")
