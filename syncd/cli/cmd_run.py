"""run: the long-running daemon."""

from __future__ import annotations

import logging
import os

import click

from syncd.cli.app import App, pass_app
from syncd.engine.daemon import Daemon


@click.command()
@pass_app
def run(app: App) -> None:
    """Run as a daemon: poll every mailbox and calendar, IDLE on INBOX, until SIGTERM.

    SIGHUP reloads the configuration (a config with errors is refused and the running
    one kept).  Logs are JSON lines when stderr is not a terminal.
    """
    root = logging.getLogger()
    root.setLevel(min(root.level, logging.INFO))  # a daemon says what it does; -vv for debug
    app.config  # noqa: B018 - fail here, with the config's own message, before starting
    daemon = Daemon(app.config_path)
    code = daemon.run()
    if daemon.lingering:
        # A sync stuck on a dead connection must not hold the exit past systemd's stop
        # timeout.  What it had not committed is rolled back; its batch is fetched again.
        logging.shutdown()
        os._exit(code)
    raise click.exceptions.Exit(code)
