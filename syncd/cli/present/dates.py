"""Times as the CLI prints them."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    """ISO 8601 to the second, UTC as ``Z``: the format of every time in the JSON output."""
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def iso_any(value: Any) -> Any:
    """``iso`` for a datetime; anything else (an already formatted string, None) as is."""
    return iso(value) if isinstance(value, datetime) else value


def minute(value: datetime | str) -> str:
    """``2026-03-01 09:30``: a time in a table, to the minute, in UTC."""
    text = iso_any(value) or ""
    return str(text)[:16].replace("T", " ")
