"""verify: prove that every message and event the server has is accounted for."""

from __future__ import annotations

import click
from rich.table import Table

from syncd.cli.app import App, json_option, pass_app, print_json
from syncd.cli.selection import selected_sources
from syncd.engine.sources import configured_sources
from syncd.engine.verify import SourceReport


@click.command()
@click.option("--mailbox", "names", multiple=True, metavar="NAME", help="Only these mailboxes.")
@click.option(
    "--calendar", "calendars", multiple=True, metavar="NAME", help="Only these calendars."
)
@json_option
@pass_app
def verify(app: App, names: tuple[str, ...], calendars: tuple[str, ...], as_json: bool) -> None:
    """Account for every message UID and calendar event the servers have.

    Each is a record, skipped by a named rule, quarantined, pending (not synced yet) or
    missing.  Exits 0 when nothing is missing, 1 when something is missing or a source
    could not be verified (`syncd sync --repair` fetches what is missing), 2 on bad input.
    """
    mailboxes, selected_calendars = selected_sources(app, names, calendars)
    sources = configured_sources(
        app.engine, app.config, mailboxes, selected_calendars, tokens=app.tokens
    )
    reports = [source.verify() for source in sources]
    if as_json:
        print_json({"sources": [r.as_json() for r in reports]})
    else:
        app.out.print(report_table(reports))
        for line in report_lines(reports):
            app.out.print(line, markup=False)
    missing = sum(r.missing for r in reports)
    failed = [r for r in reports if r.failed]
    if missing or failed:
        if not as_json:
            problems = []
            if missing:
                problems.append(f"{missing} missing (fetch them: syncd sync --repair)")
            if failed:
                problems.append(f"{len(failed)} source(s) could not be verified")
            click.echo("NOT COMPLETE: " + "; ".join(problems), err=True)
        raise click.exceptions.Exit(1)
    if not as_json:
        click.echo("complete: every message and event on the servers is accounted for")


def report_table(reports: list[SourceReport]) -> Table:
    table = Table(
        "source", "folder/calendar", "server", "recorded", "skipped", "quarantined",
        "pending", "missing",
    )  # fmt: skip
    for report in reports:
        if report.error:
            table.add_row(report.source, "", "-", "-", "-", "-", "-", "error")
        for place in report.places:
            if place.error:
                table.add_row(report.source, place.place, "-", "-", "-", "-", "-", "error")
                continue
            counts = place.counts()
            table.add_row(
                report.source, place.place, str(counts["server"]), str(counts["recorded"]),
                str(counts["skipped"]), str(counts["quarantined"]), str(counts["pending"]),
                str(len(place.missing)),
            )  # fmt: skip
    return table


def report_lines(reports: list[SourceReport], *, details: bool = True) -> list[str]:
    """The missing items and the errors, for people; with ``details``, also the skip rules
    and which places were unchanged."""
    lines = []
    unchanged = []
    for report in reports:
        if report.error:
            lines.append(f"{report.kind} {report.source}: NOT VERIFIED: {report.error}")
        for place in report.places:
            where = f"{report.source}/{place.place}"
            by_rule = place.counts().get("skipped_by_rule") if not place.error else None
            if by_rule and details:
                rules = ", ".join(f"{rule} {n}" for rule, n in by_rule.items())
                lines.append(f"skipped in {where} by rule: {rules}")
            if place.unchanged and details:
                unchanged.append(where)
            if place.error:
                lines.append(f"{where}: NOT VERIFIED: {place.error}")
            if place.missing:
                what = "UIDs" if report.kind == "mailbox" else "objects"
                shown = ", ".join(str(m) for m in place.missing[:100])
                more = f" and {len(place.missing) - 100} more" if len(place.missing) > 100 else ""
                lines.append(f"missing in {where}: {what} {shown}{more}")
    if unchanged:
        lines.append(f"unchanged since the last clean verify: {', '.join(unchanged)}")
    return lines
