"""webhooks: list endpoints and their backlog, replay events, send a test ping."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from syncd.cli.app import App, json_option, parse_day, pass_app, print_json
from syncd.errors import UserError

if TYPE_CHECKING:
    from syncd.config import WebhookConfig


def _endpoint(app: App, name: str) -> WebhookConfig:
    for config in app.config.webhook:
        if config.name == name:
            return config
    known = ", ".join(c.name for c in app.config.webhook) or "none configured"
    raise UserError(
        f"no [[webhook]] named {name!r} (known: {known})",
        hint="add a [[webhook]] with that name to the config, or use one of the names above",
    )


@click.group()
def webhooks() -> None:
    """Webhook endpoints: backlog and state, replay, test."""


@webhooks.command("list")
@json_option
@pass_app
def list_(app: App, as_json: bool) -> None:
    """Every [[webhook]]: state, pending deliveries, oldest undelivered event, failures."""
    from syncd.cli.present import webhooks as view
    from syncd.store import status_read

    with app.engine.connect() as conn:
        rows = status_read.webhook_status(
            status_read.Reader.of(conn),
            [c.name for c in app.config.webhook],
            view.filters(app.config.webhook),
        )
    items = view.items(app.config.webhook, rows, datetime.now(UTC))
    if as_json:
        print_json(items)
    else:
        view.show(app.out, items)


@webhooks.command()
@click.argument("name")
@click.option("--after", type=int, metavar="ID", help="Deliver again every event after this id.")
@click.option("--since", metavar="DATE", help="Deliver again every event created since DATE.")
@pass_app
def replay(app: App, name: str, after: int | None, since: str | None) -> None:
    """Deliver events again (and failed ones), and enable a disabled endpoint."""
    from syncd.webhooks import queue

    config = _endpoint(app, name)
    if (after is None) == (since is None):
        raise UserError(
            "give exactly one of --after ID or --since DATE",
            hint=f"e.g. syncd webhooks replay {name} --since 2026-01-01",
        )
    with app.engine.begin() as conn:
        queue.ensure_endpoints(conn, app.config.webhook)
        start = after if after is not None else queue.first_event_since(conn, parse_day(since))  # type: ignore[arg-type]
        again, requeued = queue.replay(conn, config.name, max(0, start))
    click.echo(
        f"{name}: events after {max(0, start)} will be delivered again "
        f"({again} taken again, {requeued} failed deliveries queued again); "
        "`syncd run` sends them (or the next `syncd sync`)"
    )


@webhooks.command("test")
@click.argument("name")
@pass_app
def ping_endpoint(app: App, name: str) -> None:
    """Send one signed ping event and print the answer (exit 1 unless 2xx)."""
    from syncd.webhooks.envelope import body, ping
    from syncd.webhooks.http import Sender, load_signer

    config = _endpoint(app, name)
    sender = Sender(config, load_signer(config))
    message_id = f"ping_{uuid.uuid4().hex}"
    started = time.monotonic()
    try:
        answer = sender.post(message_id, body(ping(message_id, datetime.now(UTC))))
    finally:
        sender.close()
    took = (time.monotonic() - started) * 1000
    if answer.status is None:
        click.echo(f"{name}: no answer after {took:.0f} ms: {answer.error}")
        raise click.exceptions.Exit(1)
    click.echo(f"{name}: HTTP {answer.status} in {took:.0f} ms")
    if answer.snippet:
        click.echo(f"answer: {answer.snippet}")
    if not 200 <= answer.status < 300:
        raise click.exceptions.Exit(1)


def deliver_pending(app: App) -> int:
    """`syncd sync`: deliver what is pending, within [sync] deliver_timeout; the number of
    endpoints where a delivery failed in this run or deliveries are still pending (each
    printed with what failed and why)."""
    from syncd.store import status_read
    from syncd.webhooks.deliverer import drain

    left = drain(app.engine, app.config.webhook, app.config.sync.deliver_timeout)
    bad = {name: d for name, d in left.items() if d.failed or d.pending}
    if not bad:
        if left:
            click.echo(f"webhooks: everything delivered ({', '.join(left)})")
        return 0
    with app.engine.connect() as conn:
        rows = status_read.webhook_status(status_read.Reader.of(conn), list(bad))
    for name, drained in bad.items():
        row = rows.get(name, {})
        why = row.get("reason") or row.get("last_error") or "not delivered in time"
        done = f"{drained.delivered} delivered"
        if drained.failed:
            # Failed for good (a 4xx, a redirect, retry_for run out): a run that delivered
            # nothing must not say everything was delivered, nor exit 0.
            click.echo(
                f"webhook {name}: FAILED: {drained.failed} deliveries failed ({why}), {done}, "
                f"{drained.pending} pending; `syncd webhooks list` shows them, `syncd "
                f"webhooks replay {name} --after ID` sends them again once the receiver is fixed"
            )
            continue
        click.echo(
            f"webhook {name}: FAILED: {drained.pending} events still pending after "
            f"{app.config.sync.deliver_timeout:g}s ({why}), {done}; `syncd run` or the next "
            "`syncd sync` goes on, `syncd webhooks list` shows the backlog"
        )
    return len(bad)
