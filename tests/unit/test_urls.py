"""URLs as outputs show them: no query value, user name or password survives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.urls import shown_url
from syncd.webhooks.policy import SNIPPET_BYTES, snippet


def test_query_values_and_user_info_are_hidden() -> None:
    assert (
        shown_url("https://bob:pw@crm.example:8443/h/x?token=abc&v=2#frag")
        == "https://***@crm.example:8443/h/x?token=***&v=***"
    )
    assert shown_url("https://crm.example/hooks") == "https://crm.example/hooks"
    assert shown_url("http://[::1]:9/h?abc") == "http://[::1]:9/h?***"
    assert shown_url("https://crm.example:notaport/h?t=x") == "***"


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~%", min_size=6, max_size=30)


@given(user=_WORD, password=_WORD, token=_WORD, name=st.sampled_from(["token", "key", "sig"]))
def test_no_secret_part_of_a_url_is_shown(user: str, password: str, token: str, name: str) -> None:
    secret = "Z" + token  # no host, path or parameter name contains a capital Z
    shown = shown_url(f"https://{user}Z:{password}Z@crm.example/path?{name}={secret}&{secret}")
    assert "Z" not in shown
    assert shown.startswith("https://***@crm.example/path?")


def test_a_snippet_never_ends_with_a_word_cut_in_two() -> None:
    echo = b'{"from": "' + b"x" * (SNIPPET_BYTES - 20) + b'", "to": "jane.doe@acme.example"}'
    text = snippet(echo)
    assert text.endswith("...") and "jane" not in text and "@" not in text
    assert snippet(b"short answer") == "short answer"
