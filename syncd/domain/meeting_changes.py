"""What one calendar batch changes: the domain decides, the store applies.  No I/O.

Given what the store knows (the records the batch may touch, which resources produced
them, whether anything else still shows them) and what the server says (the objects read
in this batch, the resources deleted), ``plan_batch`` computes every change:

- create: an occurrence no record has yet;
- update: an occurrence whose content changed (its fingerprint: what the record shows) or
  whose SEQUENCE rose; a new DTSTAMP alone is no change, nor is a lower SEQUENCE (a stale
  copy in another calendar); STATUS:CANCELLED arrives this way, as an update;
- cancel: a record no calendar resource shows any more, because its resource was deleted,
  or because its occurrence vanished from its resource inside the window (an added EXDATE,
  a shortened rule).  An occurrence that left the window merely left our view;
- ownership: the first organizer seen for a UID owns its record; a copy naming another
  organizer (a reused or spoofed UID) becomes a record of its own.

Records are never deleted: a cancelled meeting stays as history.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from syncd.domain.items import MeetingItem


@dataclass(frozen=True, slots=True)
class StoredMeeting:
    """A meeting record as the store has it."""

    record_id: int
    key: str
    organizer: str | None
    fingerprint: str | None
    sequence: int
    starts_at: datetime | None
    status: str


@dataclass(frozen=True, slots=True)
class Known:
    """What the store knows before the batch, about what the batch may touch."""

    # Records by key: the batch's keys (``keys_to_load``) and every record a touched
    # resource produced before.
    records: Mapping[str, StoredMeeting]
    # href -> keys of the records this calendar's resource produced so far (touched hrefs).
    sources: Mapping[str, frozenset[str]]
    # key -> how many resources outside this batch (other calendars, other hrefs) show it.
    elsewhere: Mapping[str, int]


@dataclass(slots=True)
class BatchChange:
    """Everything the store writes for one batch, in one transaction."""

    objects: dict[str, list[MeetingItem]]  # href -> its items, keys as owned (claimed)
    create: dict[str, MeetingItem] = field(default_factory=dict)
    update: dict[str, MeetingItem] = field(default_factory=dict)
    unchanged: dict[str, MeetingItem] = field(default_factory=dict)
    link: list[tuple[str, str]] = field(default_factory=list)  # (href, key)
    unlink: list[tuple[str, str]] = field(default_factory=list)  # (href, key)
    cancel: list[str] = field(default_factory=list)  # keys whose record is cancelled

    @property
    def items(self) -> list[MeetingItem]:
        return [i for found in self.objects.values() for i in found]


def organizer_key(key: str, organizer: str | None) -> str:
    """The record key of a copy of a meeting from an organizer other than the one who owns
    ``key``: its own record, stable across syncs, within records.key's 1,100 characters."""
    digest = hashlib.sha256((organizer or "").encode()).hexdigest()[:16]
    return f"{key}|org:{digest}"


def keys_to_load(items: Iterable[MeetingItem]) -> set[str]:
    """The record keys the store must look up for ``plan_batch``: each item's own key and
    the key it gets when another organizer owns its UID."""
    out: set[str] = set()
    for item in items:
        out.add(item.key)
        out.add(organizer_key(item.key, item.organizer))
    return out


def claim_keys(
    objects: Mapping[str, list[MeetingItem]], owners: Mapping[str, str | None]
) -> dict[str, list[MeetingItem]]:
    """The items with the keys they are stored under.  The first organizer seen for a
    meeting owns its record (``owners``: key -> stored organizer); a copy naming another
    organizer, or none once the record has one, gets a record of its own and never
    rewrites the owner's summary, time or participants.  A record without an organizer is
    claimed by the first copy naming one.  Owners are settled for the whole batch before
    any key is given, so a batch read twice gives the same keys."""
    owner = dict(owners)
    for found in objects.values():
        for item in found:
            if owner.get(item.key) is None and item.organizer is not None:
                owner[item.key] = item.organizer
    out: dict[str, list[MeetingItem]] = {}
    for href, found in objects.items():
        out[href] = [
            item
            if owner.get(item.key) in (None, item.organizer)
            else replace(item, key=organizer_key(item.key, item.organizer))
            for item in found
        ]
    return out


def is_update(stored: StoredMeeting, item: MeetingItem) -> bool:
    """Content changed, or SEQUENCE rose (a new stamp alone is no change)."""
    return stored.fingerprint != item.fingerprint or stored.sequence < item.sequence


def plan_batch(
    objects: Mapping[str, list[MeetingItem]],
    deleted: Iterable[str],
    known: Known,
    *,
    window_start: datetime,
    window_end: datetime,
) -> BatchChange:
    """The change one calendar batch makes: see the module's docstring."""
    owners = {k: r.organizer for k, r in known.records.items()}
    change = BatchChange(claim_keys(objects, owners))
    # Two copies of one key in a batch (the same meeting in two resources): the last one is
    # what the record shows, so it alone is compared, and a replay compares the same one.
    final = {item.key: item for item in change.items}
    for key, item in final.items():
        stored = known.records.get(key)
        if stored is None:
            change.create[key] = item
        elif is_update(stored, item):
            change.update[key] = item
        else:
            change.unchanged[key] = item

    shown: Counter[str] = Counter(known.elsewhere)
    candidates: list[str] = []  # records that may have lost their last resource
    for href, found in change.objects.items():
        now = {i.key for i in found}
        change.link.extend((href, key) for key in sorted(now))
        shown.update(now)
        for key in sorted(known.sources.get(href, frozenset()) - now):
            change.unlink.append((href, key))
            stored = known.records.get(key)
            starts = stored.starts_at if stored else None
            if starts is not None and window_start <= starts <= window_end:
                candidates.append(key)
    for href in deleted:
        for key in sorted(known.sources.get(href, frozenset())):
            change.unlink.append((href, key))
            candidates.append(key)
    for key in dict.fromkeys(candidates):
        stored = known.records.get(key)
        if shown[key] == 0 and stored is not None and stored.status != "cancelled":
            change.cancel.append(key)
    return change
