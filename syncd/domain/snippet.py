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


# New text sits at the top; past this much, what follows is history or attachments.
_SCAN_LIMIT = 16_000


def new_text(body: str) -> str:
    """Body text without quoted replies, history or signature, whitespace collapsed."""
    body = body[:_SCAN_LIMIT]
    found = _HISTORY.search(body)
    cut = found.start() if found else len(body)
    if (
        "On " in body
    ):  # the wrapped form is rare and its pattern the slow one: look only when it can match
        wrapped = _WRAPPED_ON.search(body, 0, cut + 400)
        if wrapped:
            cut = min(cut, wrapped.start())
    kept = [line for line in body[:cut].splitlines() if not line.lstrip().startswith(">")]
    return " ".join(" ".join(kept).split())


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
