"""sync, check."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from syncd.cli.app import App, loading, pass_app
from syncd.cli.selection import selected_sources
from syncd.engine import first_look
from syncd.errors import describe

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Engine

    from syncd.domain.matching import Directory
    from syncd.engine.directory_sync import Outcome
    from syncd.engine.imap.unchanged import SessionOpener
    from syncd.engine.sources import Source, SyncReport
    from syncd.errors import RemoteError
    from syncd.store.status_read import Reader

# Start-up (issue #20): what only some runs need is imported where they need it: the
# [directory] source, the progress bar (a terminal), verify and repair (--repair), the
# token store and the secrets check (`check`).  An unchanged pass needs no SQLAlchemy:
# the first look (engine/first_look.py) does it with the driver, and only when it cannot
# is the full pass (and the engine, the store, SQLAlchemy) loaded.


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
    logins: dict[str, RemoteError] = {}  # logins the first look tried, for the pass
    if not repair:
        lines = first_look.unchanged_sync(
            app.config, lambda: _opener(app), selected, selected_calendars, logins
        )
        if lines is not None:
            click.echo("\n".join(lines))
            return
    with loading():  # as the command's own modules load (cli/app.py)
        from syncd.engine.event_upkeep import drop_delivered_forgotten, events_upkeep
        from syncd.engine.followups import evaluate_followups
        from syncd.engine.passes import sync_pass
        from syncd.engine.sources import configured_sources
        from syncd.store.directory import load_directory
        from syncd.store.status_read import Reader

        engine = app.engine
    # One thread runs this pass, so a backlog may be parsed in a forked child (issue #20).
    sources = configured_sources(
        app.engine,
        app.config,
        selected,
        selected_calendars,
        tokens=app.tokens,
        parse_worker=True,
        opener=first_look.replaying(_opener(app), logins) if logins else None,
    )
    # The CRM's directory first ([directory]), so this pass matches against it.
    mirrored: Outcome | None = None
    if app.config.directory is not None:
        from syncd.engine.directory_sync import apply_once, describe_outcome

        mirrored = apply_once(app.engine, app.config)
        if mirrored is not None:
            click.echo(describe_outcome(mirrored))
    with app.engine.connect() as conn:
        directory = load_directory(conn, app.config.capture)

    horizon: list[datetime] = []
    stamps: list[str | None] = []

    def rules() -> None:  # the task lists pushed after them get what this pass made
        stamps.append(_stamp(engine, Reader))  # the data the rules are about to read
        evaluate_followups(app.engine, app.config, horizon=horizon)
        events_upkeep(app.engine, app.config, horizon=horizon)  # meetings that ended: held

    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            # Drawn at each batch instead of by a thread of its own: a backlog's parse
            # worker is forked while the pass's thread is the only one (parse_worker.py).
            auto_refresh=False,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(where: str, done: int, total: int) -> None:
                if where not in tasks:
                    tasks[where] = bar.add_task(where, total=total)
                bar.update(tasks[where], completed=done, refresh=True)

            results = sync_pass(sources, directory, rules=rules, progress=progress)
    else:
        results = sync_pass(sources, directory, rules=rules)
    task_errors = 0
    for result in results:
        done = result.tasks
        if result.tasks_error is not None:
            task_errors += 1
            click.echo(f"{result.source.name}: tasks FAILED: {result.tasks_error.message}")
        elif done is not None:
            click.echo(
                f"{result.source.name}: tasks {done['written']} written, {done['done']} done and "
                f"{done['dismissed']} dismissed in the calendar"
            )
    reports = [result.report for result in results]
    for report in reports:
        click.echo("\n".join(_report_lines(report)))
    failed = sum(1 for report in reports if not report.ok)
    failed += mirrored is not None and mirrored.result == "error"
    if repair:
        failed += _repair(sources, directory)
    if app.config.webhook:
        from syncd.cli.cmd_webhooks import deliver_pending

        failed += deliver_pending(app)
        drop_delivered_forgotten(app.engine, app.config)  # delivered now: the address goes
    _mark(engine, Reader, app, stamps, horizon)
    if failed or task_errors:
        raise click.exceptions.Exit(1)


def _opener(app: App) -> SessionOpener:
    from syncd.engine.imap.unchanged import imap_opener

    return imap_opener(app.tokens)


def _stamp(engine: Engine, reader: type[Reader]) -> str | None:
    with engine.connect() as conn:
        return first_look.data_stamp(reader.of(conn))


def _mark(
    engine: Engine,
    reader: type[Reader],
    app: App,
    stamps: list[str | None],
    horizon: list[datetime],
) -> None:
    """For the next run's first look: until when the rules and the upkeep that just ran
    have nothing more to do.  Only when nothing changed the data after they began to read
    it but their own work (then the next full pass records it): what the mark vouches for
    is data they saw."""
    from sqlalchemy import delete

    from syncd.schema.tables import settings
    from syncd.store.sql import upsert

    if not stamps or stamps[0] is None:
        return
    with engine.begin() as conn:
        now = first_look.data_stamp(reader.of(conn))
        if now == stamps[0]:
            value = first_look.mark_value(horizon, now, first_look.rules_digest(app.config))
            upsert(conn, settings, [{"name": first_look.MARK, "value": value}], ["name"], ["value"])
        else:
            conn.execute(delete(settings).where(settings.c.name == first_look.MARK))


def _report_lines(report: SyncReport) -> list[str]:
    """One pass over one source, as `syncd sync` has always printed it."""
    name = report.source
    if report.kind == "mailbox":
        head = (
            f"{name}: {report.total('captured')} captured, {report.total('skipped')} skipped, "
            f"{report.total('quarantined')} quarantined"
        )
        if report.error is not None:
            head = f"{name}: FAILED: {describe(report.error)}"
        return [head] + [f"  {p.place}: FAILED: {p.error}" for p in report.places if p.error]
    lines = [
        f"{name}: {report.total('captured')} meetings new, {report.total('updated')} updated, "
        f"{report.total('cancelled')} cancelled, {report.total('quarantined')} quarantined "
        f"({report.requests} requests)"
    ]
    lines += [f"  {p.place}: FAILED: {p.error}" for p in report.places if p.error]
    if report.error is not None:
        lines.append(f"  account: FAILED: {describe(report.error)}")
    return lines


def _repair(sources: list[Source], directory: Directory) -> int:
    """Verify, fetch what is missing, verify again; the number of problems left."""
    from syncd.cli.cmd_verify import report_lines
    from syncd.engine.repair import repair as repair_missing

    reports = [source.verify() for source in sources]
    for item in repair_missing(sources, reports, directory):
        line = (
            f"repair {item.source}/{item.place}: {item.asked} missing, {item.captured} captured, "
            f"{item.skipped} skipped, {item.quarantined} quarantined"
        )
        click.echo(line + "".join(f"\n  FAILED: {e}" for e in item.errors))
    after = [source.verify() for source in sources]
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
    from syncd.engine.sources import configured_sources
    from syncd.group_tokens import uses_refresh_tokens
    from syncd.secrets import exposed_secrets

    problems = 0
    for exposed in exposed_secrets(app.config, app.config_path):
        click.echo(f"WARNING: {exposed}")  # a risk to fix, not a reason the sync would fail
    # No database: check answers before one exists, and never writes; but for refresh
    # tokens, whose endpoint may rotate the one it exchanges, the newest is read from and
    # kept in it (a token check threw away would fail every later login).
    if uses_refresh_tokens(app.config):
        app.tokens.keep_rotated_in(app.engine)
    for source in configured_sources(None, app.config, tokens=app.tokens):
        click.echo(source.heading())
        for finding in source.check():
            if finding.level == "problem":
                problems += 1
                click.echo(f"  PROBLEM: {finding.text}")
                if finding.fix:
                    click.echo(f"  fix: {finding.fix}")
            elif finding.level == "note":
                click.echo(f"  note: {finding.text}")
            else:
                click.echo(f"  {finding.text}")
    if problems:
        click.echo(f"{problems} problem(s) found")
        raise click.exceptions.Exit(1)
    click.echo("all mailboxes and calendars ok")
