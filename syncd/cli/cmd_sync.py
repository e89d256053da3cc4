"""sync, check."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from syncd.cli.app import App, pass_app
from syncd.cli.cmd_verify import report_lines, selected_sources
from syncd.engine.calendar_sync import CalendarSync, open_caldav
from syncd.engine.followups import evaluate_followups
from syncd.engine.mail_sync import MailSync, open_imap
from syncd.engine.repair import repair as repair_missing
from syncd.engine.task_sync import sync_task_list
from syncd.engine.verify import Verifier
from syncd.errors import RemoteError
from syncd.secrets import exposed_secrets


@click.command()
@click.option("--mailbox", "names", multiple=True, metavar="NAME", help="Only these mailboxes.")
@click.option(
    "--calendar", "calendars", multiple=True, metavar="NAME", help="Only these calendars."
)
@click.option(
    "--repair",
    is_flag=True,
    help="After the pass, verify and fetch what is missing (see `syncd verify`).",
)
@pass_app
def sync(app: App, names: tuple[str, ...], calendars: tuple[str, ...], repair: bool) -> None:
    """Run one pass over every mailbox and calendar and exit (non-zero if any failed)."""
    selected, selected_calendars = selected_sources(app, names, calendars)
    if sys.stderr.isatty():
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(where: str, done: int, total: int) -> None:
                if where not in tasks:
                    tasks[where] = bar.add_task(where, total=total)
                bar.update(tasks[where], completed=done)

            results = MailSync(app.engine, app.config, progress=progress).run_once(selected)
    else:
        results = MailSync(app.engine, app.config).run_once(selected)
    calendar_results = CalendarSync(app.engine, app.config).run_once(selected_calendars)
    evaluate_followups(app.engine, app.config)
    task_errors = 0
    for source in app.config.calendar:
        if source.tasks_calendar and source.name in {c.source for c in calendar_results}:
            try:
                with open_caldav(source) as session:
                    done = sync_task_list(app.engine, source, session)
                click.echo(
                    f"{source.name}: tasks {done['written']} written, {done['done']} done and "
                    f"{done['dismissed']} dismissed in the calendar"
                )
            except RemoteError as err:
                task_errors += 1
                click.echo(f"{source.name}: tasks FAILED: {err.message}")
    failed = 0
    for result in results:
        captured = sum(f.captured for f in result.folders)
        skipped = sum(f.skipped for f in result.folders)
        held = sum(f.quarantined for f in result.folders)
        line = f"{result.mailbox}: {captured} captured, {skipped} skipped, {held} quarantined"
        if result.error is not None:
            failed += 1
            line = f"{result.mailbox}: FAILED: {result.error.message}"
            if result.error.hint:
                line += f" (fix: {result.error.hint})"
        for folder in result.folders:
            if folder.error:
                failed += 1 if result.error is None else 0
                line += f"\n  {folder.folder}: FAILED: {folder.error}"
        click.echo(line)
    for cal in calendar_results:
        created = sum(c["created"] for c in cal.calendars.values())
        updated = sum(c["updated"] for c in cal.calendars.values())
        cancelled = sum(c["cancelled"] for c in cal.calendars.values())
        held = sum(c["quarantined"] for c in cal.calendars.values())
        click.echo(
            f"{cal.source}: {created} meetings new, {updated} updated, {cancelled} cancelled, "
            f"{held} quarantined ({cal.requests} requests)"
        )
        for where, error in cal.errors.items():
            failed += 1
            click.echo(f"  {where or 'account'}: FAILED: {error}")
    if repair:
        failed += _repair(app, selected, selected_calendars)
    if failed or task_errors:
        raise click.exceptions.Exit(1)


def _repair(app: App, mailboxes: list[str] | None, calendars: list[str] | None) -> int:
    """Verify, fetch what is missing, verify again; the number of problems left."""
    reports = Verifier(app.engine, app.config).run(mailboxes, calendars)
    for item in repair_missing(app.engine, app.config, reports):
        line = (
            f"repair {item.source}/{item.place}: {item.asked} missing, {item.captured} captured, "
            f"{item.skipped} skipped, {item.quarantined} quarantined"
        )
        click.echo(line + "".join(f"\n  FAILED: {e}" for e in item.errors))
    after = Verifier(app.engine, app.config).run(mailboxes, calendars)
    for line in report_lines(after, details=False):
        click.echo(line)
    left = sum(r.missing for r in after) + sum(1 for r in after if r.failed)
    click.echo(
        "repair: every message and event is accounted for" if not left else "repair: incomplete"
    )
    return left


@click.command()
@pass_app
def check(app: App) -> None:
    """Connect to every mailbox and calendar, log in, list folders, calendars and capabilities; capture nothing."""
    problems = 0
    for exposed in exposed_secrets(app.config, app.config_path):
        click.echo(f"WARNING: {exposed}")  # a risk to fix, not a reason the sync would fail
    for box in app.config.mailbox:
        click.echo(f"{box.name} ({box.security}://{box.host}:{box.port} as {box.username})")
        try:
            session = open_imap(box, app.config.capture.max_message_bytes)
        except RemoteError as err:
            problems += 1
            click.echo(f"  PROBLEM: {err.message}")
            if err.hint:
                click.echo(f"  fix: {err.hint}")
            continue
        try:
            caps = session.capabilities()
            folders = session.folders()
            names = [f.name for f in folders]
            wanted = box.folders or session.default_folders()
            click.echo("  login: ok")
            for cap in ("IDLE", "CONDSTORE"):
                click.echo(f"  {cap}: {'yes' if cap in caps else 'no'}")
            click.echo(f"  folders: {', '.join(names)}")
            click.echo(f"  will capture: {', '.join(wanted)}")
            for folder in wanted:
                if folder not in names:
                    problems += 1
                    click.echo(f"  PROBLEM: folder {folder!r} does not exist")
                    click.echo(
                        f"  fix: set folders to names from the list above (found: {', '.join(names)})"
                    )
            if not box.folders and len(wanted) == 1:
                click.echo(
                    "  note: no folder is marked \\Sent; add your sent folder to `folders` to capture outbound mail"
                )
        except RemoteError as err:
            problems += 1
            click.echo(f"  PROBLEM: {err.message}")
        finally:
            session.close()
    for source in app.config.calendar:
        click.echo(f"{source.name} ({source.url} as {source.username})")
        try:
            with open_caldav(source) as dav:
                found = dav.discover()
            click.echo("  login: ok")
            click.echo(f"  calendars: {', '.join(c.name for c in found) or 'none'}")
        except RemoteError as err:
            problems += 1
            click.echo(f"  PROBLEM: {err.message}")
            if err.hint:
                click.echo(f"  fix: {err.hint}")
    if problems:
        click.echo(f"{problems} problem(s) found")
        raise click.exceptions.Exit(1)
    click.echo("all mailboxes and calendars ok")
