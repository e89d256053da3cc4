"""init, db, sync, status, check."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from syncd.cli.app import App, json_option, pass_app, print_json
from syncd.cli.cmd_verify import report_lines, selected_sources
from syncd.cli.example_config import EXAMPLE
from syncd.config import parse_config
from syncd.engine.followups import evaluate_followups
from syncd.engine.repair import repair as repair_missing
from syncd.engine.sources import SyncReport, configured_sources
from syncd.engine.verify import Verifier
from syncd.errors import RemoteError, UserError, describe
from syncd.secrets import exposed_secrets
from syncd.store import database, health
from syncd.store.directory import load_directory
from syncd.store.queries import calendar_status, sync_status


@click.command()
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_app
def init(app: App, force: bool) -> None:
    """Write a commented example configuration to the --config path."""
    path = app.config_path
    if path.exists() and not force:
        raise UserError(
            f"{path} exists", hint="pass --force to overwrite it, or --config another path"
        )
    import tomllib

    parse_config(tomllib.loads(EXAMPLE))  # the example must always be valid
    path.write_text(EXAMPLE, encoding="utf-8")
    click.echo(f"wrote {path}; edit it, then run: syncd check")


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Apply pending schema migrations (syncd also does this at start)."""
    engine = database.make_engine(app.config.database.url)
    before = database.current_revision(engine)
    database.upgrade(engine)
    after = database.current_revision(engine)
    click.echo(f"schema at {after}" + ("" if before == after else f" (was {before or 'empty'})"))


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
    sources = configured_sources(app.engine, app.config, selected, selected_calendars)
    with app.engine.connect() as conn:
        directory = load_directory(conn, app.config.capture)
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

            reports = [s.sync(directory, progress=progress) for s in sources]
    else:
        reports = [s.sync(directory) for s in sources]
    # The follow-up rules see this pass's records, then task lists get what they made.
    evaluate_followups(app.engine, app.config)
    task_errors = 0
    for source in sources:
        try:
            done = source.push_tasks()
        except RemoteError as err:
            task_errors += 1
            click.echo(f"{source.name}: tasks FAILED: {err.message}")
            continue
        if done is not None:
            click.echo(
                f"{source.name}: tasks {done['written']} written, {done['done']} done and "
                f"{done['dismissed']} dismissed in the calendar"
            )
    for report in reports:
        click.echo("\n".join(_report_lines(report)))
    failed = sum(1 for report in reports if not report.ok)
    if repair:
        failed += _repair(app, selected, selected_calendars)
    if failed or task_errors:
        raise click.exceptions.Exit(1)


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
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """The daemon's heartbeat; per mailbox, folder and calendar: state, last success, errors.

    Exits 0 when all is well, 1 when degraded, 2 when a source is failing or needs
    attention, 3 when no daemon (`syncd run`) is running.
    """
    with app.engine.connect() as conn:
        rows = sync_status(conn, [b.name for b in app.config.mailbox])
        calendars = calendar_status(conn, [c.name for c in app.config.calendar])
        daemons = health.live_daemons(conn)
        activity = health.health_rows(conn)
    now = datetime.now(UTC)
    for kind, items in (("mailbox", rows), ("calendar", calendars)):
        for item in items:
            _merge_activity(item, activity.get((kind, item[kind])), running=bool(daemons))
    daemon = (
        {
            "id": daemons[0].id,
            "host": daemons[0].host,
            "pid": daemons[0].pid,
            "started_at": daemons[0].started_at.isoformat(),
            "heartbeat_at": daemons[0].heartbeat_at.isoformat(),
            "heartbeat_age_seconds": round((now - daemons[0].heartbeat_at).total_seconds(), 1),
            "summary": daemons[0].summary,
            "others": len(daemons) - 1,
        }
        if daemons
        else None
    )
    if as_json:
        print_json({"daemon": daemon, "sources": rows + calendars})
    else:
        if daemon is None:
            app.out.print("daemon: NOT RUNNING (start it: systemctl start syncd, or syncd run)")
        else:
            app.out.print(
                f"daemon: running, pid {daemon['pid']} on {daemon['host']}, heartbeat "
                f"{daemon['heartbeat_age_seconds']:.0f}s ago: {daemon['summary']}"
                + (f" (+{daemon['others']} more daemons)" if daemon["others"] else ""),
                markup=False,
            )
        app.out.print(_status_table(rows, ("mailbox", "folder"), "folders", "messages_captured"))
        for kind, item in [("mailbox", r) for r in rows] + [("calendar", c) for c in calendars]:
            if item.get("shown") and item["shown"] != "syncing":
                app.out.print(f"{kind} {item[kind]}: {item['shown']}", markup=False)
        for box in rows:
            for item in box["quarantined"]:
                app.out.print(
                    f"quarantined: {box['mailbox']}/{item['folder']} uid {item['uid']}: {item['reason']}",
                    markup=False,
                )
        if calendars:
            app.out.print(
                _status_table(
                    calendars, ("calendar", "collection"), "calendars", "meetings_captured"
                )
            )
            for cal in calendars:
                for item in cal["quarantined"]:
                    app.out.print(
                        f"quarantined: {cal['calendar']} {item['href']}: {item['reason']}",
                        markup=False,
                    )
    # For monitoring scripts: 0 all ok, 1 degraded, 2 failing, 3 daemon not running.
    if daemon is None:
        raise click.exceptions.Exit(3)
    states = {box["state"] for box in rows + calendars}
    if "failing" in states:
        raise click.exceptions.Exit(2)
    if "degraded" in states:
        raise click.exceptions.Exit(1)


def _merge_activity(item: dict[str, Any], row: dict[str, Any] | None, *, running: bool) -> None:
    """What the daemon is doing with a source, shown beside what the last sync left."""
    item["activity"] = None
    if row is None or not running:
        return
    retry_at = row["retry_at"].isoformat() if row["retry_at"] else None
    item["activity"] = {"state": row["state"], "reason": row["reason"], "retry_at": retry_at}
    if row["state"] == "attention":
        item["state"] = "failing"
        item["shown"] = f"needs attention: {row['reason']}"
    elif row["state"] == "backoff":
        if item["state"] == "ok":
            item["state"] = "degraded"
        item["shown"] = f"backing off until {retry_at}"
    elif row["state"] == "syncing":
        item["shown"] = "syncing"


def _status_table(
    sources: list[dict[str, Any]], columns: tuple[str, str], children: str, count: str
) -> Table:
    """One row per source (mailbox or calendar account), then one per folder or calendar.

    ``columns`` names the source's key and its children's key, which are also the headers.
    """
    source_key, child_key = columns
    table = Table(source_key, child_key, "state", "last success", "captured", "last error")
    for source in sources:
        table.add_row(
            source[source_key], "", source.get("shown") or source["state"],
            source["last_success_at"] or "-",
            str(source[count]), source["last_error"] or "",
        )  # fmt: skip
        for child in source[children]:
            table.add_row(
                "", child[child_key], "error" if child["last_error"] else "ok",
                child["last_success_at"] or "-", str(child[count]), child["last_error"] or "",
            )  # fmt: skip
    return table


@click.command()
@pass_app
def check(app: App) -> None:
    """Connect to every mailbox and calendar, log in, list folders, calendars and capabilities; capture nothing."""
    problems = 0
    for exposed in exposed_secrets(app.config, app.config_path):
        click.echo(f"WARNING: {exposed}")  # a risk to fix, not a reason the sync would fail
    # No database: check answers before one exists, and never writes.
    for source in configured_sources(None, app.config):
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
