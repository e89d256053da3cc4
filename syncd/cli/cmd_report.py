"""report: how fast customers get answers, and how a customer's weeks went."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

import click

from syncd import insight_reports
from syncd.cli.app import App, json_option, parse_day, pass_app
from syncd.cli.output import Output, View
from syncd.cli.present.report import activity_view, responses_view
from syncd.store.directory import find_customer

DEFAULT_SINCE = insight_reports.DEFAULT_SINCE
T = TypeVar("T")
MAX_WEEKS = insight_reports.MAX_WEEKS


@click.group()
def report() -> None:
    """Insight: first-response times, a customer's activity per week."""


@report.command("responses")
@click.option(
    "--since", metavar="DATE", help="Emails received from this date (default: 90 days ago)."
)
@click.option("--by", "by", type=click.Choice(["rep", "customer"]), default="rep", show_default=True,
              help="One line per rep (who received the email) or per customer.")  # fmt: skip
@json_option
@pass_app
def responses(app: App, since: str | None, by: str, as_json: bool) -> None:
    """First-response times to customers' emails, in each rep's business hours.

    An inbound email linked to a customer is answered by the first outbound email after it
    in its thread (the reply that settles an unanswered_inbound task).  Per group: answered
    and unanswered counts, the median and 90th percentile of the wait in business hours of
    the rep who received it, and the share answered within one business day.  An email
    not answered yet counts as unanswered once its first business day is over; before
    that it is pending and left out.
    """
    with app.engine.connect() as conn:
        stats = insight_reports.responses(
            conn, app.config, since=parse_day(since), by=by, now=datetime.now(UTC)
        )
    _emit(stats, responses_view(by), as_json, app)


@report.command("activity")
@click.argument("customer_ref", metavar="CUSTOMER")
@click.option("--weeks", type=click.IntRange(1, MAX_WEEKS), default=26, show_default=True,
              help="How many weeks back, this one included.")  # fmt: skip
@json_option
@pass_app
def activity(app: App, customer_ref: str, weeks: int, as_json: bool) -> None:
    """Emails in, emails out, meetings and calls of CUSTOMER per week (weeks start on Monday in the
    organization's time zone), oldest first."""
    with app.engine.connect() as conn:
        customer = find_customer(conn, customer_ref)
        rows, label = insight_reports.activity(
            conn, app.config, customer.id, weeks=weeks, now=datetime.now(UTC)
        )
    view = activity_view(customer.name, label)
    _emit(rows, view, as_json, app)


def _emit(items: list[T], view: View[T], as_json: bool, app: App) -> None:
    """One JSON array, or the view for people."""
    Output("json" if as_json else "table").emit(items, view, app.out)


# Kept importable from here: tests and benches name it so.
week_bounds = insight_reports.week_bounds
