"""The pure rules behind forget, thread evidence and task customers."""

from __future__ import annotations

from syncd.domain.followups import speaker_customer
from syncd.domain.matching import Directory, match_address, only_excluded
from syncd.domain.privacy import REDACTED, Redactor, Suppressions, address_digest
from syncd.domain.suggestions import CustomerFacts, suggest


def test_redaction_takes_every_spelling_and_names_only_as_whole_words() -> None:
    r = Redactor.build(["Ann.Lee@x.io", "ann.lee+news@x.io"], ["Ann Lee", "Al", ""])
    text = "ANN LEE <ann.lee@x.io> and ann.lee+news@x.io; Ann Leeway; Al; Annual"
    assert r.redact(text) == f"{REDACTED} <{REDACTED}> and {REDACTED}; Ann Leeway; Al; Annual"
    assert Redactor.build([], []).redact("unchanged") == "unchanged"


def test_suppression_is_keyed_and_matched_before_any_other_rule() -> None:
    secret = b"k" * 32
    directory = Directory()
    directory.add_contact("zoe@acme.com", 1, 1)
    directory.suppressions = Suppressions({address_digest(secret, "zoe@acme.com")}, secret)
    assert address_digest(secret, "zoe@acme.com") != address_digest(b"other", "zoe@acme.com")
    assert "k" * 8 not in repr(directory)  # the key never shows in a repr or a log line
    gone = match_address("zoe+x@acme.com", directory)
    assert gone.reason == "suppressed" and not gone.queued
    assert match_address("zoe@acme.com", directory, external=False).reason == "internal"
    assert match_address("wile@acme.com", directory).reason == "no-match"

    class P:
        external = True

    assert only_excluded([(P(), gone)])


def test_a_thread_joined_by_headers_alone_stays_below_the_accept_default() -> None:
    acme = [CustomerFacts(1, "Acme", ("acme.com",))]
    spoofed = suggest("eve@evil.dev", "Eve", acme, header_thread_customers={1: 3})
    assert spoofed[0].confidence < 0.8 and "References" in spoofed[0].reason
    written_to = suggest("sam@x.dev", "Sam", acme, thread_customers={1: 1})
    assert written_to[0].confidence == 0.95


def test_the_speaker_customer_comes_from_their_domain_never_an_unrelated_link() -> None:
    assert speaker_customer({2}, [1, 2]) == 2
    assert speaker_customer({2}, [1]) == 2
    assert speaker_customer({3, 4}, [1, 4]) == 4
    assert speaker_customer({3, 4}, [4, 3]) == 3  # deterministic: the lowest linked owner
    assert speaker_customer({3, 4}, [1]) is None
    assert speaker_customer(set(), [1]) is None
