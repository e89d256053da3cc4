from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.snippet import SNIPPET_MAX, new_text, snippet


def test_gmail_reply() -> None:
    body = "Sounds good, see you then.\n\nOn Mon, 3 Jun 2024 at 10:00, Wile <wile@acme.com> wrote:\n> Shall we meet?\n"
    assert new_text(body) == "Sounds good, see you then."


def test_wrapped_attribution_and_quotes() -> None:
    body = "Yes.\n> inline quote\nAnd more.\nOn Mon, 3 Jun 2024 at 10:00, Wile Coyote\n<wile@acme.com> wrote:\n> old"
    assert new_text(body) == "Yes. And more."


def test_outlook_blocks_and_signature() -> None:
    assert new_text("Fine.\n\n-----Original Message-----\nFrom: x") == "Fine."
    assert new_text("Fine.\n\nFrom: Wile <w@acme.com>\nSent: Monday\nTo: a") == "Fine."
    assert new_text("Fine.\n-- \nAlice\nSales") == "Fine."
    assert new_text("Gut.\nAm 03.06.2024 um 10:00 schrieb Wile <w@acme.com>:\n> alt") == "Gut."


def test_long_text_is_cut_at_a_word() -> None:
    text = snippet("word " * 300)
    assert len(text) <= SNIPPET_MAX and text.endswith("…") and "wor…" not in text


@given(st.text(max_size=3000))
def test_snippet_is_bounded_and_never_quotes(body: str) -> None:
    text = snippet(body)
    assert len(text) <= SNIPPET_MAX
    assert "\n" not in text
    assert text == text.strip()
