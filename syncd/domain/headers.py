"""Decoding of raw RFC 5322 header sections.

We split headers ourselves instead of running ``email.parser`` on every message:
capture needs a dozen fields, and the stdlib parser is the slowest step of a
backfill.  Everything here tolerates broken input: unknown charsets, raw 8-bit
bytes, malformed encoded words.  It degrades to replacement characters, never raises.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from syncd.domain.addrlist import split_addresses
from syncd.domain.encoded_words import decode_bytes, decode_words, strip_controls
from syncd.domain.limits import (
    MAX_ADDRESS_CHARS,
    MAX_ADDRESSES,
    MAX_FIELD_BYTES,
    MAX_FIELD_REPEATS,
    MAX_HEADER_BYTES,
    MAX_NAME_CHARS,
    MAX_REFERENCES,
    clip,
)

__all__ = [
    "WANTED",
    "AddressList",
    "HeaderSection",
    "decode_bytes",
    "decode_words",
    "parse_addresses",
    "parse_date",
    "parse_message_ids",
    "read_header_section",
    "split_header_section",
]

# Fields capture uses; anything else is never decoded.
WANTED = frozenset(
    {
        "message-id",
        "subject",
        "date",
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "references",
        "in-reply-to",
        "list-id",
        "list-unsubscribe",
        "precedence",
        "auto-submitted",
        "x-autoreply",
        "x-autorespond",
        "return-path",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
    }
)
_ADDRESS_FIELDS = frozenset({"from", "sender", "to", "cc", "bcc", "return-path"})
_MSGID = re.compile(r"<([^<>\s]+)>")

# One pass in C over the header section picks out only the wanted fields, folded
# continuation lines included; the dozens of Received/DKIM lines are never split in Python.
# Linear: anchored at line starts, and every quantifier is followed by a character it
# cannot match ("[ \t]*" by ":", "[^\r\n]*" by a line end), so nothing is retried.  The
# continuation lines are matched possessively ("*+"): a plain "*" makes the engine keep
# a backtracking frame per folded line, 25 MB for 100,000 of them.
_WANTED_FIELD = re.compile(
    rb"^(" + b"|".join(re.escape(n.encode()) for n in sorted(WANTED)) + rb")[ \t]*:[ \t]*"
    rb"([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*+)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(slots=True)
class HeaderSection:
    """The wanted fields of a header section, and what the caps cut from it."""

    fields: dict[str, list[str]]
    cuts: list[str] = field(default_factory=list)


class AddressList(list[tuple[str, str]]):
    """[(display name, address)], with counts of what was left out."""

    dropped: int = 0  # over the cap on addresses per message
    too_long: int = 0  # longer than any deliverable address: kept for the decision, never stored


def header_end(raw: bytes, limit: int = MAX_HEADER_BYTES) -> int:
    """Length of the header section (up to the blank line), or -1 if none within ``limit``."""
    at = raw.find(b"\r\n\r\n", 0, limit + 4)
    if at >= 0:
        return at
    return raw.find(b"\n\n", 0, limit + 2)


def _cut_utf8(value: bytes, limit: int) -> bytes:
    """``value`` cut to ``limit`` bytes without splitting a UTF-8 sequence (which would
    turn the whole value into Latin-1 mojibake)."""
    value = value[:limit]
    for back in range(1, min(4, len(value)) + 1):
        byte = value[-back]
        if byte < 0x80:
            break
        if byte >= 0xC0:  # a lead byte: keep its sequence only if complete
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return value if back >= needed else value[:-back]
    return value


def _cut_field(name: str, value: bytes) -> bytes:
    """A field over MAX_FIELD_BYTES, cut where its structure allows."""
    if name in _ADDRESS_FIELDS:
        # Whole addresses only: half an address can look like a different, valid one.
        comma = value.rfind(b",", 0, MAX_FIELD_BYTES)
        if comma > 0:
            return value[:comma]
        # One huge mailbox: keep it up to the end of its last whole token, never a
        # "<x@acme.c" cut from "<x@acme.com>" or "<x@acme.community>".
        edge = max(value.rfind(b">", 0, MAX_FIELD_BYTES) + 1, value.rfind(b" ", 0, MAX_FIELD_BYTES))
        return value[: max(edge, 0)]
    if name == "references":
        # The root and the nearest ancestors are what threading needs; the middle is history.
        # A half id at either seam loses its "<" or ">" and is skipped by parse_message_ids.
        head = value[: MAX_FIELD_BYTES // 4]
        return head + b" " + value[-(MAX_FIELD_BYTES - len(head) - 1) :]
    return _cut_utf8(value, MAX_FIELD_BYTES)


def read_header_section(raw: bytes) -> HeaderSection:
    """Unfold and split a header section into {lower-case name: [values]}, within the caps.

    Only fields in WANTED are kept.  Values are decoded from raw bytes (UTF-8 with
    a Latin-1 fallback), control characters removed, but encoded words are left for
    ``decode_words``.  Reads at most MAX_HEADER_BYTES, MAX_FIELD_REPEATS occurrences of a
    field and MAX_FIELD_BYTES of each; ``cuts`` says what was left out.
    """
    end = header_end(raw)
    section = raw[: end if end >= 0 else MAX_HEADER_BYTES]
    out = HeaderSection({})
    if end < 0 and len(raw) > MAX_HEADER_BYTES:
        out.cuts.append(f"header section read up to {MAX_HEADER_BYTES} bytes")
    skipped: dict[str, int] = {}
    for raw_name, value in _WANTED_FIELD.findall(section):
        name = raw_name.lower().decode("ascii")
        values = out.fields.setdefault(name, [])
        if len(values) >= MAX_FIELD_REPEATS:
            skipped[name] = skipped.get(name, 0) + 1
            continue
        if b"\n" in value:
            # Unfolding: the value's only line breaks are folds (the pattern above admits
            # "\r" only before "\n"), so dropping them all is exact, and costs no list of
            # pieces the way a regex substitution over 100,000 folds does.
            value = value.replace(b"\r", b"").replace(b"\n", b"")
        if len(value) > MAX_FIELD_BYTES:
            out.cuts.append(f"{name}: {len(value)} bytes cut to {MAX_FIELD_BYTES}")
            value = _cut_field(name, value)
        values.append(strip_controls(decode_bytes(value.strip())))
    out.cuts.extend(
        f"{name}: {count} more occurrences past {MAX_FIELD_REPEATS} ignored"
        for name, count in skipped.items()
    )
    return out


def split_header_section(raw: bytes) -> dict[str, list[str]]:
    """The wanted fields of ``raw``'s header section (see ``read_header_section``)."""
    return read_header_section(raw).fields


def parse_addresses(values: Iterable[str], limit: int = MAX_ADDRESSES) -> AddressList:
    """Address headers to [(display name, address)] with names decoded, at most ``limit``.

    Names are decoded only after splitting: an encoded word may hide a comma.  The
    parser is ours (see ``addrlist``): one pass per value, no regex, no recursion.
    """
    out = AddressList()
    for value in values:
        for name, addr in split_addresses(value):
            if len(out) >= limit:
                out.dropped += 1
                continue
            # Kept, though no mail system delivers to it: the capture decision must still see
            # an over-long sender as an outsider.  The store leaves it out (domain/bounds.py).
            if len(addr) > MAX_ADDRESS_CHARS:
                out.too_long += 1
            out.append((clip(decode_words(name).strip(), MAX_NAME_CHARS), addr))
    return out


def parse_message_ids(value: str | None) -> list[str]:
    """Message-IDs in a field, at most MAX_REFERENCES: the first (the thread's root) and the last."""
    if not value:
        return []
    found = _MSGID.findall(value)
    if len(found) > MAX_REFERENCES:
        found = found[:1] + found[-(MAX_REFERENCES - 1) :]
    if found:
        return found
    bare = value.strip()
    return [bare] if bare and " " not in bare else []


_MONTHS = {
    m: n
    for n, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_RFC5322_DATE = re.compile(
    r"^\s*(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"\s*([+-])(\d{2})(\d{2})\b"
)


def _fast_date(value: str) -> datetime | None:
    """The RFC 5322 form nearly all mail uses, without the stdlib's general parser."""
    found = _RFC5322_DATE.match(value)
    if found is None:
        return None
    day, mon, year, hour, minute, second, sign, off_h, off_m = found.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    try:
        local = datetime(
            int(year), month, int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC
        )
    except ValueError:
        return None
    offset = timedelta(hours=int(off_h), minutes=int(off_m))
    return local - offset if sign == "+" else local + offset


# No date is longer than this; a longer value is junk and not worth the general parser.
_MAX_DATE_CHARS = 200


def parse_date(value: str | None) -> datetime | None:
    """RFC 5322 date to aware UTC; None when missing or unparseable."""
    if not value or len(value) > _MAX_DATE_CHARS:
        return None
    fast = _fast_date(value)
    if fast is not None:
        return fast
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": the sender did not know its zone; RFC 5322 means UTC
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
