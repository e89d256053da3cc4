"""Reconciliation, exclusions, explain, manual links, privacy and forget: real Dovecot, real CLI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import World
from tests.mail import make_message

pytestmark = pytest.mark.dovecot

CUSTOMERS = """\
customer,domains,contact_name,contact_email
Acme Corp,acme.com,Wile Coyote,wile@acme.com
Initech,initech.io,,
Shared One,shared.io,,
Shared Two,shared.io,,
"""


def _mail(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS)
    deliver = world.deliver
    # A stranger in a thread with Acme's contact: the thread suggests Acme.
    deliver(
        "alice",
        make_message(
            sender="Sam <sam@startup.dev>", message_id="<t1@startup.dev>", subject="Intro"
        ),
    )
    deliver(
        "alice",
        make_message(
            sender="alice@example.com",
            to="sam@startup.dev",
            cc="wile@acme.com",
            message_id="<t2@example.com>",
            in_reply_to="<t1@startup.dev>",
            references="<t1@startup.dev>",
            subject="Re: Intro",
        ),
        folder="Sent",
    )
    deliver(
        "alice",
        make_message(
            sender="Sam <sam+news@startup.dev>", message_id="<t3@startup.dev>", subject="Again"
        ),
    )
    deliver(
        "alice",
        make_message(sender='"Peter | Initech" <peter@initech-labs.com>', message_id="<p1@x>"),
    )
    deliver("alice", make_message(sender="Hans <hans@acme.de>", message_id="<h1@x>"))
    deliver("alice", make_message(sender="Someone <someone@gmail.com>", message_id="<g1@x>"))
    deliver("alice", make_message(sender="x@shared.io", message_id="<s1@x>"))
    world.cli("sync")


def _queue(world: World) -> dict[str, dict[str, object]]:
    return {e["address"]: e for e in json.loads(world.cli("reconcile", "list", "--json").stdout)}


def test_queue_lists_counts_mailboxes_and_suggestions(world: World) -> None:
    _mail(world)
    queue = _queue(world)
    assert next(iter(queue)) == "sam@startup.dev"  # most seen first; plus-addressing folded in
    sam = queue["sam@startup.dev"]
    assert sam["count"] == 3 and sam["mailboxes"] == ["alice"] and sam["name"] == "Sam"
    assert sam["suggestion"]["customer"] == "Acme Corp" and "thread" in sam["suggestion"]["reason"]
    assert queue["peter@initech-labs.com"]["suggestion"]["customer"] == "Initech"
    assert queue["hans@acme.de"]["suggestion"]["customer"] == "Acme Corp"
    assert queue["someone@gmail.com"]["suggestion"] is None
    assert queue["x@shared.io"]["suggestion"]["confidence"] == 0.3
    assert "wile@acme.com" not in queue


def test_assign_links_past_records_and_threads_idempotently(world: World) -> None:
    _mail(world)
    out = world.cli("reconcile", "assign", "sam@startup.dev", "--customer", "Acme Corp")
    assert "2 record(s) linked" in out.stdout  # t1 and t3; t2 was already on Acme through Wile
    acme = {r["message_id"] for r in world.records("--customer", "Acme Corp")}
    assert {"t1@startup.dev", "t2@example.com", "t3@startup.dev"} <= acme
    assert "sam@startup.dev" not in _queue(world)
    again = world.cli("reconcile", "assign", "sam@startup.dev", "--customer", "Acme Corp")
    assert "0 record(s) linked" in again.stdout
    # New mail from the assigned address is matched by contact from now on.
    world.deliver("alice", make_message(sender="sam@startup.dev", message_id="<t4@startup.dev>"))
    world.cli("sync")
    (new,) = [r for r in world.records() if r["message_id"] == "t4@startup.dev"]
    assert new["customers"][0]["link"] == "contact"
    actions = [e["action"] for e in json.loads(world.cli("audit", "--json").stdout)]
    assert actions.count("assign") == 1


def test_create_customer_owns_the_domain_and_refuses_free_mail(world: World) -> None:
    _mail(world)
    world.cli("reconcile", "create-customer", "hans@acme.de", "--name", "Acme Germany")
    assert [c["name"] for c in world.records("--customer", "Acme Germany")[0]["customers"]] == [
        "Acme Germany"
    ]
    customers = {
        c["name"]: c["domains"] for c in json.loads(world.cli("customers", "list", "--json").stdout)
    }
    assert customers["Acme Germany"] == ["acme.de"]
    refused = world.cli(
        "reconcile", "create-customer", "someone@gmail.com", "--name", "Gmail Inc", expect=2
    )
    assert "free-mail" in refused.stderr and "Traceback" not in refused.output


def test_ignore_drops_entries_and_future_mail(world: World) -> None:
    _mail(world)
    out = world.cli("reconcile", "ignore", "@shared.io")
    assert "added, 1 queue entr" in out.stdout
    assert "x@shared.io" not in _queue(world)
    assert "already excluded, 0" in world.cli("ignore", "add", "@shared.io").stdout
    world.deliver("alice", make_message(sender="y@eu.shared.io", message_id="<s2@x>"))
    out = world.cli("sync")
    assert "0 captured, 1 skipped" in out.stdout  # its only external party is excluded
    assert "@shared.io  (cli)" in world.cli("ignore", "list").stdout
    world.write_config(
        capture='exclude = ["@gmail.com"]'
    )  # config exclusions hide queue entries too
    assert "someone@gmail.com" not in _queue(world)
    assert "@gmail.com  (config)" in world.cli("ignore", "list").stdout
    assert "removed" in world.cli("ignore", "remove", "@shared.io").stdout


def test_accept_applies_confident_suggestions(world: World) -> None:
    _mail(world)
    dry = world.cli("reconcile", "accept", "--min-confidence", "0.65", "--dry-run")
    assert (
        "sam@startup.dev -> Acme Corp" in dry.stdout
        and "2 suggestion(s) would be applied" in dry.stdout
    )
    assert "sam@startup.dev" in _queue(world)
    world.cli("reconcile", "accept", "--min-confidence", "0.65")
    queue = _queue(world)
    assert "sam@startup.dev" not in queue and "peter@initech-labs.com" not in queue
    assert "hans@acme.de" in queue  # 0.6 is below the bar


def test_explain_and_manual_links_survive_resync(world: World) -> None:
    _mail(world)
    records = {r["message_id"]: r for r in world.records()}
    shared = records["s1@x"]["id"]
    explained = json.loads(world.cli("records", "explain", str(shared), "--json").stdout)
    reasons = {p["address"]: p["reason"] for p in explained["participants"]}
    assert reasons == {"x@shared.io": "ambiguous-domain", "alice@example.com": "internal"}
    text = world.cli("records", "explain", str(records["t2@example.com"]["id"])).stdout
    assert "wile@acme.com: contact match" in text and "sam@startup.dev: no match" in text
    assert (
        "someone@gmail.com: free-mail"
        in world.cli("records", "explain", str(records["g1@x"]["id"])).stdout
    )

    world.cli("records", "link", str(shared), "--customer", "Shared Two")
    thread = records["t2@example.com"]["id"]
    world.cli("records", "unlink", str(thread), "--customer", "Acme Corp")
    assert "unlinked from Acme Corp" in world.cli("records", "explain", str(thread)).stdout
    world.cli(
        "reconcile", "assign", "sam@startup.dev", "--customer", "Acme Corp"
    )  # would relink the thread
    world.cli("sync")
    after = {r["message_id"]: r for r in world.records()}
    assert after["s1@x"]["customers"] == [{"id": 4, "name": "Shared Two", "link": "manual"}]
    assert after["t2@example.com"]["customers"] == []


def test_forget_erases_a_person(world: World) -> None:
    _mail(world)
    world.cli("contacts", "add", "sam@startup.dev", "--customer", "Initech", "--name", "Sam")
    out = world.cli("forget", "sam@startup.dev", "--yes")
    # t1 and t3 had only Sam outside; t2 keeps Wile (a contact) and stays.
    assert "removed 1 contact(s), 3 participant row(s), 2 record(s), 1 queue entr" in out.stdout
    ids = {r["message_id"] for r in world.records()}
    assert "t2@example.com" in ids and "t1@startup.dev" not in ids
    assert all("sam" not in p["address"] for r in world.records() for p in r["participants"])
    audit = world.cli("audit").stdout
    assert "forget" in audit and "sam@startup.dev" not in audit


def test_privacy_policies(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS)
    world.write_config(capture='store = "full"\nonly_matched = true')
    world.deliver(
        "alice",
        make_message(sender="wile@acme.com", message_id="<m1@x>", body="Full text\r\nhere\r\n"),
    )
    world.deliver(
        "alice",
        make_message(sender="nobody@unknown.dev", message_id="<m2@x>", subject="Secret plan"),
    )
    world.deliver("alice", make_message(sender="nobody@unknown.dev", message_id="<m3@x>"))
    out = world.cli("sync")
    assert "1 captured, 2 skipped" in out.stdout
    (kept,) = world.records()
    assert kept["body"] == "Full text\nhere" and kept["snippet"] == "Full text here"
    queue = json.loads(world.cli("reconcile", "list", "--json").stdout)
    assert [(e["address"], e["count"]) for e in queue] == [("nobody@unknown.dev", 2)]
    assert "Secret plan" not in world.cli("reconcile", "list").stdout
    world.cli("sync")
    assert json.loads(world.cli("reconcile", "list", "--json").stdout)[0]["count"] == 2

    world.write_config(capture='store = "metadata"')
    world.deliver("alice", make_message(sender="wile@acme.com", message_id="<m4@x>"))
    world.cli("sync")
    meta = next(r for r in world.records() if r["message_id"] == "m4@x")
    assert meta["snippet"] is None and meta["body"] is None and meta["subject"]
