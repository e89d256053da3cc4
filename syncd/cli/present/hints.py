"""Hints that name a command, for errors the store raises as data."""

from __future__ import annotations

from syncd.errors import SyncdError
from syncd.store.errors import CapturedRecord, FreeMailDomain, KeyTaken, NotFound

_LIST_COMMAND = {
    "record": "`syncd records list` shows record ids",
    "task": "`syncd tasks list` shows the task ids",
    "customer": "`syncd customers list` shows the customers; `syncd customers add` creates one",
}


def hint_for(err: SyncdError) -> str | None:
    """The error's own hint, else the command that helps with it, if any."""
    if err.hint:
        return err.hint
    if isinstance(err, NotFound):
        return _LIST_COMMAND.get(err.what)
    if isinstance(err, FreeMailDomain):
        return f"use `syncd reconcile assign {err.address} --customer NAME` to make the person a contact"
    if isinstance(err, CapturedRecord):
        return (
            "only logged calls, visits and notes can be edited or deleted; "
            f"`syncd records link {err.record_id} --customer C` (or `unlink`) corrects its customers"
        )
    if isinstance(err, KeyTaken):
        return f"edit it with `syncd records edit {err.record_id}`, or give another --external-id"
    return None
