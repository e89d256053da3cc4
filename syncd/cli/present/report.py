"""Reports: first-response figures per rep or customer, and a customer's weeks as bars."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syncd.cli.output import View
from syncd.domain.responses import ResponseStats
from syncd.store.insight import Week

if TYPE_CHECKING:
    from rich.console import Console

BAR_WIDTH = 40  # characters for the busiest week
_SERIES = (
    ("emails_in", "cyan", "in"), ("emails_out", "green", "out"),
    ("meetings", "magenta", "meetings"), ("calls", "yellow", "calls"),
)  # fmt: skip


def responses_view(by: str) -> View[ResponseStats]:
    def as_json(stats: ResponseStats) -> dict[str, Any]:
        return {
            by: stats.group,
            "answered": stats.answered,
            "unanswered": stats.unanswered,
            "median_business_hours": stats.median_business_hours,
            "p90_business_hours": stats.p90_business_hours,
            "within_1_business_day": stats.within_1_business_day,
        }

    def show(out: Console, rows: list[ResponseStats]) -> None:
        from rich.table import Table

        table = Table(
            by, "answered", "unanswered", "median h", "p90 h", "within 1 day",
            title="First responses to customers' emails",
            caption="h: business hours of the rep who received the email",
        )  # fmt: skip
        for stats in rows:
            table.add_row(
                stats.group, str(stats.answered), str(stats.unanswered),
                _number(stats.median_business_hours), _number(stats.p90_business_hours),
                "-" if stats.within_1_business_day is None
                else f"{stats.within_1_business_day:.0%}",
            )  # fmt: skip
        if not rows:
            out.print("No inbound customer email in this period.")
            return
        out.print(table)

    return View(as_json=as_json, show=show)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def activity_view(customer: str, label: Callable[[Week], str]) -> View[Week]:
    """Weeks as stacked bars for people (in, out, meetings and calls, scaled to the busiest week);
    as JSON, ``{"week": <its Monday>, "emails_in", "emails_out", "meetings", "calls"}``."""

    def as_json(week: Week) -> dict[str, Any]:
        return {
            "week": label(week),
            "emails_in": week.emails_in,
            "emails_out": week.emails_out,
            "meetings": week.meetings,
            "calls": week.calls,
        }

    def show(out: Console, weeks: list[Week]) -> None:
        from rich.table import Table
        from rich.text import Text

        busiest = max((w.emails_in + w.emails_out + w.meetings + w.calls for w in weeks), default=0)
        scale = BAR_WIDTH / busiest if busiest else 1.0  # the busiest week fills the width
        table = Table(
            "week", "in", "out", "meetings", "calls", "", title=f"{customer}: activity per week"
        )
        for week in weeks:
            bar = Text()
            for key, colour, _ in _SERIES:
                count = int(getattr(week, key))
                width = round(count * scale) if count else 0
                bar.append("█" * max(width, 1 if count else 0), style=colour)
            table.add_row(
                label(week), str(week.emails_in), str(week.emails_out), str(week.meetings),
                str(week.calls), bar,
            )  # fmt: skip
        out.print(table)
        out.print(Text.assemble(*((f"█ {name}  ", colour) for _, colour, name in _SERIES)))

    return View(as_json=as_json, show=show)
