"""Lengths of time typed on the command line (``--window 90d``): durations.py's form, at
most a century, since longer windows are typing slips."""

from __future__ import annotations

from datetime import timedelta

from syncd.domain.durations import FORM, parse_duration

__all__ = ["FORM", "MAX_DAYS", "parse_period"]

MAX_DAYS = 36600


def parse_period(text: str) -> timedelta:
    """A positive length of time; ValueError naming the accepted form otherwise."""
    period = parse_duration(text)
    if period > timedelta(days=MAX_DAYS):
        raise ValueError(f"{text!r} is longer than {MAX_DAYS} days")
    return period
