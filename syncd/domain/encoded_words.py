"""Header text: raw bytes to str, and RFC 2047 encoded words, in one linear pass.

The stdlib's ``email.header.decode_header`` runs a lazy regex per line that rescans
the rest of the line from every ``=?`` that does not close; a subject of unclosed
openers costs it time quadratic in the line.  Here each ``=?`` costs a bounded look
at its charset, and once no ``?=`` is left in the value, scanning stops.
"""

from __future__ import annotations

import binascii
import re

# RFC 2047 limits an encoded word to 75 characters; real charset names are short.
_MAX_CHARSET = 40
_WHITESPACE = frozenset(" \t\r\n")
# Control characters carry no meaning in a header and some stores refuse them (NUL).
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


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


def strip_controls(text: str) -> str:
    """``text`` without C0 controls (tab, CR and LF kept) and DEL."""
    return text.translate(_CONTROLS)


def _payload(encoding: str, text: str) -> bytes | None:
    """The bytes of an encoded word's text; None if they cannot be recovered."""
    data = text.encode("utf-8", "surrogateescape")
    if encoding == "q":
        return binascii.a2b_qp(data, header=True)  # "_" is a space in headers
    data = _NOT_BASE64.sub(b"", data)
    if len(data) % 4 == 1:  # a lone sextet holds no whole byte
        data = data[:-1]
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except binascii.Error:
        return None


class _Scanner:
    """Encoded words of one value, left to right; every character is looked at a bounded
    number of times (the next "?=" is remembered, never searched for twice)."""

    def __init__(self, value: str) -> None:
        self.value = value
        self._close = -1  # the first "?=" at or after self._close_from, or -1: none left
        self._close_from = -1

    def _next_close(self, start: int) -> int:
        if self._close_from < 0 or (0 <= self._close < start):
            self._close = self.value.find("?=", start)
            self._close_from = start
        return self._close if self._close >= start else -1

    def word(self, at: int) -> tuple[int, str, bytes] | None:
        """The encoded word at ``value[at:]`` ("=?"): (end, charset, bytes), or None."""
        value = self.value
        q1 = value.find("?", at + 2, at + 3 + _MAX_CHARSET)
        if q1 < 0 or value[q1 + 1 : q1 + 2] not in ("q", "Q", "b", "B"):
            return None
        if value[q1 + 2 : q1 + 3] != "?":
            return None
        charset = value[at + 2 : q1]
        if not charset or any(c in _WHITESPACE for c in charset):
            return None
        close = self._next_close(q1 + 3)
        if close < 0:
            return None
        payload = _payload(value[q1 + 1].lower(), value[q1 + 3 : close])
        if payload is None:
            return None
        # RFC 2231 adds a language: "utf-8*en".
        return close + 2, charset.split("*", 1)[0].strip().lower(), payload


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; unknown charsets and bad encodings degrade, never raise.

    Adjacent words in one charset are joined before decoding (a multi-byte character may
    be split over two), and the white space between encoded words is dropped (6.2).
    Control characters are removed from the result.
    """
    if "=?" not in value:
        return strip_controls(value)
    scanner = _Scanner(value)
    out: list[str] = []
    pending: list[bytes] = []  # consecutive encoded words in one charset
    charset = ""
    pos = 0

    def flush() -> None:
        if pending:
            out.append(decode_bytes(b"".join(pending), charset))
            pending.clear()

    while True:
        at = value.find("=?", pos)
        if at < 0:
            break
        word = scanner.word(at)
        if word is None:  # not an encoded word: literal text, "=?" included
            flush()
            out.append(value[pos : at + 2])
            pos = at + 2
            continue
        end, word_charset, data = word
        between = value[pos:at]
        if not (pending and not between.strip()):
            flush()
            out.append(between)
        elif word_charset != charset:
            flush()  # white space between encoded words is dropped all the same
        pending.append(data)
        charset = word_charset
        pos = end
    flush()
    out.append(value[pos:])
    return strip_controls("".join(out))
