"""Hostile values in mail never poison a batch: real Dovecot, SQLite and PostgreSQL.

Each hostile message sits between good ones in one batch.  Before values were bounded,
PostgreSQL refused the whole batch (value too long, NUL byte) and both engines refused a
lone surrogate: the cursor never moved and the folder was stuck for good.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy import select

from syncd.domain.bounds import ADDRESS_MAX, HASHED_ID_PREFIX, bound_id
from syncd.domain.limits import MAX_NAME_CHARS
from syncd.engine.imap import pipeline
from syncd.schema.tables import (
    folder_cursors,
    participants,
    provenance,
    quarantine,
    records,
    unmatched_addresses,
    unmatched_sightings,
)
from syncd.store import database
from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot

LONG_ID = "x" * 1189 + "@acme.com"  # 1,200 characters with its angle brackets
LONG_REF = "r" * 1189 + "@acme.com"
LONG_ADDRESS = "e" * 390 + "@acme.com"  # 399 characters: longer than any column holds


def _b64_word(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset, 'surrogatepass')).decode()}?="


def _hostile_folder() -> list[tuple[str, bytes]]:
    """(subject, raw) in delivery order: good mail around every hostile kind."""
    return [
        ("Before", make_message(message_id="<before@acme.com>", subject="Before")),
        ("Long id", make_message(message_id=f"<{LONG_ID}>", subject="Long id")),
        (
            "Re: Long id",
            make_message(
                message_id="<reply@acme.com>",
                subject="Re: Long id",
                in_reply_to=f"<{LONG_ID}>",
                references=f"<{LONG_ID}>",
            ),
        ),
        (
            "Long reference",
            make_message(
                message_id="<longref@acme.com>",
                subject="Long reference",
                references=f"<{LONG_REF}>",
            ),
        ),
        (
            "Long sender",
            make_message(
                message_id="<longfrom@acme.com>",
                subject="Long sender",
                sender=f"{'N' * 400} <{LONG_ADDRESS}>",
                cc=f"{'W' * 400} <wile@acme.com>",  # a name longer than any name column
            ),
        ),
        (
            # Nobody who can be written back to: the message has no storable outsider.
            "Long sender alone",
            make_message(
                message_id="<longalone@acme.com>",
                subject="Long sender alone",
                sender=f"<{LONG_ADDRESS}>",
            ),
        ),
        (
            "Nul",
            make_message(
                message_id="<nul@acme.com>",
                subject=_b64_word("Nul\x00"),
                sender=_b64_word("Ni\x00l") + " <nul.sender@unknown-startup.com>",
                headers={"Content-Transfer-Encoding": "base64"},
                body=base64.b64encode(b"body with a \x00 byte\r\n").decode() + "\r\n",
            ),
        ),
        (
            "Surrogate",
            make_message(
                message_id="<surrogate@acme.com>",
                # UTF-7 decodes "+2AA-" to a lone surrogate, which no database can store.
                subject="=?utf-7?Q?Surrogate+2AA-?=",
                sender="=?utf-7?Q?Lone+2AA-?= <lone@unknown-startup.com>",
            ),
        ),
        (
            "Bad bytes",  # not UTF-8 at all
            make_message(message_id="<bytes@acme.com>", subject="Bad BYTES").replace(
                b"BYTES", b"\xff\xfe\xc0\x80"
            ),
        ),
        ("After", make_message(message_id="<after@acme.com>", subject="After")),
    ]


def _snapshot(world: World) -> dict[str, Any]:
    engine = database.open_database(world.db_url)
    with engine.connect() as conn:
        out = {
            "records": {r.subject: dict(r._mapping) for r in conn.execute(select(records))},
            "participants": sorted(
                (r.record_id, r.address, r.name, r.role) for r in conn.execute(select(participants))
            ),
            "sources": sorted(conn.execute(select(provenance.c.record_id, provenance.c.uid)).all()),
            "cursor": conn.scalar(select(folder_cursors.c.last_uid)),
            "quarantine": [
                (int(uid), reason)
                for uid, reason in conn.execute(
                    select(quarantine.c.item, quarantine.c.reason).order_by(quarantine.c.id)
                )
            ],
            "queue": sorted(conn.execute(select(unmatched_addresses)).all()),
            "sightings": sorted(conn.execute(select(unmatched_sightings)).all()),
        }
    engine.dispose()
    return out


def test_hostile_values_are_bounded_and_the_folder_moves_on(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    folder = _hostile_folder()
    for _, raw in folder:
        world.deliver("alice", raw)

    out = world.cli("sync")
    captured = len(folder) - 1
    assert f"alice: {captured} captured, 1 skipped, 0 quarantined" in out.stdout, out.stdout

    seen = _snapshot(world)
    stored = seen["records"]
    # Every message, hostile or not, became a record, and the cursor passed all of them.
    assert {"Before", "After", "Long id", "Re: Long id", "Long reference", "Long sender"} <= set(
        stored
    )
    assert seen["cursor"] == len(folder)
    assert len(seen["sources"]) == captured
    assert "Long sender alone" not in stored
    assert seen["quarantine"] == []

    # A long id is stored as its hash, and every mention of it maps to the same value:
    # the reply joins the long-id message's thread.
    long_id = stored["Long id"]
    assert long_id["message_id"] == bound_id(LONG_ID)
    assert long_id["message_id"].startswith(HASHED_ID_PREFIX)
    assert long_id["key"] == f"email:{long_id['message_id']}"
    assert stored["Re: Long id"]["thread_key"] == long_id["thread_key"] == long_id["message_id"]
    assert stored["Long reference"]["thread_key"] == bound_id(LONG_REF)

    # An address no mail system can deliver to is not a participant; the rest of the
    # message (its Cc) still is, and the address never reaches the reconciliation queue.
    long_sender = stored["Long sender"]["id"]
    assert stored["Long sender"]["direction"] == "inbound"  # an outsider wrote it
    people = {(a, role) for rid, a, _, role in seen["participants"] if rid == long_sender}
    assert ("wile@acme.com", "cc") in people
    assert ("W" * MAX_NAME_CHARS, "cc") in {
        (n, r) for rid, _, n, r in seen["participants"] if rid == long_sender
    }
    explained = json.loads(world.cli("records", "explain", str(long_sender), "--json").stdout)
    assert [p["address"] for p in explained["participants"]] == [
        "alice@example.com",
        "wile@acme.com",
    ]
    assert [link["customer"] for link in explained["links"]] == ["Acme Corp"]
    assert all(len(a) <= ADDRESS_MAX for _, a, _, _ in seen["participants"])
    assert all(len(name) <= 300 for _, _, name, _ in seen["participants"])
    assert all(LONG_ADDRESS not in str(row) for row in seen["queue"] + seen["sightings"])

    # NUL bytes and lone surrogates are gone from every stored text.
    nul = next(r for s, r in stored.items() if s.startswith("Nul"))
    assert nul["subject"] == "Nul" and "\x00" not in (nul["snippet"] or "")
    surrogate = next(r for s, r in stored.items() if s.startswith("Surrogate"))
    assert surrogate["subject"] == "Surrogate\ufffd"
    bad_bytes = next(r for s, r in stored.items() if s.startswith("Bad "))
    bad_bytes["subject"].encode("utf-8")  # stored as valid text, whatever the bytes were
    names = {a: name for _, a, name, _ in seen["participants"]}
    assert names["nul.sender@unknown-startup.com"] == "Nil"
    assert names["lone@unknown-startup.com"] == "Lone\ufffd"
    queued = {row.address: row.name for row in seen["queue"]}
    assert queued["lone@unknown-startup.com"] == "Lone\ufffd"

    # A second sync changes nothing.
    again = world.cli("sync")
    assert "alice: 0 captured, 0 skipped, 0 quarantined" in again.stdout
    assert _snapshot(world) == seen


def test_a_long_id_is_reidentified_after_uidvalidity_changes(world: World) -> None:
    login = world.rep("alice")
    world.deliver("alice", make_message(message_id=f"<{LONG_ID}>", subject="Long id"))
    world.deliver("alice", make_message(message_id="<short@acme.com>", subject="Short"))
    world.cli("sync")
    before = _snapshot(world)
    world.dovecot.reset_uidvalidity(login)
    world.cli("sync")
    after = _snapshot(world)
    # The same records, attached to the new UIDs: the long id is hashed the same way when
    # the header alone is read for re-identification.
    assert {s: r["id"] for s, r in after["records"].items()} == {
        s: r["id"] for s, r in before["records"].items()
    }
    assert len(after["sources"]) == 2


def test_without_bounds_the_store_split_still_frees_the_folder(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The net under the bounds: with bounding switched off, whatever the database refuses
    is quarantined one message at a time and the good mail around it still commits."""
    monkeypatch.setattr(pipeline, "bounded", lambda msg: msg)
    monkeypatch.setattr(pipeline, "storable_participants", list)
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    folder = _hostile_folder()
    for _, raw in folder:
        world.deliver("alice", raw)

    world.cli("sync")
    seen = _snapshot(world)
    assert {"Before", "After"} <= set(seen["records"])
    assert seen["cursor"] == len(folder)
    held = {uid: reason for uid, reason in seen["quarantine"]}
    stored = {uid for _, uid in seen["sources"]}
    assert stored.isdisjoint(held)
    # Every message but the one with no storable outsider (still stored unbounded here)
    # is either a record or quarantined with the database's reason.
    assert len(stored) + len(held) == len(folder)
    assert held and all(r.startswith("store refused: ") for r in held.values())
    surrogate_uid = next(n for n, (s, _) in enumerate(folder, 1) if s == "Surrogate")
    assert "UnicodeEncodeError" in held[surrogate_uid]  # refused by SQLite and PostgreSQL

    again = world.cli("sync")
    assert "alice: 0 captured, 0 skipped, 0 quarantined" in again.stdout
    assert _snapshot(world) == seen
