"""One fetched message -> a captured message, a skip, or a quarantine entry.  No I/O."""

from __future__ import annotations

from dataclasses import dataclass

from syncd.connectors.base import FetchedMessage
from syncd.domain.capture import decide
from syncd.domain.matching import Directory, match_address
from syncd.domain.message import UnparseableMessage, parse_message
from syncd.store.capture import CapturedMessage


@dataclass(frozen=True, slots=True)
class Skipped:
    uid: int
    reason: str


@dataclass(frozen=True, slots=True)
class Quarantined:
    uid: int
    reason: str


Outcome = CapturedMessage | Skipped | Quarantined


def process(
    fetched: FetchedMessage,
    *,
    owner: str,
    internal_domains: frozenset[str],
    directory: Directory,
) -> Outcome:
    try:
        msg = parse_message(
            fetched.raw, internal_date=fetched.internal_date, with_body=not fetched.headers_only
        )
    except UnparseableMessage as err:
        return Quarantined(fetched.uid, f"unparseable: {err}")
    except Exception as err:
        return Quarantined(fetched.uid, f"parser failed: {type(err).__name__}: {err}"[:500])
    decision = decide(msg, owner, internal_domains)
    if not decision.capture:
        return Skipped(fetched.uid, decision.reason)
    return CapturedMessage(
        uid=fetched.uid,
        message_id=msg.message_id,
        direction=decision.direction,
        subject=msg.subject,
        snippet=msg.snippet,
        occurred_at=msg.occurred_at,
        in_reply_to=msg.in_reply_to,
        references=msg.references,
        participants=[
            (p, match_address(p.address, directory, external=p.external))
            for p in decision.participants
        ],
    )
