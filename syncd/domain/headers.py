"""Decoding of raw RFC 5322 header sections.

We split headers ourselves instead of running ``email.parser`` on every message:
capture needs a dozen fields, and the stdlib parser is the slowest step of a
backfill.  Everything here tolerates broken input: unknown charsets, raw 8-bit
bytes, malformed encoded words.  It degrades to replacement characters, never raises.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

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
_UNFOLD = re.compile(rb"\r?\n(?=[ \t])")
_MSGID = re.compile(r"<([^<>\s]+)>")


def decode_bytes(raw: bytes, charset: str | None = "utf-8") -> str:
    """Bytes to text with a declared charset, falling back to UTF-8, then Latin-1."""
    for cs in (charset, "utf-8"):
        if not cs:
            continue
        try:
            return raw.decode(cs)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return raw.decode("latin-1")


# One pass in C over the header section picks out only the wanted fields, folded
# continuation lines included; the dozens of Received/DKIM lines are never split in Python.
_WANTED_FIELD = re.compile(
    rb"^(" + b"|".join(re.escape(n.encode()) for n in sorted(WANTED)) + rb")[ \t]*:[ \t]*"
    rb"([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)",
    re.IGNORECASE | re.MULTILINE,
)


def split_header_section(raw: bytes) -> dict[str, list[str]]:
    """Unfold and split a header section into {lower-case name: [values]}.

    Only fields in WANTED are kept.  Values are decoded from raw bytes (UTF-8 with
    a Latin-1 fallback) but encoded words are left for ``decode_words``.
    """
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    section = raw if end < 0 else raw[:end]
    out: dict[str, list[str]] = {}
    for name, value in _WANTED_FIELD.findall(section):
        if b"\n" in value:
            value = _UNFOLD.sub(b"", value)
        out.setdefault(name.lower().decode("ascii"), []).append(decode_bytes(value.strip()))
    return out


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; unknown charsets and bad encodings degrade, never raise."""
    if "=?" not in value:
        return value
    try:
        parts = email.header.decode_header(value)
    except (ValueError, LookupError, AssertionError, email.errors.HeaderParseError):
        return value
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_bytes(chunk, charset))
    return "".join(out)


# "Name <local@domain>" or "local@domain": what nearly every address header holds.
_SIMPLE_ADDRESS = re.compile(
    r"""^\s*(?:([^"<>,;:\\()@]*?)\s*<([^<>\s,;:"()\\]+@[^<>\s,;:"()\\]+)>|([^<>\s,;:"()\\]+@[^<>\s,;:"()\\]+))\s*$"""
)
_NEEDS_FULL_PARSER = re.compile(r'["(\\;:]')


def _simple_addresses(value: str) -> list[tuple[str, str]] | None:
    """The common forms without the stdlib's character-by-character parser; None if unusual."""
    if _NEEDS_FULL_PARSER.search(value):
        return None
    out: list[tuple[str, str]] = []
    for part in value.split(","):
        if not part.strip():
            continue
        found = _SIMPLE_ADDRESS.match(part)
        if found is None:
            return None
        if found.group(2):
            # An unquoted name is a phrase of words: runs of white space mean one space.
            out.append((" ".join((found.group(1) or "").split()), found.group(2)))
        else:
            out.append(("", found.group(3)))
    return out


def parse_addresses(values: Iterable[str]) -> list[tuple[str, str]]:
    """Address headers to [(display name, address)] with names decoded.

    Names are decoded only after splitting: an encoded word may hide a comma.
    """
    pairs: list[tuple[str, str]] = []
    for value in values:
        simple = _simple_addresses(value)
        pairs.extend(simple if simple is not None else email.utils.getaddresses([value]))
    return [(decode_words(name).strip(), addr) for name, addr in pairs if addr]


def parse_message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    found = _MSGID.findall(value)
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


def parse_date(value: str | None) -> datetime | None:
    """RFC 5322 date to aware UTC; None when missing or unparseable."""
    if not value:
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
