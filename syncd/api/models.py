"""The API's schema, one pydantic model per object: the OpenAPI document is generated from
these.  Objects are the CLI's ``--json`` objects (the presenters in syncd/cli/present/ and
syncd/domain/payloads.py build both), so the models describe those dicts, key for key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
# An id in a path: what the databases' integers hold (a larger one is a 422, not a crash).
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]

Kind = Literal["email", "meeting", "call", "visit", "note"]
Logged = Literal["call", "visit", "note"]
Outcome = Literal["connected", "no_answer", "voicemail", "busy", "wrong_number"]
TaskType = Literal["call", "email", "visit", "todo"]
Priority = Literal["low", "normal", "high"]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last one."
    )


class Problem(BaseModel):
    """RFC 9457 problem details; a validation failure adds ``errors``, every bad field."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


# --- records -------------------------------------------------------------------------------


class RecordCustomer(BaseModel):
    id: int
    name: str
    link: str


class Participant(BaseModel):
    address: str
    name: str
    role: str
    contact_id: int | None


class Record(BaseModel):
    """The ``records list --json`` object.  Meeting keys only on meetings; the logged-record
    keys (calls, visits, notes) null where they do not apply."""

    id: int
    kind: str
    direction: str
    subject: str
    snippet: str | None
    body: str | None
    occurred_at: str
    customers: list[RecordCustomer]
    participants: list[Participant]
    thread_id: str | None
    message_id: str | None
    sources: list[dict[str, Any]]
    status: str | None = None
    starts_at: str | None = None
    ends_at: str | None = None
    ical_uid: str | None = None
    recurrence_id: str | None = None
    organizer: str | None = None
    owner: str | None = None
    origin: str | None = None
    external_id: str | None = None
    duration_seconds: int | None = None
    outcome: str | None = None
    location: str | None = None
    score: float | None = None
    highlights: list[str] | None = None


class ExplainedParticipant(BaseModel):
    address: str
    role: str
    reason: str
    rule: str | None
    customer_id: int | None
    explanation: str


class Explanation(BaseModel):
    """The ``records explain --json`` object."""

    id: int
    subject: str
    participants: list[ExplainedParticipant]
    links: list[dict[str, Any]]
    unlinked: list[dict[str, Any]]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordIn(_Body):
    """A logged call, visit or note: the options of ``records add``."""

    kind: Logged
    owner: str = Field(max_length=320)
    customer: str | None = Field(None, max_length=300, description="Name or id.")
    contacts: list[str] = Field(default_factory=list, max_length=100)
    occurred_at: datetime | None = Field(
        None, description="`records add --at`: when it happened (default: now)."
    )
    duration: str | None = Field(
        None, max_length=40, description="Calls and visits: `15m`, `1h`, `90s` or seconds."
    )
    duration_seconds: int | None = Field(None, ge=0, le=7 * 86400, description="Or in seconds.")
    direction: Literal["in", "out"] | None = None
    outcome: Outcome | None = None
    location: str | None = Field(None, max_length=500)
    subject: str = Field(max_length=1000)
    body: str | None = Field(None, max_length=200_000)
    external_id: str | None = Field(None, max_length=300)


class RecordPatch(_Body):
    """The options of ``records edit``: only the fields given change; null clears an
    optional one (``customer``: the manual link, ``contacts``: every contact)."""

    kind: Logged | None = None
    owner: str | None = Field(None, max_length=320)
    customer: str | None = Field(None, max_length=300)
    contacts: list[str] | None = Field(None, max_length=100)
    occurred_at: datetime | None = None
    duration: str | None = Field(None, max_length=40)
    duration_seconds: int | None = Field(None, ge=0, le=7 * 86400)
    direction: Literal["in", "out"] | None = None
    outcome: Outcome | None = None
    location: str | None = Field(None, max_length=500)
    subject: str | None = Field(None, max_length=1000)
    body: str | None = Field(None, max_length=200_000)
    external_id: str | None = Field(None, max_length=300)


# --- customers and contacts ------------------------------------------------------------------


class Customer(BaseModel):
    """The ``customers list --json`` object."""

    id: int
    name: str
    domains: list[str]
    archived_at: str | None
    last_contact_at: str | None
    last_inbound_at: str | None
    last_outbound_at: str | None
    next_meeting_at: str | None
    open_tasks: int
    emails: int
    meetings: int
    calls: int
    visits: int


class CustomerIn(_Body):
    name: str = Field(min_length=1, max_length=300)
    domains: list[str] = Field(default_factory=list, max_length=100)


class Contact(BaseModel):
    """The ``contacts list --json`` object."""

    id: int
    name: str
    customer_id: int | None
    customer: str | None
    addresses: list[str]
    archived_at: str | None


class ContactIn(_Body):
    email: str = Field(max_length=320)
    customer: str = Field(max_length=300, description="Name or id.")
    name: str = Field("", max_length=300)


class Week(BaseModel):
    """A line of ``report activity --json``."""

    week: str
    emails_in: int
    emails_out: int
    meetings: int


# --- tasks ---------------------------------------------------------------------------------


class Task(BaseModel):
    """The ``tasks list --json`` object."""

    id: int
    title: str
    owner: str
    customer: str | None
    due_at: str
    status: str
    rule: str | None
    record_id: int | None
    closed_by_record_id: int | None
    snoozed_until: str | None
    type: str
    priority: str


class TaskIn(_Body):
    customer: str = Field(max_length=300, description="Name or id.")
    owner: str = Field(max_length=320)
    title: str = Field(min_length=1, max_length=1000)
    due_at: datetime
    type: TaskType = "todo"
    priority: Priority = "normal"


class TaskPatch(_Body):
    status: Literal["done", "dismissed", "open"] | None = None
    snoozed_until: datetime | None = None
    priority: Priority | None = None
    due_at: datetime | None = None


# --- reconciliation ------------------------------------------------------------------------


class Suggestion(BaseModel):
    customer_id: int
    customer: str
    confidence: float
    reason: str


class QueueEntry(BaseModel):
    """The ``reconcile list --json`` object."""

    address: str
    name: str
    count: int
    first_seen: str | None
    last_seen: str | None
    mailboxes: list[str]
    suggestion: Suggestion | None
    candidates: list[dict[str, Any]]


class AssignIn(_Body):
    address: str = Field(max_length=320)
    customer: str = Field(max_length=300, description="Name or id.")
    name: str = Field("", max_length=300)


class CreateCustomerIn(_Body):
    address: str = Field(max_length=320)
    name: str = Field(min_length=1, max_length=300)


class IgnoreIn(_Body):
    entry: str = Field(max_length=330, description="An address or @domain.")


class Done(BaseModel):
    """What a reconciliation step did: the counts the CLI prints."""

    model_config = ConfigDict(extra="allow")


# --- reports, events, status ---------------------------------------------------------------


class ResponseLine(BaseModel):
    """A line of ``report responses --json``: ``rep`` or ``customer`` names the group."""

    model_config = ConfigDict(extra="allow")
    answered: int
    unanswered: int
    median_business_hours: float | None
    p90_business_hours: float | None
    within_1_business_day: float | None


class Event(BaseModel):
    """The ``events list --json`` envelope (also a webhook's body)."""

    id: str
    type: str
    created_at: str | None
    data: dict[str, Any]


class Status(BaseModel):
    """The ``status --json`` document."""

    model_config = ConfigDict(extra="allow")
