"""One fetched message -> a captured message, a skip, or a quarantine entry.  No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from syncd.connectors.base import FetchedMessage
from syncd.domain.capture import decide
from syncd.domain.matching import Directory, match_address, only_excluded
from syncd.domain.message import UnparseableMessage, parse_message
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
        return Quarantined(fetched.uid, f"unparseable: {err}")
    except Exception as err:
        return Quarantined(fetched.uid, f"parser failed: {type(err).__name__}: {err}"[:500])
    decision = decide(msg, policy.owner, policy.internal_domains)
    if not decision.capture:
        return Skipped(fetched.uid, decision.reason)
    matches = [
        (p, match_address(p.address, directory, external=p.external)) for p in decision.participants
    ]
    if only_excluded(matches):
        return Skipped(fetched.uid, "only excluded external participants")
    forgotten = Redactor.of_suppressed(matches)  # people `syncd forget` erased: not named again
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
