"""A forgotten person is redacted from a new message's subject and snippet before they are
cut, so a name the cut splits in two cannot survive as its first half."""

from __future__ import annotations

from syncd.connectors.base import FetchedMessage
from syncd.domain.limits import MAX_SUBJECT_CHARS
from syncd.domain.matching import Directory
from syncd.domain.privacy import REDACTED, Suppressions, address_digest
from syncd.domain.snippet import SNIPPET_MAX
from syncd.engine.imap.pipeline import Policy, process
from syncd.store.capture import CapturedMessage
from tests.mail import make_message

SECRET = b"s" * 32
NAME = "Zora Quill"


def _directory() -> Directory:
    directory = Directory()
    directory.add_contact("wile@acme.com", 1, 1)
    directory.suppressions = Suppressions({address_digest(SECRET, "zora@quill.io")}, SECRET)
    return directory


def test_a_name_split_by_the_subject_and_snippet_cuts_is_redacted() -> None:
    # "Zora" ends just before each cut and "Quill" starts after it.
    subject = "s" * (MAX_SUBJECT_CHARS - 8) + f" {NAME} again"
    body = " ".join(["word"] * ((SNIPPET_MAX - 10) // 5)) + f" {NAME} wrote this\r\n"
    raw = make_message(
        cc=f"{NAME} <zora@quill.io>", subject=subject, body=body, message_id="<c1@acme.com>"
    )
    fetched = FetchedMessage(1, len(raw), None, raw, False)
    policy = Policy("alice@example.com", frozenset({"example.com"}), keep="snippet")

    captured = process(fetched, policy, _directory())

    assert isinstance(captured, CapturedMessage)
    for text in (captured.subject, captured.snippet or ""):
        assert "Zora" not in text and "Quil" not in text, text[-40:]
    # The marker may be cut in its turn; the name never is.
    assert REDACTED[:7] in captured.subject
    assert captured.snippet is not None and captured.snippet.startswith("word word")
    # Without anyone forgotten the same message is cut the same way as before.
    plain = process(fetched, policy, Directory())
    assert isinstance(plain, CapturedMessage) and "Zora" in plain.subject
    assert plain.snippet is not None and "Zora" in plain.snippet
