"""crm: the CRMs syncd writes into: their state, a check of each, a sync now."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import click

from syncd.cli.app import App, json_option, pass_app, print_json
from syncd.errors import UserError

if TYPE_CHECKING:
    from syncd.config import CrmConfig


def _crm(app: App, name: str) -> CrmConfig:
    for config in app.config.crm:
        if config.name == name:
            return config
    known = ", ".join(c.name for c in app.config.crm) or "none configured"
    raise UserError(
        f"no [[crm]] named {name!r} (known: {known})",
        hint="add a [[crm]] with that name to the config, or use one of the names above",
    )


@click.group()
def crm() -> None:
    """CRMs syncd writes records and tasks into: state, check, sync."""


def crm_items(app: App) -> list[dict[str, Any]]:
    from syncd.domain.payloads import iso
    from syncd.store import crm_queue

    out = []
    with app.engine.connect() as conn:
        for config in app.config.crm:
            item = crm_queue.summary(conn, config.name)
            item["kind"] = config.kind
            item["url"] = config.url
            for key in ("last_success_at", "last_pull_at", "last_error_at"):
                item[key] = iso(item[key]) if item[key] else None
            out.append(item)
    return out


@crm.command("list")
@json_option
@pass_app
def list_(app: App, as_json: bool) -> None:
    """Every [[crm]]: state, pending, last success, last error, counts pushed and pulled,
    and what the CRM refused with its answer."""
    items = crm_items(app)
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("no [[crm]] configured")
    for item in items:
        click.echo(
            f"{item['name']} ({item['kind']}, {item['url']}): {item['state']}, "
            f"{item['pending']} pending, {item['failed']} refused, {item['pushed']} pushed, "
            f"{item['pulled']} pulled; last success {item['last_success_at'] or 'never'}"
        )
        if item["last_error"]:
            click.echo(f"  last error ({item['last_error_at']}): {item['last_error']}")
        for refused in item["refused"]:
            click.echo(f"  refused {refused['subject']}: {refused['error']}")


@crm.command()
@click.argument("name")
@pass_app
def check(app: App, name: str) -> None:
    """Log in with the token and check its permissions and the CRM's API; each problem with
    its fix.  Exit 1 if any."""
    from syncd.crm.runner import open_crm

    config = _crm(app, name)
    client = open_crm(config)
    try:
        problems = client.check()
    finally:
        client.close()
    if problems:
        for problem in problems:
            click.echo(f"{name}: {problem}")
        raise SystemExit(1)
    click.echo(f"{name}: ok ({config.kind} at {config.url})")


@crm.command()
@click.argument("name")
@json_option
@pass_app
def sync(app: App, name: str, as_json: bool) -> None:
    """Pull the directory, push what is pending now, pull the tasks back.  Exit 1 if the CRM
    could not be reached or something waits for a retry."""
    from syncd.crm.runner import open_sink

    config = _crm(app, name)
    sink = open_sink(app.engine, config, "cli-" + uuid.uuid4().hex[:12])
    try:
        done = sink.sync()
    finally:
        sink.crm.close()
    if as_json:
        print_json(done)
    else:
        click.echo(
            f"{name}: {done['pushed']} pushed, {done['deleted']} deleted, "
            f"{done['failed']} refused, {done['retried']} to retry"
            + (f", {done['tasks_closed']} tasks closed" if done.get("tasks_closed") else "")
        )
        for error in done["errors"]:
            click.echo(f"  {error}")
    if done["retried"] or done["errors"]:
        raise SystemExit(1)
