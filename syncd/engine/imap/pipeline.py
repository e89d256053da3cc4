"""One fetched message -> a captured message, a skip, or a quarantine entry.  No I/O.

This is where parsed values are bounded to fit the schema (``domain/bounds``): whatever
leaves here can be stored by SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from syncd.connectors.base import FetchedMessage
from syncd.domain.bounds import (
    bound_id,
    bound_name,
    bound_reason,
    bound_references,
    bound_subject,
    clean_text,
    storable_address,
)
from syncd.domain.capture import Participant, decide
from syncd.domain.matching import Directory, match_address, only_excluded
from syncd.domain.message import ParsedMessage, UnparseableMessage, parse_message
from syncd.domain.privacy import Redactor
from syncd.store.capture import CapturedMessage


@dataclass(frozen=True, slots=True)
class Skipped:
    uid: int
    reason: str
    # With only_matched, mail with no customer is not kept, but its unknown addresses are queued.
    queued: CapturedMessage | None = None


@dataclass(frozen=True, slots=True)
class Quarantined:
    uid: int
    reason: str


@dataclass(frozen=True, slots=True)
class Policy:
    owner: str
    internal_domains: frozenset[str]
    keep: Literal["metadata", "snippet", "full"] = "snippet"
    only_matched: bool = False


Outcome = CapturedMessage | Skipped | Quarantined


def process(fetched: FetchedMessage, policy: Policy, directory: Directory) -> Outcome:
    try:
        msg = parse_message(
            fetched.raw,
            internal_date=fetched.internal_date,
            with_body=not fetched.headers_only,
            keep=policy.keep,
        )
    except UnparseableMessage as err:
        return Quarantined(fetched.uid, bound_reason(f"unparseable: {err}"))
    except Exception as err:
        return Quarantined(
            fetched.uid, bound_reason(f"parser failed: {type(err).__name__}: {err}"[:500])
        )
    msg = bounded(msg)
    # Decided on the addresses as written: an over-long sender is still an outsider, so
    # the message stays inbound even though that address cannot be stored.
    decision = decide(msg, policy.owner, policy.internal_domains)
    if not decision.capture:
        return Skipped(fetched.uid, decision.reason)
    people = storable_participants(decision.participants)
    if not any(p.external for p in people):
        return Skipped(fetched.uid, "no outside address that can be stored")
    matches = [(p, match_address(p.address, directory, external=p.external)) for p in people]
    if only_excluded(matches):
        return Skipped(fetched.uid, "only excluded external participants")
    forgotten = Redactor.of_suppressed(matches)  # people `syncd forget` erased: not named again
    if forgotten.pattern is not None:
        # Read again with the redaction before the subject and snippet are cut: redacting
        # the cut text would leave the first half of a name the cut splits.  Rare: only mail
        # naming a forgotten person pays for a second parse.
        again = bounded(
            parse_message(
                fetched.raw,
                internal_date=fetched.internal_date,
                with_body=not fetched.headers_only,
                keep=policy.keep,
                redact=forgotten.redact,
            )
        )
        msg.subject, msg.snippet, msg.body = again.subject, again.snippet, again.body
    captured = CapturedMessage(
        uid=fetched.uid,
        message_id=msg.message_id,
        direction=decision.direction,
        subject=forgotten.redact(msg.subject),
        snippet=msg.snippet and forgotten.redact(msg.snippet),
        body=msg.body and forgotten.redact(msg.body),
        occurred_at=msg.occurred_at,
        in_reply_to=msg.in_reply_to,
        references=msg.references,
        participants=matches,
    )
    if policy.only_matched and not any(m.customer_id is not None for _, m in matches):
        return Skipped(fetched.uid, "no customer link (only_matched)", queued=captured)
    return captured


def bounded(msg: ParsedMessage) -> ParsedMessage:
    """``msg`` with every value the store keeps made to fit (addresses are left to
    ``storable_participants``, after the capture decision).

    Changed in place: the parsed message belongs to ``process`` alone, and a copy per
    message would cost more than all the checks together.
    """
    msg.message_id = bound_id(msg.message_id)
    msg.subject = bound_subject(msg.subject)
    if msg.in_reply_to is not None:
        msg.in_reply_to = bound_id(msg.in_reply_to)
    if msg.references:
        msg.references = bound_references(msg.references)
    if msg.snippet is not None:
        msg.snippet = clean_text(msg.snippet)
    if msg.body is not None:
        msg.body = clean_text(msg.body)
    return msg


def storable_participants(people: Iterable[Participant]) -> list[Participant]:
    """Participants whose address fits the schema, names bounded; the others are left out."""
    out: list[Participant] = []
    for person in people:
        if storable_address(person.address) is None:
            continue
        name = bound_name(person.name)
        out.append(person if name is person.name else replace(person, name=name))
    return out
