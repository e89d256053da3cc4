"""HTML to readable text in one linear pass.

The regexes this replaces rescanned the rest of the document from every unclosed
``<style`` (10,000 of them cost 2.6 s per message).  Here the scan moves forward only:
each tag is read once, and the search for the end of a style, script, head or comment
either finds it (and the scan jumps past it) or, if there is none, ends the document:
an unclosed ``<style>`` swallows the rest, as in a browser, so no opener is looked
at twice.
"""

from __future__ import annotations

import html
import re

# Where quoted history starts in the HTML of Gmail, Outlook and Apple Mail replies.
# Literal alternatives: the engine tries a few fixed strings per position, nothing nests.
_HTML_CUT = re.compile(
    r"<blockquote|class=\"?gmail_quote|id=\"?divRplyFwdMsg|id=\"?appendonsend", re.IGNORECASE
)
# Elements whose content is never text.
_DROPPED = ("style", "script", "head")
_CLOSERS = {name: re.compile(f"</{name}", re.IGNORECASE) for name in _DROPPED}
# Ends of elements that end a line.
_BREAKS = frozenset({"br", "/p", "/div", "/tr", "/li", "/h1", "/h2", "/h3", "/h4", "/h5", "/h6"})
# "<" that starts a tag; a "<" before anything else is text ("a < b").
_TAG_START = re.compile(r"<[A-Za-z/!?]")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/!?-")
# A numeric character reference too long to be a character: int() of thousands of digits is
# slow (CPython refuses more than 4,300) and the result is out of range anyway.
_HUGE_CHARREF = re.compile(r"&#(?:[xX][0-9a-fA-F]{8,}|[0-9]{10,});?")


def _tag_name(markup: str, at: int) -> str:
    """The lower-case name of the tag opening at ``markup[at]`` ("/p" for a closing p)."""
    end = at + 1
    limit = min(len(markup), at + 12)  # no tag name we act on is longer
    while end < limit and markup[end] in _NAME_CHARS:
        end += 1
    return markup[at + 1 : end].lower()


def _drop_until_close(markup: str, at: int, name: str, missing: set[str]) -> int:
    """Position after ``</name ...>`` following ``at``; len(markup) if the element never closes.

    ``missing`` remembers closers already known to be absent from the rest of the
    document, so a thousand unclosed openers cost one search, not a thousand.
    """
    if name in missing:
        return len(markup) if name != "head" else at
    found = _CLOSERS[name].search(markup, at)
    if found is None:
        missing.add(name)
        # A head may legally be left unclosed; its content (title, meta) is dropped
        # tag by tag instead.  Style and script content is code: the rest goes.
        return len(markup) if name != "head" else at
    close = markup.find(">", found.end())
    return len(markup) if close < 0 else close + 1


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: no style, script or head, cut at quoted history,
    line breaks at the end of blocks, entities unescaped."""
    cut = _HTML_CUT.search(markup)
    if cut:
        markup = markup[: cut.start()]
    out: list[str] = []
    missing: set[str] = set()
    pos, end = 0, len(markup)
    while pos < end:
        start = _TAG_START.search(markup, pos)
        if start is None:
            out.append(markup[pos:])
            break
        at = start.start()
        out.append(markup[pos:at])
        name = _tag_name(markup, at)
        if name.startswith("!--"):
            close = markup.find("-->", at + 4)
            pos = end if close < 0 else close + 3
            out.append(" ")
            continue
        close = markup.find(">", at + 1)
        if close < 0:
            break  # a tag cut off by a truncated fetch: nothing readable follows
        pos = close + 1
        if name in _DROPPED:
            pos = max(pos, _drop_until_close(markup, pos, name, missing))
            out.append(" ")
        else:
            out.append("\n" if name in _BREAKS else " ")
    text = "".join(out)
    if "&#" in text:
        text = _HUGE_CHARREF.sub("\ufffd", text)
    return html.unescape(text)
