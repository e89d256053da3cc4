"""status: what the daemon and every source are doing, for people and for monitoring."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from syncd.cli.app import App, json_option, pass_app, print_json
from syncd.cli.present import status as view


@click.command()
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """The daemon's heartbeat; per mailbox, folder and calendar: state, last success, errors.

    Exits 0 when all is well, 1 when degraded, 2 when a source is failing or needs
    attention, 3 when no daemon (`syncd run`) is running.
    """
    from syncd.store import health
    from syncd.store.queries import calendar_status, sync_status

    with app.engine.connect() as conn:
        rows = sync_status(conn, [b.name for b in app.config.mailbox])
        calendars = calendar_status(conn, [c.name for c in app.config.calendar])
        daemons = health.live_daemons(conn)
        activity = health.health_rows(conn)
    doc = view.document(rows, calendars, daemons, activity, datetime.now(UTC))
    if as_json:
        print_json(doc)
    else:
        view.show(app.out, doc)
    code = view.exit_code(doc)
    if code:
        raise click.exceptions.Exit(code)
