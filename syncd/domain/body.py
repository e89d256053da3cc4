"""The readable text of a message body, for snippets.

Bodies may be truncated (we fetch only the first part of large ones), so every
decoder here tolerates a cut in the middle of a line, a base64 quantum or a
MIME part.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import html
import quopri
import re
from email.message import Message
from email.policy import compat32

from syncd.domain.headers import decode_bytes

_HTML_CUT = re.compile(
    r"<blockquote|class=\"?gmail_quote|id=\"?divRplyFwdMsg|id=\"?appendonsend", re.IGNORECASE
)
_HTML_DROP = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_BREAK = re.compile(r"<(br|/p|/div|/tr|/li|/h\d)\b[^>]*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"<[^>]*>", re.DOTALL)
_CHARSET = re.compile(r"""charset\s*=\s*"?([^";\s]+)""", re.IGNORECASE)


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


def html_to_text(markup: str) -> str:
    cut = _HTML_CUT.search(markup)
    if cut:
        markup = markup[: cut.start()]
    markup = _HTML_DROP.sub(" ", markup)
    markup = _HTML_BREAK.sub("\n", markup)
    return html.unescape(_HTML_TAG.sub(" ", markup))


def _body_of(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[at + len(sep) :]
    return b""


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
    """Best readable text of a (possibly truncated) message, "" if there is none."""
    ctype = content_type.split(";", 1)[0].strip().lower() or "text/plain"
    if ctype.startswith("text/"):
        # The common single-part case, without the cost of a MIME parse.
        data = decode_transfer(_body_of(raw_message), transfer_encoding)
        text = decode_text(data, charset_of(content_type))
        return html_to_text(text) if ctype == "text/html" else text
    if not ctype.startswith("multipart/"):
        return ""
    msg = email.parser.BytesParser(policy=compat32).parsebytes(raw_message)
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
