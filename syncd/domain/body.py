"""The readable text of a message body, for snippets.

Bodies may be truncated (we fetch only the first part of large ones), so every
decoder here tolerates a cut in the middle of a line, a base64 quantum or a
MIME part.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import quopri
import re
from email.message import Message
from email.policy import compat32
from typing import Any

from syncd.domain.encoded_words import decode_bytes
from syncd.domain.html_text import html_to_text
from syncd.domain.limits import MAX_BODY_BYTES

__all__ = ["body_text", "charset_of", "decode_text", "decode_transfer", "html_to_text"]

_CHARSET = re.compile(r"""charset\s*=\s*"?([^";\s]+)""", re.IGNORECASE)
# Multipart containers the stdlib MIME parser is given at most: it recurses once per level
# of nesting (1,000 levels raise RecursionError), and real mail nests a handful.
MAX_MULTIPARTS = 32
_BOUNDARY = re.compile(rb"boundary[ \t]*=", re.IGNORECASE)
# The stdlib splits MIME parameters in time quadratic in the header's length (it recounts
# the quotes before every ";"), so it sees at most this much of any MIME part header.
# Real Content-Type and Content-Disposition values are far shorter; a boundary is <= 70.
MAX_MIME_HEADER_CHARS = 1_000


class _BoundedMessage(Message):
    """A MIME part whose header values are read up to MAX_MIME_HEADER_CHARS."""

    def get(self, name: str, failobj: Any = None) -> Any:
        value = super().get(name, failobj)
        if isinstance(value, str) and len(value) > MAX_MIME_HEADER_CHARS:
            return value[:MAX_MIME_HEADER_CHARS]
        return value


def decode_transfer(payload: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "base64":
        compact = re.sub(rb"[^A-Za-z0-9+/]", b"", payload)
        compact = compact[
            : len(compact) - len(compact) % 4
        ]  # truncated fetch: drop the partial quantum
        try:
            return base64.b64decode(compact)
        except (binascii.Error, ValueError):
            return b""
    if encoding == "quoted-printable":
        return quopri.decodestring(payload)
    return payload


def charset_of(content_type: str) -> str | None:
    found = _CHARSET.search(content_type)
    return found.group(1).strip("'\"") if found else None


def decode_text(raw: bytes, charset: str | None) -> str:
    return decode_bytes(raw, charset or "utf-8")


def _body_of(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[at + len(sep) :]
    return b""


def _few_multiparts(raw: bytes) -> bytes:
    """``raw`` cut before its (MAX_MULTIPARTS + 1)-th multipart boundary parameter."""
    for n, found in enumerate(_BOUNDARY.finditer(raw)):
        if n == MAX_MULTIPARTS:
            return raw[: raw.rfind(b"\n", 0, found.start()) + 1]
    return raw


def _first_text_part(msg: Message) -> tuple[str, Message] | None:
    plain: Message | None = None
    rich: Message | None = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        disposition = (part.get("Content-Disposition") or "").lower()
        if disposition.startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = part
        elif ctype == "text/html" and rich is None:
            rich = part
    if plain is not None:
        return "plain", plain
    if rich is not None:
        return "html", rich
    return None


def body_text(raw_message: bytes, content_type: str, transfer_encoding: str) -> str:
    """Best readable text of a (possibly truncated) message, "" if there is none.

    Reads at most MAX_BODY_BYTES of the message and MAX_MULTIPARTS multipart containers;
    the text part is nearly always near the top, and what follows is cut as a truncated
    fetch would be.  Linear in what it reads.
    """
    # NUL has no place in text and PostgreSQL refuses it.
    return _strip_nul(_text_of(raw_message[:MAX_BODY_BYTES], content_type, transfer_encoding))


def _text_of(raw_message: bytes, content_type: str, transfer_encoding: str) -> str:
    ctype = content_type.split(";", 1)[0].strip().lower() or "text/plain"
    if ctype.startswith("text/"):
        # The common single-part case, without the cost of a MIME parse.
        data = decode_transfer(_body_of(raw_message), transfer_encoding)
        text = decode_text(data, charset_of(content_type))
        return html_to_text(text) if ctype == "text/html" else text
    if not ctype.startswith("multipart/"):
        return ""
    parser = email.parser.BytesParser(_class=_BoundedMessage, policy=compat32)
    msg = parser.parsebytes(_few_multiparts(raw_message))
    found = _first_text_part(msg)
    if found is None:
        return ""
    kind, part = found
    # decode=True undoes the transfer encoding leniently (bad base64 padding included)
    # and returns the raw bytes of 8-bit parts, so the charset is ours to apply.
    payload: object = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    text = decode_text(payload, part.get_content_charset())
    return html_to_text(text) if kind == "html" else text


def _strip_nul(text: str) -> str:
    return text.replace("\x00", "") if "\x00" in text else text
