from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.addresses import (
    domain_and_parents,
    is_free_mail,
    is_internal,
    normalize_address,
    registrable_domain,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Wile@ACME.com", "wile@acme.com"),
        (" <wile@acme.com.> ", "wile@acme.com"),
        ("jo@xn--mller-kva.de", "jo@müller.de"),
        ("not an address", None),
        ("@acme.com", None),
        ("wile@", None),
        ("wile@localhost", "wile@localhost"),
        ("wile@intranet", None),
    ],
)
def test_normalize_address(raw: str, expected: str | None) -> None:
    assert normalize_address(raw) == expected


def test_registrable_domain_uses_the_public_suffix_list() -> None:
    assert registrable_domain("mail.acme.co.uk") == "acme.co.uk"
    assert registrable_domain("acme.com") == "acme.com"
    assert registrable_domain("co.uk") is None
    assert domain_and_parents("a.b.acme.co.uk") == ["a.b.acme.co.uk", "b.acme.co.uk", "acme.co.uk"]
    assert domain_and_parents("co.uk") == []


def test_free_mail_and_internal() -> None:
    assert is_free_mail("gmail.com") and is_free_mail("yahoo.co.uk")
    assert not is_free_mail("acme.com")
    internal = frozenset({"example.com"})
    assert is_internal("a@example.com", internal) and is_internal("a@eu.example.com", internal)
    assert not is_internal("a@example.com.evil.io", internal)


_local = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-",
    min_size=1,
    max_size=20,
)
_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


@given(
    _local, st.lists(_label, min_size=1, max_size=3), st.sampled_from(["com", "co.uk", "de", "io"])
)
def test_normalization_is_idempotent_and_case_blind(
    local: str, labels: list[str], tld: str
) -> None:
    address = f"{local}@{'.'.join(labels)}.{tld}"
    once = normalize_address(address)
    assert once is not None
    assert normalize_address(once) == once
    assert normalize_address(address.upper()) == once
    assert once == once.lower()


@given(
    st.from_regex(r"[a-z][a-z.+]{0,8}", fullmatch=True),
    st.sampled_from(["gmail.com", "googlemail.com", "acme.com", "mail.acme.com"]),
)
def test_every_spelling_of_a_mailbox_is_in_its_domain_spellings(local: str, domain: str) -> None:
    """The store looks a match key's records up by the domains its spellings use: every
    address whose match key falls on a domain is written with one of that domain's spellings."""
    from syncd.domain.addresses import domain_of, domain_spellings, match_key

    address = f"{local}@{domain}"
    assert domain in domain_spellings(domain_of(match_key(address)))


def test_gmail_and_googlemail_are_one_mailbox() -> None:
    from syncd.domain.addresses import domain_spellings

    assert domain_spellings("gmail.com") == ["gmail.com", "googlemail.com"]
    assert domain_spellings("acme.com") == ["acme.com"]


def test_the_public_suffix_list_is_parsed_once_however_many_threads_ask_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    import time

    from syncd.domain import addresses

    made: list[object] = []

    class Slow:
        def __init__(self) -> None:
            time.sleep(0.05)  # the daemon's eight workers all ask while the first parses
            made.append(self)

    monkeypatch.setattr(addresses, "PublicSuffixList", Slow)
    monkeypatch.setattr(addresses, "_PSL", [])
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(addresses._psl())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and got == made * 8
