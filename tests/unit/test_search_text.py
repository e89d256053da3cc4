"""The one tokeniser both search engines store and query: folding, CJK pairs, queries."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.search_text import (
    MAX_TERMS,
    MAX_TOKEN,
    MAX_TOKENS,
    Query,
    QueryError,
    Term,
    fts5_match,
    highlights,
    index_terms,
    is_cjk,
    matches,
    needs_check,
    occurrences,
    parse_query,
    tokens,
    tsquery,
    tsvector,
)
from syncd.store.search_pg import _counted

HAN = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
KANA = st.characters(min_codepoint=0x30A1, max_codepoint=0x30FA)
CJK_RUNS = st.text(st.one_of(HAN, HANGUL, KANA), min_size=1, max_size=30)


def test_accents_case_and_width_fold() -> None:
    assert tokens("Café MÜLLER naïve Ｆｕｌｌ") == ["cafe", "muller", "naive", "full"]
    assert tokens("Straße") == ["strasse"]


def test_chinese_is_cut_into_overlapping_pairs() -> None:
    assert tokens("关于报价的问题") == ["关于", "于报", "报价", "价的", "的问", "问题"]
    assert tokens("价") == ["价"]


def test_mixed_scripts_in_one_text() -> None:
    assert tokens("Acme的报价v2，東京タワー 한국어!") == [
        "acme", "的报", "报价", "v2", "東京", "京タ", "タワ", "ワー", "한국", "국어",
    ]  # fmt: skip


def test_kana_voicing_marks_are_not_accents() -> None:
    assert tokens("が") != tokens("か")
    assert tokens("ガイド") == ["ガイ", "イド"]


def test_addresses_split_into_words() -> None:
    assert tokens("Jane.Doe@acme-corp.com") == ["jane", "doe", "acme", "corp", "com"]


@given(st.text(max_size=300))
def test_tokens_are_folded_words_without_spaces(text: str) -> None:
    found = tokens(text)
    assert len(found) <= MAX_TOKENS
    for token in found:
        assert token and len(token) <= MAX_TOKEN
        assert not any(ch.isspace() for ch in token)
        assert all(ch.isalnum() for ch in token)
        if not is_cjk(token):
            assert tokens(token) == [token]  # a stored token reads back as itself


@given(st.text(alphabet="aeiouAEIOUéèêëÉàâäÀçñÑøüÜ", min_size=1, max_size=20))
def test_an_accented_word_is_found_without_its_accents(word: str) -> None:
    import unicodedata

    plain = "".join(
        c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c)
    ).lower()
    plain = plain.replace("ø", "ø")  # ø has no decomposition: it stays itself
    assert tokens(word) == tokens(plain)


@given(CJK_RUNS, st.data())
def test_every_two_character_word_of_a_cjk_run_is_a_token(run: str, data: st.DataObject) -> None:
    found = set(tokens(run))
    if len(run) == 1:
        assert found == {run}
        return
    start = data.draw(st.integers(0, len(run) - 2))
    assert run[start : start + 2] in found
    query = parse_query(run[start : start + 2])
    assert query.include == (Term((run[start : start + 2],)),)


def test_a_record_is_bounded() -> None:
    long = "word " * 100_000 + "報價" * 100_000
    started = time.thread_time()
    terms = index_terms([long, long])
    assert len(terms.split()) == MAX_TOKENS
    assert time.thread_time() - started < 2
    assert len(tokens("x" * 10_000)) == 1 and len(tokens("x" * 10_000)[0]) == MAX_TOKEN


def test_queries_words_phrases_prefixes_exclusions() -> None:
    query = parse_query('Café "price list" quot* -spam -"out of office" 报价单 报')
    assert query.include == (
        Term(("cafe",)),
        Term(("price", "list")),
        Term(("quot",), prefix=True),
        Term(("报价", "价单")),
        Term(("报",), prefix=True),
    )
    assert query.exclude == (Term(("spam",)), Term(("out", "of", "office")))
    # The index finds each term's tokens; phrases and excluded phrases are left to matches.
    assert fts5_match(query) == (
        '(("cafe") AND ("price" AND "list") AND ("quot"*) AND ("报价" AND "价单") AND ("报"*)) '
        'NOT (("spam"))'
    )
    assert tsquery(query) == (
        "('cafe') & ('price' & 'list') & ('quot':*) & ('报价' & '价单') & ('报':*) & !('spam')"
    )
    assert needs_check(query) and not needs_check(parse_query("cafe quot* -spam"))


def test_an_address_in_a_query_is_a_phrase() -> None:
    assert parse_query("jane.doe@acme.com").include == (Term(("jane", "doe", "acme", "com")),)


@pytest.mark.parametrize("text", ["", "   ", "-spam", '""', "!!! ...", '-"a b"', "price q*"])
def test_a_query_with_nothing_to_find_is_refused(text: str) -> None:
    with pytest.raises(QueryError):
        parse_query(text)


@given(st.text(max_size=2_000))
def test_any_query_parses_bounded_or_is_refused(text: str) -> None:
    try:
        query = parse_query(text)
    except QueryError:
        return
    assert len(query.include) >= 1 and len(query.include) + len(query.exclude) <= MAX_TERMS
    for term in (*query.include, *query.exclude):
        assert term.tokens and all(t.isalnum() for t in term.tokens)
    # Only quotes the literals' own syntax puts there: tokens carry none.
    single = [t for t in query.exclude if len(t.tokens) == 1]
    every = [t for term in (*query.include, *single) for t in term.tokens]
    assert fts5_match(query).count('"') == 2 * len(every)
    assert "\\" not in tsquery(query)


def test_tsvector_holds_each_token_once_without_positions() -> None:
    assert tsvector("price list price") == "'price' 'list'"
    assert tsvector("") == ""


def test_matches_checks_phrases_in_order() -> None:
    terms = index_terms(["Re: the price list", "jane.doe@acme.com 关于报价"]).split()
    assert matches(terms, parse_query('"price list" jane.doe@acme.com 报价 acm*'))
    assert matches(terms, parse_query('"list jane" price'))  # one text runs on into the next
    assert not matches(terms, parse_query('"list price"'))
    assert not matches(terms, parse_query('price -"the price"'))
    assert matches(terms, parse_query('price -"price the"'))
    assert matches(terms, parse_query("price.lis*")) and not matches(terms, parse_query("doe.jane"))


words = st.lists(st.sampled_from(["a", "b", "ab", "abc", "c"]), max_size=8)


@given(words, st.lists(st.sampled_from(["a", "b", "ab", "abc", "c"]), min_size=1, max_size=3),
       st.booleans())  # fmt: skip
def test_occurrences_are_the_windows_of_the_tokens(
    found: list[str], phrase: list[str], prefix: bool
) -> None:
    term = Term(tuple(phrase), prefix)
    windows = [found[i : i + len(phrase)] for i in range(len(found) - len(phrase) + 1)]
    expected = sum(
        w[:-1] == phrase[:-1] and (w[-1].startswith(phrase[-1]) if prefix else w[-1] == phrase[-1])
        for w in windows
    )
    assert occurrences(found, term) == expected
    assert matches(found, Query((term,))) == (expected > 0)


def test_highlights_mark_the_matches() -> None:
    query = parse_query("报价 cafe quot*")
    found = highlights(["Re: 关于报价的问题", "", "Lunch at the Café: the quote is ready"], query)
    assert found == ["Re: 关于**报价**的问题", "Lunch at the **Café**: the **quote** is ready"]


def test_highlights_cut_long_texts_into_fragments() -> None:
    text = "filler " * 40 + "the price is right " + "filler " * 40
    (fragment,) = highlights([text], Query((Term(("price",)),)))
    assert "**price**" in fragment and fragment.startswith("…") and fragment.endswith("…")
    assert len(fragment) < 120


_ASCII = st.text(alphabet=st.sampled_from("abcXYZ019_-. '\n" + "A" * 3), min_size=0, max_size=300)


@given(
    text=_ASCII,
    picks=st.lists(st.text(alphabet="abcxyz019", min_size=3, max_size=6), min_size=1, max_size=3),
    prefix=st.booleans(),
    long_word=st.booleans(),
)
def test_ascii_highlights_are_those_of_the_general_path(
    text: str, picks: list[str], prefix: bool, long_word: bool
) -> None:
    from syncd.domain import search_text

    if long_word:
        text += " " + "Ab1" * 20  # a word past MAX_TOKEN characters
        picks.append(("ab1" * 20)[:MAX_TOKEN])
    query = parse_query(" ".join(picks) + ("*" if prefix else ""))
    fast = search_text._ascii_spans(text, query)
    assert fast == search_text._spans(text, query)
    sample = "Meet Customer 1000 re: customers_list and CUSTOMER-1000, café"[:-6]
    both = parse_query("customer 1000 custo*")
    assert search_text._ascii_spans(sample, both) == search_text._spans(sample, both)
    assert len(search_text._ascii_spans(sample, both)) == 5


@given(
    st.lists(st.sampled_from(["ab", "abc", "abcd", "b", "报价", "价"]), min_size=1, max_size=12),
    st.lists(st.sampled_from(["ab", "abc*", "b", "报价", "价*", "abc"]), min_size=1, max_size=3),
)
def test_a_lines_counts_are_its_tokens_counts(line: list[str], words: list[str]) -> None:
    """PostgreSQL's search ranks a line by counting its tokens in the text (no split): the
    same counts as ``occurrences`` on the split tokens."""
    query = parse_query(" ".join(words))
    expected = tuple(occurrences(line, term) for term in query.include)
    assert _counted(" ".join(line), query) == expected
