"""The one interface syncd's CRM sink sees: a new CRM is one module implementing it.

The sink (syncd/crm/sink.py) knows queues, claims and the map of ids; a ``Crm`` knows its
CRM's objects: how a record or a task looks there, how to find a copy an interrupted push
may have left, and what the directory holds.  Outcomes the sink must tell apart are typed:
``Refused`` (the CRM will never take this object as it is: failed alone, with the answer)
and the ``TransientError`` family of syncd/errors.py (retried with backoff).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Refused(Exception):
    """The CRM refused the object (a 4xx other than auth): retrying would not help."""

    status: int
    answer: str


class NotYet(Exception):
    """The CRM cannot take the object yet (a meeting in the future): try after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"not before {seconds:.0f} s")
        self.seconds = seconds


@dataclass(frozen=True, slots=True)
class Target:
    """What a record or task is attached to in the CRM (ids in the CRM)."""

    contact: str | None = None
    account: str | None = None
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pushed:
    crm_type: str  # interaction | task | what the CRM keeps a note as (e.g. contact-comment)
    crm_id: str
    state: str | None = None  # what to remember of it (e.g. the record it hangs on)


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One customer (account) with its contacts, as the CRM lists them."""

    crm_id: str
    name: str
    domains: tuple[str, ...]
    contacts: tuple[tuple[str, str, tuple[str, ...]], ...] = field(default=())
    # (crm id, name, addresses) of each contact


class Crm(Protocol):
    name: str

    def check(self) -> list[str]:
        """Problems found (token, permissions, API version), each with its fix; [] when fine."""
        ...

    def find_contact(self, address: str) -> str | None: ...

    def find_account(self, name: str) -> str | None: ...

    def find_copy(self, crm_type: str, marker: str, target: Target, title: str = "") -> str | None:
        """The id of an object an earlier, interrupted push created with ``marker``;
        ``crm_type`` is ``interaction``, ``note`` (a note record) or ``task``."""
        ...

    def push_record(
        self, record: dict[str, Any], target: Target, marker: str, known: Pushed | None
    ) -> Pushed:
        """Create (``known`` None) or update the record's interaction; Refused or a
        RemoteError on failure."""
        ...

    def push_task(
        self, task: dict[str, Any], target: Target, marker: str, known: Pushed | None
    ) -> Pushed: ...

    def delete(self, crm_type: str, crm_id: str) -> None:
        """Delete what syncd created (gone already is fine)."""
        ...

    def task_states(self, crm_ids: list[str]) -> dict[str, str | None]:
        """Each task's state there: ``open``, ``done``, or None when it was deleted."""
        ...

    def directory(self) -> list[DirectoryEntry]: ...

    def close(self) -> None: ...
