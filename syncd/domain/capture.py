"""Which messages become records, their direction and their participants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from syncd.domain.addresses import is_internal
from syncd.domain.message import Address, ParsedMessage

Role = Literal["from", "to", "cc", "bcc", "attendee"]
Direction = Literal["inbound", "outbound"]

_NO_REPLY = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|mailer-daemon|postmaster|bounces?"
    r"|notifications?|auto[-_.]?confirm)([-+_.].*)?@",
    re.IGNORECASE,
)
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})


@dataclass(frozen=True, slots=True)
class Participant:
    address: str
    name: str
    role: Role
    external: bool


@dataclass(frozen=True, slots=True)
class Decision:
    capture: bool
    reason: str  # why a message is skipped; "" when captured
    direction: Direction
    participants: tuple[Participant, ...]


def automated_reason(msg: ParsedMessage) -> str | None:
    """Why a message is bulk or machine-sent (RFC 2369/2919/3834 and common practice), or None."""
    fields = msg.fields
    if "list-id" in fields:
        return "List-Id header (mailing list)"
    if "list-unsubscribe" in fields:
        return "List-Unsubscribe header (bulk mail)"
    precedence = (fields.get("precedence") or [""])[0].strip().lower()
    if precedence in _BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    auto = (fields.get("auto-submitted") or ["no"])[0].split(";", 1)[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    if "x-autoreply" in fields or "x-autorespond" in fields:
        return "auto-reply header"
    if fields.get("return-path") == ["<>"]:
        return "null Return-Path (bounce)"
    for sender in msg.senders:
        if _NO_REPLY.match(sender.address):
            return f"no-reply sender {sender.address}"
    return None


def participants_of(
    msg: ParsedMessage, owner: str, internal_domains: frozenset[str]
) -> tuple[Participant, ...]:
    seen: set[tuple[str, str]] = set()
    out: list[Participant] = []
    groups: tuple[tuple[Role, list[Address]], ...] = (
        ("from", msg.senders[:1]),
        ("to", msg.to),
        ("cc", msg.cc),
        ("bcc", msg.bcc),
    )
    for role, addresses in groups:
        for item in addresses:
            addr = item.address
            if (addr, role) in seen:
                continue
            seen.add((addr, role))
            external = addr != owner and not is_internal(addr, internal_domains)
            out.append(Participant(addr, item.name, role, external))
    return tuple(out)


def decide(msg: ParsedMessage, owner: str, internal_domains: frozenset[str]) -> Decision:
    participants = participants_of(msg, owner, internal_domains)
    sender_external = any(p.external for p in participants if p.role == "from")
    direction: Direction = "inbound" if sender_external else "outbound"
    if not any(p.external for p in participants):
        return Decision(False, "internal only", direction, participants)
    reason = automated_reason(msg)
    if reason:
        return Decision(False, reason, direction, participants)
    return Decision(True, "", direction, participants)
