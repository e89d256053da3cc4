"""Lengths of time as people write them, in the configuration and on the command line:
``45s``, ``30m``, ``36h``, ``90d``, ``12w``, or with the unit spelled out (``90 days``).
One reader for all of them, so a length means the same wherever it is typed."""

from __future__ import annotations

import re
from datetime import timedelta

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WORDS = {"second": "s", "minute": "m", "hour": "h", "day": "d", "week": "w"}
_LENGTH = re.compile(r"^\s*(\d{1,6})\s*([a-z]{1,7})\s*$", re.IGNORECASE)
FORM = "a whole number and a unit: 45s, 30m, 36h, 90d or 12w"


def _unit(word: str) -> str | None:
    word = word.lower()
    if word in _SECONDS:
        return word
    return _WORDS.get(word.removesuffix("s"))


def parse_duration(text: str) -> timedelta:
    """A positive length of time; ValueError naming the accepted form for anything else."""
    found = _LENGTH.match(text)
    unit = _unit(found.group(2)) if found else None
    if found is None or unit is None or int(found.group(1)) == 0:
        raise ValueError(f"{text!r} is not a length of time: use {FORM}")
    return timedelta(seconds=int(found.group(1)) * _SECONDS[unit])
