"""Forgetting a person: keyed fingerprints and redaction of what must stay.  No I/O.

A forgotten address is remembered only as HMAC-SHA256(installation secret, match key):
enough to recognise it in later mail (suppression) and to name it in the audit log,
useless to someone holding a list of guessed addresses but not the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

REDACTED = "[forgotten]"
# Display names shorter than this are too common to redact from free text ("Al", "Jo")
# without destroying unrelated words; the address itself is always redacted.
MIN_NAME_LENGTH = 3


def address_digest(secret: bytes, key: str) -> str:
    """The keyed fingerprint of an address's match key (64 hex characters)."""
    return hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()


def audit_label(digest: str) -> str:
    """How the audit log names a forgotten address: a prefix of its keyed fingerprint."""
    return f"hmac:{digest[:16]}"


def legacy_fingerprint(key: str) -> str:
    """The unkeyed fingerprint older versions wrote to the audit log (reversible by guessing)."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Suppressions:
    """Digests of forgotten addresses; the secret never shows in a repr or a log line."""

    digests: set[str] = field(default_factory=set)
    secret: bytes = field(default=b"", repr=False)

    def covers(self, key: str) -> bool:
        # One HMAC and one set lookup per address; nothing at all when nobody was forgotten.
        return bool(self.digests) and address_digest(self.secret, key) in self.digests

    def label(self, key: str) -> str:
        """What a forgotten address is stored as where it owns something (a meeting's
        organizer): the audit's label, the same for every copy from that person."""
        return audit_label(address_digest(self.secret, key))


@dataclass(frozen=True, slots=True)
class Redactor:
    """Replaces every spelling of the address and the person's display names in free text."""

    pattern: re.Pattern[str] | None
    needles: tuple[str, ...]  # lower-cased substrings a database may search for first

    @classmethod
    def build(cls, addresses: Iterable[str], names: Iterable[str]) -> Redactor:
        addrs = {a.strip().lower() for a in addresses if a.strip()}
        people = {n.strip() for n in names if len(n.strip()) >= MIN_NAME_LENGTH}
        people -= addrs
        alternatives = [re.escape(a) for a in sorted(addrs, key=len, reverse=True)]
        # Names only as whole words: "Ann" must not eat "Annual".
        alternatives += [
            rf"(?<!\w){re.escape(n)}(?!\w)" for n in sorted(people, key=len, reverse=True)
        ]
        pattern = re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None
        return cls(pattern, tuple(sorted({*addrs, *(n.lower() for n in people)})))

    @classmethod
    def of_suppressed(cls, matched: Iterable[tuple[Any, Any]]) -> Redactor:
        """For the forgotten people among a message's matched participants (their address
        and the display name the message gives them)."""
        gone = [p for p, m in matched if m.reason == "suppressed"]
        return cls.build([p.address for p in gone], [p.name for p in gone])

    def redact(self, text: str) -> str:
        if self.pattern is None or not text:
            return text
        return self.pattern.sub(REDACTED, text)
