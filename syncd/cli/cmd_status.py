"""status: what the daemon and every source are doing, for people and for monitoring."""

from __future__ import annotations

from datetime import UTC, datetime

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
            doc = view.read(app.config, status_read.Reader.of(conn), datetime.now(UTC))
    else:
        try:
            doc = view.read(app.config, reader, datetime.now(UTC))
        finally:
            reader.close()
    if as_json:
        print_json(doc)
    else:
        from syncd.cli.plain import Screen  # rich's text, rich loaded only when needed

        view.show(Screen(), doc)
    code = view.exit_code(doc)
    if code:
        raise click.exceptions.Exit(code)
