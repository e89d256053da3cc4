"""``syncd``: the command line.

Commands are registered by name and imported only when they run: ``syncd --help``
must not pay for alembic, caldav, SQLAlchemy or the daemon, and ``syncd status`` only
for what it reads.  ``COMMANDS`` also carries each command's one-line help, so the
command list in ``syncd --help`` needs no import either; a test keeps it equal to the
command's own docstring.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import click

from syncd import __version__, logs
from syncd.cli.app import App, ErrorHandlingGroup, loading, unfreeze_when_done


class Entry(NamedTuple):
    module: str  # the module defining the command, as an attribute named like the command
    attribute: str
    short_help: str  # the first sentence of the command's docstring


COMMANDS: dict[str, Entry] = {
    "audit": Entry("syncd.cli.cmd_reconcile", "audit", "Who changed what and when, newest first."),
    "check": Entry(
        "syncd.cli.cmd_sync",
        "check",
        "Connect to every mailbox and calendar, log in, list folders, calendars and "
        "capabilities; capture nothing.",
    ),
    "contacts": Entry(
        "syncd.cli.cmd_directory", "contacts", "Contacts (people) and their addresses."
    ),
    "crm": Entry(
        "syncd.cli.cmd_crm", "crm", "CRMs syncd writes records and tasks into: state, check, sync."
    ),
    "customers": Entry(
        "syncd.cli.cmd_directory", "customers", "Customers (companies) and their domains."
    ),
    "db": Entry("syncd.cli.cmd_db", "db", "Database schema management."),
    "events": Entry(
        "syncd.cli.cmd_events",
        "events",
        "The event feed: every change to a record or task, oldest first.",
    ),
    "forget": Entry(
        "syncd.cli.cmd_reconcile", "forget", "Erase a person and never capture ADDRESS again."
    ),
    "ignore": Entry(
        "syncd.cli.cmd_reconcile",
        "ignore",
        "The exclusion list: addresses and @domains never linked or queued.",
    ),
    "init": Entry(
        "syncd.cli.cmd_init",
        "init",
        "Write a commented example configuration to the --config path.",
    ),
    "reconcile": Entry(
        "syncd.cli.cmd_reconcile",
        "reconcile",
        "The queue of unknown external addresses: link, create, ignore.",
    ),
    "records": Entry(
        "syncd.cli.cmd_records",
        "records",
        "Communication records: captured emails and meetings, logged calls, visits and notes.",
    ),
    "report": Entry(
        "syncd.cli.cmd_report",
        "report",
        "Insight: first-response times, a customer's activity per week.",
    ),
    "run": Entry(
        "syncd.cli.cmd_run",
        "run",
        "Run as a daemon: poll every mailbox and calendar, IDLE on INBOX, until SIGTERM.",
    ),
    "status": Entry(
        "syncd.cli.cmd_status",
        "status",
        "The daemon's heartbeat; per mailbox, folder and calendar: state, last success, errors.",
    ),
    "sync": Entry(
        "syncd.cli.cmd_sync",
        "sync",
        "Run one pass over every mailbox and calendar and exit (non-zero if any failed).",
    ),
    "tasks": Entry(
        "syncd.cli.cmd_tasks", "tasks", "Follow-up tasks: list, done, dismiss, snooze, add."
    ),
    "tokens": Entry(
        "syncd.cli.cmd_tokens", "tokens", "Bearer tokens of the HTTP API: create, list, revoke."
    ),
    "serve": Entry(
        "syncd.cli.cmd_serve",
        "serve",
        "Serve the HTTP API alone ([api] listen), without capturing.",
    ),
    "timeline": Entry(
        "syncd.cli.cmd_records",
        "timeline",
        "A customer's history, newest first, for people to read.",
    ),
    "webhooks": Entry(
        "syncd.cli.cmd_webhooks", "webhooks", "Webhook endpoints: backlog and state, replay, test."
    ),
    "verify": Entry(
        "syncd.cli.cmd_verify",
        "verify",
        "Account for every message UID and calendar event the servers have.",
    ),
}


class LazyGroup(ErrorHandlingGroup):
    """A group whose commands are imported when they are resolved, not when it is built."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        unfreeze_when_done(ctx)
        with loading():
            command = getattr(importlib.import_module(entry.module), entry.attribute)
        assert isinstance(command, click.Command), entry
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's command list, from ``COMMANDS``: listing every command imports none."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            entry = COMMANDS.get(name)
            if entry is not None:
                # A stand-in command shortens the text exactly as click does.
                stand_in = click.Command(name, help=entry.short_help)
                rows.append((name, stand_in.get_short_help_str(limit)))
            else:
                command = self.commands[name]
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    envvar="SYNCD_CONFIG",
    metavar="PATH",
    help="Configuration file (default: $SYNCD_CONFIG, else ./syncd.toml).",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.version_option(__version__, prog_name="syncd")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """Capture reps' mail onto CRM customers and contacts."""
    # The command is resolved (its module imported) before this runs, so a command that
    # logs through structlog has it loaded and gets it configured here (see syncd/logs.py).
    logs.configure(["WARNING", "INFO", "DEBUG"][min(verbose, 2)], lazy=True)
    unfreeze_when_done(ctx)
    ctx.obj = App(config_path)
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    cli.main(prog_name="syncd")
