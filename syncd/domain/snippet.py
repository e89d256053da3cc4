"""The new text of a message: quoted replies, forwarded history and signatures removed."""

from __future__ import annotations

import re

SNIPPET_MAX = 500

# A line that starts the quoted history of a reply, in the forms mail clients write.
_HISTORY = re.compile(
    r"""^(
        On\ .{1,200}\ wrote:\s*$                      # Gmail, Apple Mail, Thunderbird
      | Am\ .{1,200}\ schrieb\ .{0,100}:\s*$          # German clients
      | Le\ .{1,200}\ a\ écrit\s?:\s*$                # French clients
      | -{2,}\s*Original\ Message\s*-{2,}            # Outlook, Lotus
      | -{2,}\s*Forwarded\ message\s*-{2,}
      | Begin\ forwarded\ message:
      | _{20,}\s*$                                   # Outlook web separator
      | From:\s.+\n(Sent|Date):\s                    # Outlook header block
      | -- \s*$                                      # signature delimiter (RFC 3676)
    )""",
    re.VERBOSE | re.MULTILINE | re.IGNORECASE,
)
# "On Tue, 3 Jan 2023 ... \n Alice <a@x> wrote:" split over two lines by wrapping.
_WRAPPED_ON = re.compile(r"^On\ [^\n]{1,200}\n[^\n]{0,200}wrote:\s*$", re.MULTILINE)
_SPACE = re.compile(r"\s+")


def new_text(body: str) -> str:
    """Body text without quoted replies, history or signature, whitespace collapsed."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    cut = len(body)
    for pattern in (_HISTORY, _WRAPPED_ON):
        found = pattern.search(body)
        if found:
            cut = min(cut, found.start())
    kept = [line for line in body[:cut].split("\n") if not line.lstrip().startswith(">")]
    return _SPACE.sub(" ", " ".join(kept)).strip()


def snippet(body: str, limit: int = SNIPPET_MAX) -> str:
    """At most ``limit`` characters of new text, cut at a word boundary when one is near."""
    text = new_text(body)
    if len(text) <= limit:
        return text
    clipped = text[: limit - 1]
    space = clipped.rfind(" ")
    if space > limit * 0.8:
        clipped = clipped[:space]
    return clipped.rstrip() + "…"
