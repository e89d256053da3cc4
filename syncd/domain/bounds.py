"""Values from mail and calendars made to fit the schema, by design rather than by luck.

Anyone on the internet writes the headers syncd stores.  PostgreSQL refuses a string
longer than its column, a NUL character, and a lone surrogate (which no UTF-8 encoder,
SQLite's included, accepts): one such value used to fail a whole batch.  Every value a
source hands to the store passes through here first.  Pure functions, no I/O.

The limits name the columns of ``schema/tables.py`` they protect.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

# An id longer than this is stored as its hash.  998 is RFC 5322's line limit, so no honest
# Message-ID is longer.  It is counted in UTF-8 bytes: it fits records.message_id and
# thread_key (String(1000)), records.key and unmatched_sightings.message_key (String(1100),
# "email:" + id), calendar UIDs (ical_uid String(1000)), and stays well under PostgreSQL's
# limit for one B-tree index entry (about 2,700 bytes), which multi-byte ids would pass.
ID_MAX_BYTES = 998
HASHED_ID_PREFIX = "sha256:"
# References kept per message: the first (the thread's root) and the nearest ancestors.
# Threading needs no more, and each kept id costs a lookup.
REFERENCES_MAX = 100
# RFC 5321: a path holds at most 256 octets with its angle brackets.  A longer address can
# neither send nor receive mail, so it is no participant; columns hold 320
# (participants.address, unmatched_*.address, contact_addresses.address, records.organizer).
ADDRESS_MAX = 254
# participants.name, unmatched_addresses.name, contacts.name, customers.name.
NAME_MAX = 300
# records.subject is Text; a bound keeps lists, tasks and pushed VTODO titles readable.
SUBJECT_MAX = 2000
# quarantine.reason (mail and calendars): enough to say what was wrong.
REASON_MAX = 2000

# What PostgreSQL (and, for surrogates, every UTF-8 encoder) refuses in text.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` without NUL characters, and with each lone surrogate as U+FFFD."""
    if value.isascii():  # the common case: one C scan, no copy
        return value.replace("\x00", "") if "\x00" in value else value
    if _UNSTORABLE.search(value) is None:
        return value
    return _SURROGATES.sub("\ufffd", value.replace("\x00", ""))


def bound_text(value: str, limit: int) -> str:
    """``value`` cleaned and cut to at most ``limit`` characters."""
    return clean_text(value if len(value) <= limit else value[:limit])


def bound_name(value: str) -> str:
    """A display name that fits every name column."""
    return bound_text(value, NAME_MAX)


def bound_subject(value: str) -> str:
    return bound_text(value, SUBJECT_MAX)


def loggable(value: str, limit: int = 200) -> str:
    """Untrusted text quoted in a log line: cut, and every control or unprintable character
    (a newline forging a log line, an escape sequence for the terminal) shown as ``?``."""
    cut = value[:limit]
    return cut if cut.isprintable() else "".join(c if c.isprintable() else "?" for c in cut)


def bound_reason(value: str) -> str:
    """A quarantine reason: it may quote the hostile input, so it is cleaned too."""
    return bound_text(value, REASON_MAX)


def hashed_id(value: str) -> str:
    """The stable stand-in for an id that cannot be stored as written."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return HASHED_ID_PREFIX + digest


def bound_id(value: str) -> str:
    """An identifier (Message-ID, In-Reply-To, References entry, iCalendar UID) as stored.

    An id that fits is kept as written; a longer one, or one holding a character the
    database refuses, becomes ``sha256:<hex>`` of the id.  The mapping is a function of
    the id alone, so every mention of one long id (its own Message-ID, a reply's
    In-Reply-To and References, a re-identification after UIDVALIDITY changed) lands on
    the same stored value and threading still works.  It is idempotent: a stored id
    maps to itself.  A sender who crafts an id equal to another message's hash merges
    into that record, which is no more than reusing any other message's Message-ID.
    """
    if len(value) <= ID_MAX_BYTES and value.isascii():  # nearly every real id
        return value if "\x00" not in value else hashed_id(value)
    if _UNSTORABLE.search(value) is None and len(value.encode("utf-8")) <= ID_MAX_BYTES:
        return value
    return hashed_id(value)


def bound_optional_id(value: str | None) -> str | None:
    return None if value is None else bound_id(value)


def bound_references(ids: Sequence[str]) -> list[str]:
    """References as stored: each id bounded, the root and the nearest ancestors kept."""
    if len(ids) > REFERENCES_MAX:
        ids = [ids[0], *ids[len(ids) - REFERENCES_MAX + 1 :]]
    return [bound_id(i) for i in ids]


def storable_address(address: str) -> str | None:
    """``address`` when it can be stored as a participant, else None (it is left out).

    Addresses are already normalised; one longer than RFC 5321 allows, or holding a
    character the database refuses, belongs to nobody who can be written back to.
    """
    if len(address) > ADDRESS_MAX:
        return None
    if address.isascii():
        return address if "\x00" not in address else None
    return address if _UNSTORABLE.search(address) is None else None


# Calendar values.  An iCalendar UID is part of a meeting record's key
# ("meeting:<uid>|<recurrence-id>", records.key String(1100)) and is stored in
# records.ical_uid; UIDs are bounded to 255 characters (a prefix and a hash of the whole),
# not as ``bound_id`` does, because record keys made that way are already stored.
UID_MAX = 255
# records.sequence is a 32-bit INTEGER on PostgreSQL.
SEQUENCE_MAX = 2**31 - 1
# participants.role-like short tokens (PARTSTAT): never more than a word.
TOKEN_MAX = 40


def bound_uid(uid: str) -> str:
    """A UID that fits: a long or unprintable one keeps a readable prefix and a hash of the
    whole, so the same UID always maps to the same value and two long UIDs never collide."""
    uid = uid.strip()
    if len(uid) <= UID_MAX and uid.isprintable():
        return uid
    digest = hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    # The prefix keeps tabs and newlines as it always did: the keys stored depend on it.
    prefix = "".join(c for c in uid[: UID_MAX - 34] if c.isprintable() or c in "\n\t")
    return prefix + "~" + digest


def bound_sequence(raw: object) -> int:
    """SEQUENCE as an int in range; an unreadable one counts as 0 (it only orders updates,
    and a bad one must not cost the meeting)."""
    try:
        value = int(str(raw).strip() or 0)
    except ValueError:
        return 0
    return min(max(value, 0), SEQUENCE_MAX)
