"""Accounting for every message a server lists: recorded, skipped by a rule, quarantined,
not synced yet, or missing.  Pure: the engine supplies the server's UIDs and what the
store knows, and gets back the counts and the UIDs nobody can account for."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

# Compact, stable names for the capture rules (stored per skipped UID and shown by verify).
# Keyed by the start of the reason the capture decision gives; the first match wins.
_RULES: tuple[tuple[str, str], ...] = (
    ("internal only", "internal"),
    ("List-Id", "bulk"),
    ("List-Unsubscribe", "bulk"),
    ("Precedence", "bulk"),
    ("Auto-Submitted", "auto-submitted"),
    ("auto-reply", "auto-submitted"),
    ("null Return-Path", "bounce"),
    ("no-reply sender", "no-reply"),
    ("only excluded", "only_excluded"),
    ("no customer link", "only_matched"),
    ("no outside address that can be stored", "unstorable_address"),
)


def skip_rule(reason: str) -> str:
    """The rule name for a skip reason ("Precedence: bulk" -> "bulk"); "other" if unknown,
    so that a new rule never makes a message unaccountable."""
    for prefix, rule in _RULES:
        if reason.startswith(prefix):
            return rule
    return "other"


@dataclass(slots=True)
class Tally:
    """What one folder (or calendar) holds on the server, and how each item is accounted."""

    server: int = 0
    recorded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # rule -> messages
    quarantined: int = 0
    pending: int = 0  # above the cursor (or changed since the last sync): the next sync reads it
    # Nothing says where these went: UIDs of a folder, hrefs of a calendar.
    unaccounted: list[int | str] = field(default_factory=list)

    def as_counts(self) -> dict[str, object]:
        return {
            "server": self.server,
            "recorded": self.recorded,
            "skipped": sum(self.skipped.values()),
            "skipped_by_rule": dict(sorted(self.skipped.items())),
            "quarantined": self.quarantined,
            "pending": self.pending,
        }


def account_uids(
    server_uids: Iterable[int],
    *,
    synced_up_to: int,
    recorded: Collection[int],
    quarantined: Collection[int],
    skipped: dict[int, str],
) -> Tally:
    """Sort each UID the server lists into exactly one bucket.

    Order matters only for UIDs in two places (a message quarantined once and captured by a
    later retry): a record is the best answer, then a quarantine entry, then a skip rule.
    """
    tally = Tally()
    for uid in server_uids:
        tally.server += 1
        if uid > synced_up_to:
            tally.pending += 1
        elif uid in recorded:
            tally.recorded += 1
        elif uid in quarantined:
            tally.quarantined += 1
        elif uid in skipped:
            tally.skipped[skipped[uid]] += 1
        else:
            tally.unaccounted.append(uid)
    return tally


def account_hrefs(
    listed: Mapping[str, str],
    *,
    synced: bool,
    known: Mapping[str, str],
    quarantined: Collection[str],
    changed_since_sync: Collection[str] | None,
) -> Tally:
    """Sort each calendar object the server lists (href -> ETag) into one bucket.

    A calendar has no UID cursor; what plays its part is the server's own change list since
    the last sync's token (``changed_since_sync``): an unknown object the server says is new
    since then is pending, one it does not is missing.  Without a token (None) nothing can be
    pending, so every unknown object is missing: the honest answer, and repair fetches it.
    """
    tally = Tally()
    for href, etag in listed.items():
        tally.server += 1
        if not synced:
            tally.pending += 1
        elif href in quarantined:
            tally.quarantined += 1
        elif href in known:
            if etag and known[href] and etag != known[href]:
                tally.pending += 1  # changed on the server since the last sync
            else:
                tally.recorded += 1
        elif changed_since_sync is not None and href in changed_since_sync:
            tally.pending += 1
        else:
            tally.unaccounted.append(href)
    return tally
