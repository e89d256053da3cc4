"""``syncd``: the command line."""

from __future__ import annotations

import click

from syncd import __version__, logs
from syncd.cli.app import App, ErrorHandlingGroup
from syncd.cli.cmd_directory import contacts, customers
from syncd.cli.cmd_reconcile import audit, forget, ignore, reconcile
from syncd.cli.cmd_records import records, timeline
from syncd.cli.cmd_run import run
from syncd.cli.cmd_sync import check, db, init, status, sync
from syncd.cli.cmd_tasks import tasks
from syncd.cli.cmd_verify import verify


@click.group(
    cls=ErrorHandlingGroup,
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
    logs.configure(["WARNING", "INFO", "DEBUG"][min(verbose, 2)])
    ctx.obj = App(config_path)


for command in (
    init,
    db,
    sync,
    run,
    status,
    check,
    verify,
    customers,
    contacts,
    records,
    timeline,
    tasks,
    reconcile,
    ignore,
    audit,
    forget,
):
    cli.add_command(command)


def main() -> None:
    cli.main(prog_name="syncd")
