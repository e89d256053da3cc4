"""Option types shared by the insight commands: a length of time such as ``90d``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from syncd.domain.periods import parse_period


class PeriodType(click.ParamType):  # type: ignore[type-arg]
    """``36h``, ``90d``, ``12w``: a bad value is a usage error (exit 2) naming the form."""

    name = "period"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_period(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


PERIOD = PeriodType()


def owned_by(config: Any, address: str) -> Any:
    """The rep ``address`` with the mailboxes and calendars they own in the config."""
    from syncd.store.insight import Owned

    return Owned(
        address,
        mailboxes=[box.name for box in config.mailbox if box.owner == address],
        calendars=[cal.name for cal in config.calendar if cal.owner == address],
    )


def rep_address(value: str) -> str:
    """``--owner``: a rep's address, as the store keeps addresses."""
    from syncd.domain.addresses import normalize_address
    from syncd.errors import UserError

    address = normalize_address(value)
    if address is None:
        raise UserError(
            f"{value!r} is not an email address", hint="--owner takes the rep's address"
        )
    return address
