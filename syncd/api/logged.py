"""Where the API meets logged records (calls, visits, notes) and search.

Thin adapters, one per operation, so the handlers stay the same when the stores behind
them land: until then each answers 501 with a problem saying so.  Each takes the open
transaction, the config and the request's fields, and returns what the handler needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from syncd.api.problems import Problem
from syncd.config import Config


def _not_available(what: str) -> Problem:
    return Problem(
        501,
        f"{what} is not available in this build of syncd: logged records and search are not "
        "installed yet",
        kind="not-available",
    )


def create(conn: Connection, config: Config, fields: dict[str, Any]) -> tuple[int, bool]:
    """Log a call, visit or note (``records add``'s fields, ``origin="api"``): the record's
    id and True if it is new, False if its ``external_id`` was logged before."""
    raise _not_available("logging a record")


def edit(conn: Connection, config: Config, record_id: int, fields: dict[str, Any]) -> None:
    """``records edit``: only the given fields change."""
    raise _not_available("editing a logged record")


def delete(conn: Connection, config: Config, record_id: int) -> None:
    """``records delete``."""
    raise _not_available("deleting a logged record")


def search(
    conn: Connection,
    config: Config,
    query: str,
    *,
    customer_id: int | None,
    contact: str | None,
    owner: str | None,
    kinds: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[tuple[int, float, list[str]]]:
    """``records search``: (record id, score, highlights) by rank, best first."""
    raise _not_available("search")
