"""One fetched message turned into the facts capture needs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from syncd.domain.addresses import normalize_address, normalize_name
from syncd.domain.body import body_text
from syncd.domain.headers import (
    decode_words,
    parse_addresses,
    parse_date,
    parse_message_ids,
    split_header_section,
)
from syncd.domain.snippet import snippet as make_snippet


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


def _addresses(fields: dict[str, list[str]], name: str) -> list[Address]:
    values = fields.get(name)
    if not values:
        return []
    out: list[Address] = []
    for display, raw in parse_addresses(values):
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
) -> ParsedMessage:
    """Parse a message (header section, optionally followed by a possibly truncated body).

    Raises UnparseableMessage only when the bytes carry no address header at all;
    everything else (broken MIME, unknown charsets, no Date) is captured as well as it can be.
    """
    fields = split_header_section(raw)
    senders = _addresses(fields, "from") or _addresses(fields, "sender")
    to, cc, bcc = _addresses(fields, "to"), _addresses(fields, "cc"), _addresses(fields, "bcc")
    if not (senders or to or cc or bcc):
        raise UnparseableMessage("no From, Sender, To, Cc or Bcc address in the header section")

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
        text = make_snippet(body)
        if keep == "full":
            full = body.replace("\r\n", "\n").strip()
    return ParsedMessage(
        message_id=message_id,
        message_id_generated=generated,
        subject=decode_words(_first(fields, "subject") or "").strip(),
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
    )
