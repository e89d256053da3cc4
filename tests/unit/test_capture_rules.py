from __future__ import annotations

import pytest

from syncd.domain.capture import decide
from syncd.domain.matching import Directory, match_address
from syncd.domain.message import parse_message
from syncd.domain.threads import thread_key
from tests.mail import make_message

INTERNAL = frozenset({"example.com"})


def _decide(**kw: object):  # type: ignore[no-untyped-def]
    msg = parse_message(make_message(**kw), internal_date=None)  # type: ignore[arg-type]
    return decide(msg, "alice@example.com", INTERNAL)


def test_direction_and_participants() -> None:
    inbound = _decide(cc="bob@example.com")
    assert inbound.capture and inbound.direction == "inbound"
    assert [(p.address, p.role, p.external) for p in inbound.participants] == [
        ("wile@acme.com", "from", True),
        ("alice@example.com", "to", False),
        ("bob@example.com", "cc", False),
    ]
    outbound = _decide(sender="alice@example.com", to="wile@acme.com")
    assert outbound.capture and outbound.direction == "outbound"


def test_owner_outside_internal_domains_is_still_us() -> None:
    msg = parse_message(
        make_message(sender="alice@gmail.com", to="wile@acme.com"), internal_date=None
    )
    decision = decide(msg, "alice@gmail.com", INTERNAL)
    assert decision.direction == "outbound"


@pytest.mark.parametrize(
    ("headers", "sender", "reason"),
    [
        ({}, "bob@example.com", "internal only"),
        ({"List-Id": "<x.acme.com>"}, None, "List-Id"),
        ({"List-Unsubscribe": "<mailto:x@acme.com>"}, None, "List-Unsubscribe"),
        ({"Precedence": "junk"}, None, "Precedence: junk"),
        ({"Auto-Submitted": "auto-generated"}, None, "Auto-Submitted"),
        ({"Return-Path": "<>"}, None, "bounce"),
        ({}, "noreply@acme.com", "no-reply"),
        ({}, "do-not-reply+x@acme.com", "no-reply"),
        ({}, "MAILER-DAEMON@acme.com", "no-reply"),
    ],
)
def test_skipped_mail(headers: dict[str, str], sender: str | None, reason: str) -> None:
    kw: dict[str, object] = {"headers": headers}
    if sender:
        kw["sender"] = sender
    decision = _decide(**kw)
    assert not decision.capture and reason in decision.reason


def test_auto_submitted_no_is_captured() -> None:
    assert _decide(headers={"Auto-Submitted": "no"}).capture


def _directory() -> Directory:
    d = Directory()
    d.add_domain("acme.com", 1)
    d.add_domain("globex.co.uk", 2)
    d.add_domain("shared.io", 3)
    d.add_domain("shared.io", 4)
    d.add_contact("wile@acme.com", 10, 1)
    d.add_contact("hank@gmail.com", 11, 2)
    d.add_contact("moved@acme.com", 12, 2)
    return d


@pytest.mark.parametrize(
    ("address", "customer", "link", "reason"),
    [
        ("wile@acme.com", 1, "contact", "contact"),
        ("moved@acme.com", 2, "contact", "contact"),  # a contact beats the domain
        ("new@acme.com", 1, "domain", "domain"),
        ("x@eu.mail.acme.com", 1, "domain", "domain"),  # subdomains included
        ("hank@gmail.com", 2, "contact", "contact"),  # free-mail contacts still match
        ("other@gmail.com", None, None, "free-mail"),  # but free-mail never by domain
        ("x@shared.io", None, None, "ambiguous-domain"),
        ("x@co.uk", None, None, "no-match"),
        ("x@globex.co.uk", 2, "domain", "domain"),
        ("x@unknown.com", None, None, "no-match"),
    ],
)
def test_matching(address: str, customer: int | None, link: str | None, reason: str) -> None:
    found = match_address(address, _directory())
    assert (found.customer_id, found.link, found.reason) == (customer, link, reason)


def test_internal_participants_are_never_matched() -> None:
    assert match_address("wile@acme.com", _directory(), external=False).reason == "internal"


def test_threads() -> None:
    known = {"root@x": "root@x", "mid@x": "root@x"}
    assert thread_key("new@x", "mid@x", [], known) == "root@x"
    assert thread_key("new@x", None, ["a@x", "b@x"], {}) == "a@x"
    assert thread_key("new@x", "p@x", [], {}) == "p@x"
    assert thread_key("new@x", None, [], {}) == "new@x"
