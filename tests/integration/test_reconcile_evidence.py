"""Suggestions an attacker cannot steer, tasks filed under the right customer, and every owner
of an ambiguous domain shown to the admin: real Dovecot, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from tests.conftest import World
from tests.mail import make_message

pytestmark = pytest.mark.dovecot

CUSTOMERS = """\
customer,domains,contact_name,contact_email
Acme Corp,acme.com,Wile Coyote,wile@acme.com
Beta Ltd,beta.io,,
Shared One,shared.io,,
Shared Two,shared.io,,
"""
MON_9 = datetime(2026, 3, 2, 8, tzinfo=UTC)


def _queue(world: World) -> dict[str, dict[str, Any]]:
    return {e["address"]: e for e in json.loads(world.cli("reconcile", "list", "--json").stdout)}


def _setup(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})


def test_a_thread_joined_by_forged_references_is_not_auto_assigned(world: World) -> None:
    _setup(world)
    deliver = world.deliver
    deliver("alice", make_message(message_id="<w1@acme.com>", subject="Renewal"))
    deliver(
        "alice",
        make_message(
            sender="alice@example.com", to="wile@acme.com", subject="Re: Renewal",
            message_id="<r1@example.com>", in_reply_to="<w1@acme.com>",
            references="<w1@acme.com>",
        ),
        folder="Sent",
    )  # fmt: skip
    # Anyone can copy Acme's Message-IDs into their own headers.
    deliver(
        "alice",
        make_message(
            sender="Eve <eve@evil.dev>", subject="Re: Renewal", message_id="<e1@evil.dev>",
            in_reply_to="<r1@example.com>", references="<w1@acme.com> <r1@example.com>",
        ),
    )  # fmt: skip
    # A stranger our rep wrote to in the same thread: that is evidence we produced.
    deliver(
        "alice",
        make_message(
            sender="alice@example.com", to="wile@acme.com", cc="Sam <sam@startup.dev>",
            subject="Re: Renewal", message_id="<r2@example.com>",
            in_reply_to="<w1@acme.com>", references="<w1@acme.com>",
        ),
        folder="Sent",
    )  # fmt: skip
    world.cli("sync")
    queue = _queue(world)
    eve = queue["eve@evil.dev"]["suggestion"]
    assert eve["customer"] == "Acme Corp" and eve["confidence"] < 0.8
    assert "References" in eve["reason"] and "check before assigning" in eve["reason"]
    assert queue["sam@startup.dev"]["suggestion"]["confidence"] >= 0.8
    out = world.cli("reconcile", "accept").stdout
    assert "eve@evil.dev" not in out and "sam@startup.dev -> Acme Corp" in out
    assert "eve@evil.dev" in _queue(world)


def test_a_task_for_a_non_contact_sender_is_filed_under_their_domains_customer(
    world: World,
) -> None:
    _setup(world)
    # Bob (Beta's domain, not a contact) writes with Acme's contact in copy; Acme has the
    # lower id, and the record is linked to both.
    world.deliver(
        "alice",
        make_message(
            sender="Bob Beta <bob@beta.io>", cc="Wile Coyote <wile@acme.com>",
            subject="Joint offer", message_id="<b1@beta.io>", date=MON_9,
        ),
    )  # fmt: skip
    # A shared.io sender: two customers own the domain; the record is linked by hand to
    # Shared Two only, so the task goes there and nowhere unrelated.
    world.deliver(
        "alice",
        make_message(
            sender="Sue <sue@shared.io>", cc="Wile Coyote <wile@acme.com>",
            subject="Shared offer", message_id="<s1@shared.io>", date=MON_9,
        ),
    )  # fmt: skip
    with time_machine.travel(MON_9 + timedelta(hours=1), tick=False):
        world.cli("sync")
    shared = {r["message_id"]: r["id"] for r in world.records()}["s1@shared.io"]
    world.cli("records", "link", str(shared), "--customer", "Shared Two")
    with time_machine.travel(MON_9 + timedelta(days=2), tick=False):
        world.cli("sync")
    tasks = json.loads(world.cli("tasks", "list", "--json").stdout)
    filed = {t["title"]: t["customer"] for t in tasks}
    assert filed == {
        "Reply to Bob Beta: Joint offer": "Beta Ltd",
        "Reply to Sue: Shared offer": "Shared Two",
    }


def test_an_ambiguous_domain_lists_every_owner(world: World) -> None:
    _setup(world)
    world.deliver("alice", make_message(sender="x@shared.io", message_id="<s1@x>"))
    world.cli("sync")
    entry = _queue(world)["x@shared.io"]
    assert [c["name"] for c in entry["candidates"]] == ["Shared One", "Shared Two"]
    assert all(isinstance(c["id"], int) for c in entry["candidates"])
    assert "Shared One, Shared Two" in entry["suggestion"]["reason"]
    world.runner.env = {"COLUMNS": "400"}
    table = world.cli("reconcile", "list").stdout
    assert "Shared One (id" in table and "Shared Two (id" in table
