"""Lengths of time as people write them, in the configuration and on the command line.

The one syntax: a number and a unit, ``45s``, ``30m``, ``36h``, ``90d``, ``12w``, the unit
also spelled out (``90 days``, ``1 week``).  A follow-up rule's span may say ``business``
before its unit (``2 business days``, ``4 business hours``) and count working time.  One
reader (``read_length``) for all of them, so a length means the same wherever it is typed.

Old forms still read (documented in the README as such): a bare number of seconds for the
configuration's intervals and timeouts (``interval = 60``, or ``"60"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WORDS = {"second": "s", "minute": "m", "hour": "h", "day": "d", "week": "w"}
_LENGTH = re.compile(r"^\s*(\d{1,6}(?:\.\d{1,6})?)\s*(business\s+)?([a-z]{1,7})\s*$", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*\d{1,9}(?:\.\d{1,6})?\s*$")
FORM = "a whole number and a unit: 45s, 30m, 36h, 90d or 12w"


@dataclass(frozen=True, slots=True)
class Length:
    """A length as written: its number, its unit (s, m, h, d or w), whether in working time."""

    amount: float
    unit: str
    business: bool
    whole: bool  # the number was written without a decimal point

    @property
    def seconds(self) -> float:
        return self.amount * _SECONDS[self.unit]


def _unit(word: str) -> str | None:
    word = word.lower()
    if word in _SECONDS:
        return word
    return _WORDS.get(word.removesuffix("s"))


def read_length(text: str) -> Length | None:
    """``text`` as a length of time, or None when it is not written as one."""
    found = _LENGTH.match(text)
    unit = _unit(found.group(3)) if found else None
    if found is None or unit is None:
        return None
    number = found.group(1)
    return Length(float(number), unit, bool(found.group(2)), "." not in number)


def parse_duration(text: str) -> timedelta:
    """A positive length of calendar time; ValueError naming the accepted form otherwise."""
    length = read_length(text)
    if length is None or length.business or not length.whole or length.amount == 0:
        raise ValueError(f"{text!r} is not a length of time: use {FORM}")
    return timedelta(seconds=length.seconds)


def seconds(value: str | float) -> float:
    """A configuration's interval or timeout in seconds: a length (``"5m"``), ``"0s"`` for
    none, or (the old form, still read) a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a length of time: use {FORM}")
    if isinstance(value, int | float):
        return float(value)
    if _NUMBER.match(value):  # the old form, quoted
        return float(value)
    length = read_length(value)
    if length is not None and length.amount == 0 and length.whole and not length.business:
        return 0.0
    return parse_duration(value).total_seconds()
