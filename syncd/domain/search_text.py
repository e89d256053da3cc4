"""What search sees of a text, and what a query asks: one tokeniser for both engines.

SQLite FTS5 and PostgreSQL's text search split and fold text differently, and neither cuts
Chinese, Japanese or Korean into words.  So neither engine tokenises: this module turns a
record's text into space-separated tokens (``index_terms``) that both store as they are,
and turns a query into terms (``parse_query``) that both match as they are.  The engines
then agree by construction (tests/integration/test_search_engines.py checks it).

- Folding: NFKC, case folded, Latin/Greek/Cyrillic diacritics dropped (``cafe`` finds
  ``Café``); the Japanese voicing marks are not diacritics and stay (か is not が).
- Words: runs of letters and digits.  A run of CJK characters (Han, Hiragana, Katakana,
  Hangul) becomes its overlapping pairs, 关于报价 -> 关于 于报 报价, so that any word of two
  characters is found without a dictionary; a one-character run is kept as it is.
- Bounded: the text is cut at ``MAX_TEXT`` characters, a record at ``MAX_TOKENS`` tokens and
  a token at ``MAX_TOKEN`` characters, all in linear time.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

MAX_TEXT = 100_000  # characters of one record's text read; the rest is not indexed
MAX_TOKENS = 4_000  # tokens of one record
MAX_TOKEN = 40  # characters of one token (a longer "word" is a hash or a URL's tail)
MAX_QUERY = 1_000  # characters of a query
MAX_TERMS = 16  # words and phrases of a query
# A shorter prefix expands to a large share of the vocabulary, which FTS5 merges whole.
MIN_PREFIX = 3

# Han (with extensions and compatibility ideographs), iteration marks, Hiragana, Katakana
# (with the phonetic extensions), Hangul syllables and jamo.
_CJK = (
    "\u1100-\u11ff\u3005-\u3007\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uf900-\ufaff"
    "\U00020000-\U0003134f"
)
_ASCII_WORD = re.compile(r"[a-z0-9]+")  # after folding, ASCII text has no capitals


# The two patterns with the CJK ranges are compiled at their first use: compiling them takes
# 5 ms, which every command importing the store would pay, though only text that is not
# ASCII needs them.
@cache
def _token() -> re.Pattern[str]:
    # A CJK run takes only the characters Python's Unicode tables call letters (a code
    # point not assigned yet is a separator, as for any other script).
    return re.compile(f"((?:(?=[{_CJK}])\\w)+)|([^\\W_{_CJK}]+)")


@cache
def _cjk() -> re.Pattern[str]:
    return re.compile(f"[{_CJK}]")


# The diacritic blocks only: the marks of Indic scripts are letters' vowels, and the Kana
# voicing marks (U+3099, U+309A) tell two letters apart.
_DIACRITICS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """The text as search compares it: NFKC, case folded, diacritics dropped."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if folded.isascii():
        return folded
    stripped = _DIACRITICS.sub("", unicodedata.normalize("NFD", folded))
    return unicodedata.normalize("NFKC", stripped)


def is_cjk(token: str) -> bool:
    return _cjk().match(token) is not None


def tokens(text: str, limit: int = MAX_TOKENS) -> list[str]:
    """The tokens of a text, in order, at most ``limit``."""
    folded = fold(text[:MAX_TEXT])
    if folded.isascii():  # most mail: no CJK run to cut, one C-level pass
        found = _ASCII_WORD.findall(folded)
        if len(found) > limit:
            del found[limit:]
        return [w if len(w) <= MAX_TOKEN else w[:MAX_TOKEN] for w in found]
    out: list[str] = []
    for run, word in _token().findall(folded):
        if word:
            out.append(word[:MAX_TOKEN])
        elif len(run) == 1:
            out.append(run)
        else:
            out.extend([run[i : i + 2] for i in range(len(run) - 1)])
        if len(out) >= limit:
            del out[limit:]
            break
    return out


def index_terms(parts: list[str]) -> str:
    """What the index stores for a record made of these texts: its tokens, space-separated
    (both engines split it on spaces and nothing else)."""
    found: list[str] = []
    for part in parts:
        if part and len(found) < MAX_TOKENS:
            found.extend(tokens(part, MAX_TOKENS - len(found)))
    return " ".join(found)


class QueryError(ValueError):
    """A query with nothing to look for."""


@dataclass(frozen=True, slots=True)
class Term:
    """One thing to find: a token, or a phrase of tokens in a row; ``prefix``: the last
    token may be the start of a longer one."""

    tokens: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """Every ``include`` term must be there and no ``exclude`` term may be."""

    include: tuple[Term, ...]
    exclude: tuple[Term, ...] = ()

    def words(self) -> frozenset[str]:
        """The tokens to mark in highlights (the last of a prefix term as a prefix)."""
        return frozenset(t for term in self.include for t in term.tokens)

    def prefixes(self) -> frozenset[str]:
        return frozenset(term.tokens[-1] for term in self.include if term.prefix)


# A quoted phrase (the closing quote may be missing), or a run of anything but spaces.
_CHUNK = re.compile(r'(-?)"([^"]*)"?|(-?)(\S+)')


def _term(text: str, *, quoted: bool) -> Term | None:
    prefix = False
    if not quoted and text.endswith("*"):
        text, prefix = text.rstrip("*"), True
    found = tokens(text, MAX_TERMS * 4)
    if not found:
        return None
    if len(found) == 1 and len(found[0]) == 1 and is_cjk(found[0]):
        # One CJK character: every pair it starts (the index holds pairs, not characters).
        prefix = True
    elif prefix and len(found[-1]) < MIN_PREFIX and not is_cjk(found[-1]):
        raise QueryError(f"a prefix needs at least {MIN_PREFIX} letters: {text}*")
    return Term(tuple(found), prefix)


def parse_query(text: str) -> Query:
    """Every word must match; ``"a phrase"`` in a row; ``word*`` a prefix; ``-word`` and
    ``-"a phrase"`` exclude.  A word that folds into several tokens (``jane.doe@acme.com``,
    ``报价单``) is a phrase of them.  Raises QueryError when nothing is left to find."""
    include: list[Term] = []
    exclude: list[Term] = []
    for match in _CHUNK.finditer(text[:MAX_QUERY]):
        if len(include) + len(exclude) >= MAX_TERMS:
            break
        quoted = match.group(2) is not None
        negated = bool(match.group(1) if quoted else match.group(3))
        body = match.group(2) if quoted else match.group(4)
        term = _term(body, quoted=quoted)
        if term is None:
            continue
        (exclude if negated else include).append(term)
    if not include:
        raise QueryError("the query has no word to look for")
    return Query(tuple(dict.fromkeys(include)), tuple(dict.fromkeys(exclude)))


# The indexes hold which tokens a record has, not where (positions would triple the index on
# PostgreSQL): they find the records with every token of the query, and a phrase (a quoted
# phrase, or a word that folds into several tokens) is then checked on those records'
# tokens (``matches``).  A one-token term is exact in the index alone.


def needs_check(query: Query) -> bool:
    """Whether the index's answer must be checked with ``matches`` (a term of several
    tokens: their order is not in the index)."""
    return any(len(term.tokens) > 1 for term in (*query.include, *query.exclude))


def _all(term: Term, engine: str) -> str:
    """A term's tokens, all of them, in FTS5's syntax or as a ``tsquery``."""
    if engine == "fts5":
        quoted = [f'"{t}"' for t in term.tokens]
        prefix, both = "*", " AND "
    else:
        quoted = [f"'{t}'" for t in term.tokens]
        prefix, both = ":*", " & "
    if term.prefix:
        quoted[-1] += prefix
    return "(" + both.join(quoted) + ")"


def _single(terms: tuple[Term, ...]) -> list[Term]:
    return [t for t in terms if len(t.tokens) == 1]


def fts5_match(query: Query) -> str:
    """The query in FTS5's syntax, over tokens stored with the ``ascii`` tokenizer: each
    term's tokens all there; an excluded term of one token absent (one of several tokens
    is left to ``matches``)."""
    found = " AND ".join(_all(t, "fts5") for t in query.include)
    if excluded := _single(query.exclude):
        found = f"({found}) NOT ({' OR '.join(_all(t, 'fts5') for t in excluded)})"
    return found


def tsquery(query: Query) -> str:
    """The same as a PostgreSQL ``tsquery`` literal (read as it is: no parser, no
    dictionary), over the same tokens."""
    parts = [_all(t, "pg") for t in query.include]
    parts += [f"!{_all(t, 'pg')}" for t in _single(query.exclude)]
    return " & ".join(parts)


def tsvector(terms: str) -> str:
    """Stored tokens as a PostgreSQL ``tsvector`` literal: each token once, no positions."""
    return " ".join(f"'{t}'" for t in dict.fromkeys(terms.split()))


def occurrences(found: list[str], term: Term) -> int:
    """How many times a term is in a record's tokens (a phrase: its tokens in a row)."""
    first, last, n = term.tokens[0], term.tokens[-1], len(term.tokens)
    if n == 1:
        if term.prefix:
            return sum(1 for t in found if t.startswith(first))
        return found.count(first)
    head, count, i = list(term.tokens[:-1]), 0, -1
    while True:
        try:
            i = found.index(first, i + 1)
        except ValueError:
            return count
        end = found[i + n - 1] if i + n <= len(found) else None
        if end is not None and (end.startswith(last) if term.prefix else end == last):
            count += found[i : i + n - 1] == head


def matches(found: list[str], query: Query) -> bool:
    """Whether a record's tokens (``index_terms``, split) match the query, phrases in order."""
    return all(occurrences(found, t) for t in query.include) and not any(
        occurrences(found, t) for t in query.exclude
    )


# Highlights -------------------------------------------------------------------------

MARK_OPEN, MARK_CLOSE = "**", "**"
FRAGMENT = 80  # characters around a match
MAX_FRAGMENTS = 3
_WORD = re.compile(r"[^\W_]+")


def _marks(text: str, query: Query) -> list[tuple[int, int]]:
    """Spans of ``text`` where a token of the query is, in order."""
    head = text[:MAX_TEXT]
    spans = _ascii_spans(head, query) if head.isascii() else _spans(head, query)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _ascii_spans(text: str, query: Query) -> list[tuple[int, int]]:
    """``_spans`` of an ASCII text: each word is one token, its lower case (what ``fold``
    and ``tokens`` make of it), found without folding word by word (most of a search's
    time in the API was spent here)."""
    words, prefixes = query.words(), query.prefixes()
    spans: list[tuple[int, int]] = []
    for match in _WORD.finditer(text):
        token = match.group().lower()[:MAX_TOKEN]
        if token in words or any(token.startswith(p) for p in prefixes):
            spans.append(match.span())
            if len(spans) > 50:
                break
    return spans


def _spans(text: str, query: Query) -> list[tuple[int, int]]:
    words, prefixes = query.words(), query.prefixes()
    cjk_words = [w for w in words if is_cjk(w)]
    spans: list[tuple[int, int]] = []
    for match in _WORD.finditer(text):
        word = match.group()
        folded = fold(word)
        if is_cjk(folded) or _cjk().search(folded):
            # Kana and Han keep their length when folded: find each queried pair in place.
            for pair in cjk_words:
                start = folded.find(pair)
                while start != -1 and len(folded) == len(word):
                    spans.append((match.start() + start, match.start() + start + len(pair)))
                    start = folded.find(pair, start + 1)
            continue
        found = tokens(word, 8)
        if any(t in words or any(t.startswith(p) for p in prefixes) for t in found):
            spans.append(match.span())
        if len(spans) > 50:
            break
    return spans


def highlights(texts: list[str], query: Query) -> list[str]:
    """A few fragments of ``texts`` around the matches, each match as ``**match**``."""
    out: list[str] = []
    for text in texts:
        if not text:
            continue
        spans = _marks(text, query)
        i = 0
        while i < len(spans) and len(out) < MAX_FRAGMENTS:
            start = max(0, spans[i][0] - FRAGMENT // 2)
            end = min(len(text), start + FRAGMENT)
            inside = [s for s in spans[i:] if s[1] <= end]
            if not inside:
                inside, end = [spans[i]], spans[i][1]
            pieces: list[str] = ["…" if start > 0 else ""]
            cursor = start
            for s, e in inside:
                pieces += [text[cursor:s], MARK_OPEN, text[s:e], MARK_CLOSE]
                cursor = e
            pieces += [text[cursor:end], "…" if end < len(text) else ""]
            out.append(" ".join("".join(pieces).split()))
            i += len(inside)
        if len(out) >= MAX_FRAGMENTS:
            break
    return out
