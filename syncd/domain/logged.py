"""Logged records: calls, visits and notes that people write down or import.  Pure, no I/O.

A logged record is a ``records`` row like a captured email or meeting, so links, explain,
events, the timeline and the rules see it without a second path.  This module decides what
a valid one is: its kind, the fields that kind takes, and values that fit the schema by
design (``schema/tables.py``); the store (``store/logged_records.py``) writes it.

Input comes from people and from files other systems export, so every value is checked,
never silently cut: a value that does not fit is a problem the person is told about.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from syncd.domain.addresses import normalize_address
from syncd.domain.bounds import ADDRESS_MAX, SUBJECT_MAX, clean_text
from syncd.domain.durations import parse_duration

KINDS = ("call", "visit", "note")
CAPTURED_KINDS = ("email", "meeting")
OUTCOMES = ("connected", "no_answer", "voicemail", "busy", "wrong_number")
ORIGINS = ("cli", "import", "api", "task")
# --direction in|out as people type it, and the stored words.
DIRECTIONS = {"in": "inbound", "out": "outbound", "inbound": "inbound", "outbound": "outbound"}
# Where a kind takes a value (null elsewhere: the JSON says so).
TAKES_DURATION = ("call", "visit")
TAKES_OUTCOME = ("call",)
TAKES_LOCATION = ("visit",)

KEY_PREFIX = "logged:"
# Sizes of the columns they go to (records.external_id String(300), records.location
# String(500)); a body is Text but bounded as the fullest mail body syncd keeps.
EXTERNAL_ID_MAX = 300
LOCATION_MAX = 500
BODY_MAX = 65536
# A visit of a week is already a trade fair; longer is a typing slip.
DURATION_MAX_SECONDS = 7 * 86400
CONTACTS_MAX = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_BODY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tabs and line breaks are fine


@dataclass(frozen=True, slots=True)
class LoggedDraft:
    """A call, visit or note as written: what ``add``, ``edit`` and ``import`` store.

    ``customer_ids`` are links a person asked for (kept as ``manual``); ``contacts`` are
    addresses, linked to their customers as mail is.  ``external_id`` is the id in the
    system the record came from (the record's key is then ``logged:<external_id>``)."""

    kind: str
    owner: str
    subject: str
    occurred_at: datetime
    customer_ids: tuple[int, ...] = ()
    contacts: tuple[str, ...] = ()
    direction: str = "outbound"
    body: str | None = None
    duration_seconds: int | None = None
    outcome: str | None = None
    location: str | None = None
    external_id: str | None = None
    origin: str = "cli"


@dataclass(frozen=True, slots=True)
class RawFields:
    """A logged record's values as typed (CLI options, a CSV row), before checking."""

    kind: str
    owner: str
    subject: str
    occurred_at: datetime
    contacts: Sequence[str] = ()
    direction: str | None = None
    body: str | None = None
    duration: str | None = None  # "15m", or seconds as digits
    outcome: str | None = None
    location: str | None = None
    external_id: str | None = None
    has_customer: bool = False
    problems: list[str] = field(default_factory=list)


class BadDraft(ValueError):
    """Every problem of one draft, in the order found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_seconds(text: str) -> int:
    """A duration as typed: ``15m``, ``1h``, ``90s`` (durations.py's form) or bare seconds."""
    text = text.strip()
    if text.isdigit() and len(text) <= 9:
        seconds = int(text)
    else:
        seconds = int(parse_duration(text).total_seconds())
    if seconds > DURATION_MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than {DURATION_MAX_SECONDS // 86400} days")
    return seconds


def default_direction(kind: str) -> str:
    """A call or visit is ours unless said otherwise; a note speaks to nobody."""
    return "internal" if kind == "note" else "outbound"


def draft_from(
    raw: RawFields, *, customer_ids: Sequence[int] = (), origin: str = "cli"
) -> LoggedDraft:
    """The draft ``raw`` describes; BadDraft listing every problem otherwise."""
    problems = list(raw.problems)
    kind = raw.kind.strip().lower()
    if kind not in KINDS:
        problems.append(f"kind {raw.kind.strip()[:40]!r} is not one of {', '.join(KINDS)}")
    owner = _address(raw.owner, "owner", problems)
    subject = raw.subject.strip()
    if not subject:
        problems.append("the subject is empty")
    elif len(subject) > SUBJECT_MAX:
        problems.append(f"the subject is longer than {SUBJECT_MAX} characters")
    elif _CONTROL.search(subject):
        problems.append("the subject holds control characters")
    contacts: list[str] = []
    for text in raw.contacts:
        address = _address(text, "contact", problems)
        if address and address not in contacts:
            contacts.append(address)
    if len(contacts) > CONTACTS_MAX:
        problems.append(f"more than {CONTACTS_MAX} contacts")
    if not contacts and not raw.has_customer and not customer_ids:
        problems.append("give a customer or a contact")
    direction = default_direction(kind)
    if raw.direction and raw.direction.strip():
        word = raw.direction.strip().lower()
        if word not in DIRECTIONS:
            problems.append(f"direction {raw.direction.strip()[:40]!r} is not in or out")
        elif kind == "note":
            problems.append("a note has no direction")
        else:
            direction = DIRECTIONS[word]
    duration = _optional(raw.duration)
    seconds: int | None = None
    if duration is not None:
        if kind not in TAKES_DURATION:
            problems.append(f"a {kind} has no duration")
        else:
            try:
                seconds = parse_seconds(duration)
            except ValueError as err:
                problems.append(str(err))
    outcome = _optional(raw.outcome)
    if outcome is not None:
        outcome = outcome.lower()
        if kind not in TAKES_OUTCOME:
            problems.append(f"a {kind} has no outcome")
        elif outcome not in OUTCOMES:
            problems.append(f"outcome {outcome[:40]!r} is not one of {', '.join(OUTCOMES)}")
    location = _optional(raw.location)
    if location is not None:
        if kind not in TAKES_LOCATION:
            problems.append(f"a {kind} has no location")
        elif len(location) > LOCATION_MAX or _CONTROL.search(location):
            problems.append(
                f"the location is longer than {LOCATION_MAX} characters or holds control characters"
            )
    body = raw.body if raw.body and raw.body.strip() else None
    if body is not None:
        body = clean_text(body.strip())
        if len(body) > BODY_MAX:
            problems.append(f"the body is longer than {BODY_MAX} characters")
        elif _CONTROL_IN_BODY.search(body):
            problems.append("the body holds control characters")
    external_id = _optional(raw.external_id)
    if external_id is not None and (
        len(external_id) > EXTERNAL_ID_MAX or _CONTROL.search(external_id)
    ):
        problems.append(
            f"the external id is longer than {EXTERNAL_ID_MAX} characters or holds control "
            "characters"
        )
    if problems:
        raise BadDraft(problems)
    return LoggedDraft(
        kind=kind,
        owner=owner or "",
        subject=clean_text(subject),
        occurred_at=raw.occurred_at.astimezone(UTC),
        customer_ids=tuple(dict.fromkeys(customer_ids)),
        contacts=tuple(contacts),
        direction=direction,
        body=body,
        duration_seconds=seconds,
        outcome=outcome,
        location=clean_text(location) if location else None,
        external_id=clean_text(external_id) if external_id else None,
        origin=origin,
    )


def _optional(value: str | None) -> str | None:
    return value.strip() if value is not None and value.strip() else None


def _address(text: str, what: str, problems: list[str]) -> str | None:
    address = normalize_address(text) if text and len(text) <= 2 * ADDRESS_MAX else None
    if address is None or len(address) > ADDRESS_MAX or _CONTROL.search(address):
        problems.append(f"{what} {text.strip()[:100]!r} is not an email address")
        return None
    if clean_text(address) != address:
        problems.append(f"{what} {text.strip()[:100]!r} is not an email address")
        return None
    return address


def record_key(draft: LoggedDraft, *, row_hash: str | None = None, fresh: str = "") -> str:
    """A logged record's identity: ``logged:<external_id>`` when the system it came from
    named it, else ``logged:row:<hash>`` for an imported row (so a re-import finds it),
    else ``logged:new:<fresh>`` (a random token the caller draws)."""
    if draft.external_id is not None:
        return KEY_PREFIX + draft.external_id
    if row_hash is not None:
        return f"{KEY_PREFIX}row:{row_hash}"
    return f"{KEY_PREFIX}new:{fresh}"


def row_hash(fields: Sequence[str]) -> str:
    """The identity of an imported row without an external id: its fields as written
    (spaces at either end aside), so re-importing the same file finds the same rows."""
    joined = "\x1f".join(f.strip() for f in fields)
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()


def changed_fields(before: LoggedDraft, after: LoggedDraft) -> list[str]:
    """The names of the fields ``after`` changes (origin aside: an edit is no new origin)."""
    return [
        name
        for name in (f.name for f in fields(LoggedDraft))
        if name != "origin" and getattr(before, name) != getattr(after, name)
    ]
