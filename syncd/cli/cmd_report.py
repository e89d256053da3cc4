"""report: how fast customers get answers, and how a customer's weeks went."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import click

from syncd.cli.app import App, json_option, parse_day, pass_app
from syncd.cli.output import Output, View
from syncd.cli.present.report import activity_view, responses_view
from syncd.domain.responses import BusinessClock, Wait, summarize
from syncd.store.directory import find_customer
from syncd.store.insight import first_replies, weekly_activity

DEFAULT_SINCE = timedelta(days=90)
T = TypeVar("T")
MAX_WEEKS = 260


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
    now = datetime.now(UTC)
    start = parse_day(since) or now - DEFAULT_SINCE
    config = app.config
    owners = {box.name: box.owner for box in config.mailbox}
    with app.engine.connect() as conn:
        asked = first_replies(conn, since=start, until=now, mailboxes=owners)
    clocks: dict[str, BusinessClock] = {}
    waits: list[Wait] = []
    seen: set[int] = set()
    for item in asked:
        rep = owners.get(item.mailbox or "") or item.recipient or "(unknown rep)"
        if by == "rep":
            if item.record_id in seen:
                continue  # linked to two customers: one email, one wait
            seen.add(item.record_id)
        clock = clocks.get(rep)
        if clock is None:
            clock = clocks[rep] = BusinessClock(config.working_week_of(rep))
        group = rep if by == "rep" else item.customer
        waits.append(Wait(group, item.asked_at, item.replied_at, clock))
    _emit(summarize(waits, now), responses_view(by), as_json, app)


@report.command("activity")
@click.argument("customer_ref", metavar="CUSTOMER")
@click.option("--weeks", type=click.IntRange(1, MAX_WEEKS), default=26, show_default=True,
              help="How many weeks back, this one included.")  # fmt: skip
@json_option
@pass_app
def activity(app: App, customer_ref: str, weeks: int, as_json: bool) -> None:
    """Emails in, emails out, meetings and calls of CUSTOMER per week (weeks start on Monday in the
    organization's time zone), oldest first."""
    zone = ZoneInfo(app.config.organization.timezone)
    bounds = week_bounds(datetime.now(UTC), weeks, zone)
    with app.engine.connect() as conn:
        customer = find_customer(conn, customer_ref)
        rows = weekly_activity(conn, customer.id, bounds)
    view = activity_view(
        customer.name, lambda week: week.starts_at.astimezone(zone).date().isoformat()
    )
    _emit(rows, view, as_json, app)


def _emit(items: list[T], view: View[T], as_json: bool, app: App) -> None:
    """One JSON array, or the view for people."""
    Output("json" if as_json else "table").emit(items, view, app.out)


def week_bounds(now: datetime, weeks: int, zone: ZoneInfo) -> list[datetime]:
    """Midnight of each Monday in ``zone``, from ``weeks - 1`` weeks ago to the next one,
    as UTC instants."""
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    days = [monday - timedelta(weeks=weeks - 1 - n) for n in range(weeks + 1)]
    return [datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC) for d in days]
