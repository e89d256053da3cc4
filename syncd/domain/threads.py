"""Conversation threads from References and In-Reply-To (RFC 5322 section 3.6.4).

A thread is named by the Message-ID of its root.  A reply whose ancestors we have
already stored joins their thread, even when its own References are incomplete.
"""

from __future__ import annotations

from collections.abc import Mapping


def ancestors(in_reply_to: str | None, references: list[str]) -> list[str]:
    """Message-IDs this message replies to, nearest first."""
    out = list(reversed(references))
    if in_reply_to and in_reply_to not in out:
        out.insert(0, in_reply_to)
    return out


def thread_key(
    message_id: str,
    in_reply_to: str | None,
    references: list[str],
    known: Mapping[str, str],
) -> str:
    """The thread of a message, given ``known``: Message-ID -> thread of stored messages."""
    for ref in ancestors(in_reply_to, references):
        found = known.get(ref)
        if found is not None:
            return found
    if references:
        return references[0]
    if in_reply_to:
        return in_reply_to
    return known.get(message_id, message_id)
