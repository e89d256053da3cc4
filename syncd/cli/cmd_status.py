"""status: what the daemon and every source are doing, for people and for monitoring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from syncd.cli.app import App, json_option, pass_app, print_json
from syncd.cli.present import status as view
from syncd.store import status_read


@click.command()
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """The daemon's heartbeat; per mailbox, folder and calendar: state, last success, errors.

    Exits 0 when all is well, 1 when degraded, 2 when a source is failing or needs
    attention, 3 when no daemon (`syncd run`) is running.
    """
    # Straight through the driver when the schema is current: status is what monitoring
    # runs every minute, and SQLAlchemy's import would be most of its time.  Otherwise
    # the usual engine, which migrates on open, runs the same queries.
    reader = status_read.open_if_current(app.config.database.url)
    if reader is None:
        with app.engine.connect() as conn:
            doc = _document(app, status_read.Reader.of(conn))
    else:
        try:
            doc = _document(app, reader)
        finally:
            reader.close()
    if as_json:
        print_json(doc)
    else:
        view.show(app.out, doc)
    code = view.exit_code(doc)
    if code:
        raise click.exceptions.Exit(code)


def _document(app: App, reader: status_read.Reader) -> dict[str, Any]:
    now = datetime.now(UTC)
    doc = view.document(
        status_read.sync_status(reader, [b.name for b in app.config.mailbox]),
        status_read.calendar_status(reader, [c.name for c in app.config.calendar]),
        status_read.live_daemons(reader),
        status_read.health_rows(reader),
        now,
        status_read.directory_status(reader) if app.config.directory is not None else None,
    )
    if app.config.mailbox_group:
        view.add_groups(doc, {b.name: getattr(b, "group", None) for b in app.config.mailbox})
    if app.config.webhook:
        from syncd.cli.present import webhooks

        rows = status_read.webhook_status(
            reader, [w.name for w in app.config.webhook], webhooks.filters(app.config.webhook)
        )
        doc["webhooks"] = webhooks.items(app.config.webhook, rows, now)
    if app.config.crm:
        from syncd.store.crm_queue import status_rows

        doc["crms"] = status_rows(reader, [c.name for c in app.config.crm])
    return doc
