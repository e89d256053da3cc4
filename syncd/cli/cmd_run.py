"""run: the long-running daemon."""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from syncd.cli.app import App, pass_app
from syncd.engine.daemon import Daemon
from syncd.errors import ConfigError, SyncdError, describe, raised_at
from syncd.logs import get_logger

log = get_logger("syncd.daemon")

# The exit code of a stop cut short at its hard limit (engine/daemon.py, STOP_HARD_AFTER):
# not 0, because the stop did not complete (its last writes may be undone: the others wait
# for this daemon's heartbeat to expire), and what an operator can tell from a clean stop
# without the logs; systemd/syncd.service lists it in SuccessExitStatus, so `systemctl stop`
# still ends clean (a SIGTERM'd service that exits non-zero is "failed" otherwise).  75 is
# sysexits' EX_TEMPFAIL: what was left undone is done by the fleet later.  Only ever after
# SIGTERM/SIGINT: a crash exits 1 (or its error's code), and systemd restarts it.
STOP_OVERRAN_EXIT = 75


def _leave(code: int) -> None:
    """Exit now with ``code``, without waiting for the threads left behind."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.command()
@pass_app
def run(app: App) -> None:
    """Run as a daemon: poll every mailbox and calendar, IDLE on INBOX, until SIGTERM.

    SIGHUP reloads the configuration (a config with errors is refused and the running
    one kept).  Logs are JSON lines when stderr is not a terminal.
    """
    root = logging.getLogger()
    root.setLevel(min(root.level, logging.INFO))  # a daemon says what it does; -vv for debug
    api = app.config.api  # fail here, with the config's own message, before starting
    if api is not None and api.workers > 1:
        raise ConfigError(
            [
                f"[api] workers = {api.workers}: workers > 1 is for `syncd serve`; run the API "
                "beside the daemon with `syncd serve` (or set workers = 1)"
            ],
            path=str(app.config_path),
        )
    daemon = Daemon(app.config_path)

    def leave_now() -> None:
        # A stop past its hard limit (engine/daemon.py, STOP_HARD_AFTER): the leases are
        # free by then; what the stop had left to do is not worth SIGTERM's 10 s.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(STOP_OVERRAN_EXIT)

    daemon.on_overrun = leave_now
    try:
        code = daemon.run()
    except Exception as err:
        # A crash of the loop (a bug, a database gone): the exit must be non-zero, for
        # systemd's Restart=on-failure.  The stop after it has run; a sync stuck on a dead
        # server (or a login in flight) would hold the interpreter's exit until its timeout,
        # so with such threads the process leaves at once, with the code the CLI would give.
        log.error("daemon.crashed", error=type(err).__name__, at=raised_at(err))
        if not daemon.lingering:
            raise  # the CLI's own handling: a message and its exit code, or a traceback
        if isinstance(err, SyncdError):
            click.echo(f"error: {describe(err)}", err=True)
            _leave(err.exit_code)
        traceback.print_exception(err)
        _leave(1)
    # The stop is complete (leases released, the stop recorded): the process leaves now.
    # A sync stuck on a dead connection or a login in flight (``lingering``) must not hold
    # the exit past SIGTERM's 10 s (what a sync had not committed is rolled back; its batch
    # is fetched again), and neither must the interpreter's teardown of hundreds of
    # watches and sessions, which took seconds on a loaded host.
    daemon.lingering  # noqa: B018 - logs the threads it leaves behind
    _leave(code)
