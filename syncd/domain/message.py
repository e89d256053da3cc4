"""One fetched message turned into the facts capture needs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from syncd.domain.addresses import normalize_address, normalize_name
from syncd.domain.body import body_text
from syncd.domain.bounds import loggable
from syncd.domain.headers import (
    decode_words,
    parse_addresses,
    parse_date,
    parse_message_ids,
    read_header_section,
)
from syncd.domain.limits import (
    MAX_ADDRESS_CHARS,
    MAX_ADDRESSES,
    MAX_SUBJECT_CHARS,
    clip,
)
from syncd.domain.snippet import snippet as make_snippet
from syncd.logs import get_logger

log = get_logger("syncd.parse")


class UnparseableMessage(ValueError):
    """Nothing usable in the bytes: the message goes to quarantine with this reason."""


@dataclass(frozen=True, slots=True)
class Address:
    address: str
    name: str


@dataclass(slots=True)
class ParsedMessage:
    message_id: str
    message_id_generated: bool
    subject: str
    occurred_at: datetime
    senders: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    in_reply_to: str | None
    references: list[str]
    fields: dict[str, list[str]]
    snippet: str | None
    body: str | None = None
    # What the caps in syncd.domain.limits left out, in words; empty for ordinary mail.
    cuts: list[str] = field(default_factory=list)


class _AddressBudget:
    """MAX_ADDRESSES per message, spent in field order (From first), cuts noted."""

    def __init__(self, cuts: list[str]) -> None:
        self.left = MAX_ADDRESSES
        self.cuts = cuts

    def read(self, fields: dict[str, list[str]], name: str) -> list[Address]:
        values = fields.get(name)
        if not values:
            return []
        pairs = parse_addresses(values, limit=self.left)
        if pairs.dropped:
            self.cuts.append(f"{name}: {pairs.dropped} addresses past {MAX_ADDRESSES} dropped")
        if pairs.too_long:
            self.cuts.append(
                f"{name}: {pairs.too_long} addresses over {MAX_ADDRESS_CHARS} characters not stored"
            )
        self.left -= len(pairs)
        out: list[Address] = []
        for display, raw in pairs:
            addr = normalize_address(raw)
            if addr is not None:
                out.append(Address(addr, normalize_name(display)))
        return out


def _first(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def generated_message_id(fields: dict[str, list[str]], occurred_at: datetime) -> str:
    """A stable id for a message without Message-ID, from headers every copy shares.

    The same message seen in two mailboxes yields the same id, so it still becomes one record.
    """
    basis = "\x00".join(
        [
            ",".join(fields.get("from", [])),
            ",".join(fields.get("to", [])),
            ",".join(fields.get("cc", [])),
            _first(fields, "subject") or "",
            _first(fields, "date") or occurred_at.isoformat(),
        ]
    )
    digest = hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"syncd-{digest}@generated.invalid"


def parse_message(
    raw: bytes,
    *,
    internal_date: datetime | None,
    with_body: bool = True,
    keep: Literal["metadata", "snippet", "full"] = "snippet",
    redact: Callable[[str], str] | None = None,
) -> ParsedMessage:
    """Parse a message (header section, optionally followed by a possibly truncated body).

    ``redact`` (forgotten people: engine/pipeline) applies to the subject and body before
    they are cut, so that a name the cut splits cannot survive as its first half.

    Raises UnparseableMessage only when the bytes carry no address header at all;
    everything else (broken MIME, unknown charsets, no Date) is captured as well as it can be.
    """
    section = read_header_section(raw)
    fields, cuts = section.fields, section.cuts
    budget = _AddressBudget(cuts)
    senders = budget.read(fields, "from") or budget.read(fields, "sender")
    to, cc, bcc = budget.read(fields, "to"), budget.read(fields, "cc"), budget.read(fields, "bcc")
    if not (senders or to or cc or bcc):
        reason = "no From, Sender, To, Cc or Bcc address in the header section"
        raise UnparseableMessage(f"{reason} ({'; '.join(cuts)})" if cuts else reason)

    occurred_at = parse_date(_first(fields, "date"))
    if occurred_at is None:
        occurred_at = (internal_date or datetime.now(UTC)).astimezone(UTC)

    ids = parse_message_ids(_first(fields, "message-id"))
    generated = not ids
    message_id = ids[0] if ids else generated_message_id(fields, occurred_at)
    in_reply_to = parse_message_ids(_first(fields, "in-reply-to"))
    references = parse_message_ids(" ".join(fields.get("references", [])))

    text: str | None = None
    full: str | None = None
    if with_body and keep != "metadata":
        body = body_text(
            raw,
            _first(fields, "content-type") or "text/plain",
            _first(fields, "content-transfer-encoding") or "",
        )
        if redact is not None:
            body = redact(body)
        text = make_snippet(body)
        if keep == "full":
            full = body.replace("\r\n", "\n").strip()
    subject = decode_words(_first(fields, "subject") or "").strip()
    if redact is not None:
        subject = redact(subject)
    if len(subject) > MAX_SUBJECT_CHARS:
        cuts.append(f"subject: {len(subject)} characters cut to {MAX_SUBJECT_CHARS}")
        subject = clip(subject, MAX_SUBJECT_CHARS)
    if cuts:
        log.info("message.cut", message_id=loggable(message_id), cuts=[loggable(c) for c in cuts])
    return ParsedMessage(
        message_id=message_id,
        message_id_generated=generated,
        subject=subject,
        occurred_at=occurred_at,
        senders=senders,
        to=to,
        cc=cc,
        bcc=bcc,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=references,
        fields=fields,
        snippet=text,
        body=full,
        cuts=cuts,
    )
