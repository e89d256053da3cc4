"""`syncd records search` end to end: real Dovecot, `syncd sync`, SQLite and PostgreSQL.

Mail in Chinese, Japanese, Korean and accented Latin is captured through the real path
(the index is written in the capture's transaction), then found through the CLI as a
user types: words, phrases, prefixes, exclusions and filters; forget and `db reindex`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.header import Header
from typing import Any

import pytest

from syncd.store import database, search_index
from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot

JUNE = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)


def _encoded(subject: str) -> str:
    return Header(subject, "utf-8").encode()


MAIL = [
    # (message id, sender, subject, body, day of June 2024)
    ("cjk", "王伟 <wile@acme.com>", "关于报价的问题", "请发送最新的报价单。谢谢", 3),
    ("jp", "Road Runner <road.runner@acme.com>", "お見積りについて", "東京タワーの件です", 4),
    ("ko", "Hank Scorpio <hank@globex.co.uk>", "한국어 견적 요청", "가격표를 보내주세요", 5),
    ("cafe", "José Núñez <jose@acme.com>", "Café meeting", "The price list for 2025 attached", 6),
    ("list", "Wile Coyote <wile@acme.com>", "Re: list", "What is the list price now?", 7),
    ("quote", "Hank Scorpio <hank@globex.co.uk>", "Quotation", "Our quotation, as agreed", 8),
    ("spam", "Hank Scorpio <hank@globex.co.uk>", "Quotation spam", "Buy now: quotation", 9),
]


@pytest.fixture
def searched(world: World) -> World:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    for mid, sender, subject, body, day in MAIL:
        world.deliver(
            "alice",
            make_message(
                sender=sender,
                subject=_encoded(subject),
                message_id=f"<{mid}@t>",
                date=JUNE.replace(day=day),
                body=body + "\r\n",
            ),
        )
    world.write_config(capture='store = "snippet"')
    world.cli("sync")
    return world


def _search(world: World, *args: str) -> list[dict[str, Any]]:
    return json.loads(world.cli("records", "search", *args, "--json").stdout)  # type: ignore[no-any-return]


def _ids(world: World, *args: str) -> set[str]:
    return {row["message_id"].strip("<>").split("@")[0] for row in _search(world, *args)}


def test_chinese_japanese_korean_are_found_by_any_two_characters(searched: World) -> None:
    assert _ids(searched, "报价") == {"cjk"}  # in the subject and the body
    assert _ids(searched, "报价单") == {"cjk"}
    assert _ids(searched, "見積") == {"jp"}
    assert _ids(searched, "タワー") == {"jp"}
    assert _ids(searched, "견적") == {"ko"}
    assert _ids(searched, "王伟") == {"cjk"}  # a participant's name
    assert _ids(searched, "报告") == set()
    (found,) = _search(searched, "报价")
    assert "关于**报价**的问题" in found["highlights"]
    assert found["score"] > 0 and found["subject"] == "关于报价的问题"


def test_accents_case_phrases_prefixes_and_exclusions(searched: World) -> None:
    assert _ids(searched, "cafe") == {"cafe"}
    assert _ids(searched, "NUNEZ") == {"cafe"}
    assert _ids(searched, "núñez café") == {"cafe"}
    assert _ids(searched, "price list") == {"cafe", "list"}
    assert _ids(searched, '"price list"') == {"cafe"}
    assert _ids(searched, '"list price"') == {"list"}
    assert _ids(searched, "quot*") == {"quote", "spam"}
    assert _ids(searched, "quotation -spam") == {"quote"}
    assert _ids(searched, "jose@acme.com") == {"cafe"}
    # The table shows the fragments with the matches marked.
    table = searched.cli("records", "search", "--", "quotation", "-spam").stdout
    assert "**Quotation**" in table and "spam" not in table


def test_filters_narrow_the_matches(searched: World) -> None:
    everything = "com"  # every sender's and rep's address
    assert len(_ids(searched, everything)) == len(MAIL)
    assert _ids(searched, everything, "--customer", "Globex") == {"ko", "quote", "spam"}
    assert _ids(searched, everything, "--contact", "wile@acme.com") == {"cjk", "list"}
    assert _ids(searched, everything, "--since", "2024-06-08") == {"quote", "spam"}
    assert _ids(searched, everything, "--until", "2024-06-04") == {"cjk", "jp"}
    assert _ids(searched, everything, "--kind", "meeting") == set()
    assert _ids(searched, everything, "--kind", "email", "--kind", "call") == {m[0] for m in MAIL}
    assert _ids(searched, everything, "--owner", "nobody@example.com") == set()
    ranked = _search(searched, everything)
    order = [(-r["score"], r["occurred_at"][::-1]) for r in ranked]
    assert [(r["score"], r["occurred_at"]) for r in ranked] == sorted(
        ((r["score"], r["occurred_at"]) for r in ranked), key=lambda p: (-p[0], _neg(p[1]))
    ), order
    assert _search(searched, everything, "--limit", "3") == ranked[:3]
    nl = searched.cli("records", "search", "报价", "--nl").stdout.splitlines()
    assert [json.loads(line)["subject"] for line in nl] == ["关于报价的问题"]


def _neg(iso: str) -> float:
    return -datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_bad_queries_are_usage_errors(searched: World) -> None:
    result = searched.cli("records", "search", "--", "-spam", expect=2)
    assert "no word to look for" in result.output and "Traceback" not in result.output
    searched.cli("records", "search", "x", "--contact", "not-an-address", expect=2)
    searched.cli("records", "search", "x", "--customer", "Nobody Inc", expect=2)


def test_forget_leaves_no_search_finding_the_person(searched: World) -> None:
    searched.deliver(
        "alice",
        make_message(
            sender="Wile Coyote <wile@acme.com>", cc="José Núñez <jose@acme.com>",
            subject="Renewal for José Núñez", message_id="<kept@t>", body="Dear José, hello\r\n",
        ),
    )  # fmt: skip
    searched.cli("sync")
    assert _ids(searched, "jose@acme.com") == {"cafe", "kept"}
    assert _ids(searched, "nunez") == {"cafe", "kept"}
    searched.cli("forget", "jose@acme.com", "--yes")
    for query in ("jose@acme.com", '"José Núñez"', "núñez", '"jose acme"', "cafe"):
        assert _search(searched, query) == [], query
    # The record kept (another customer's contact took part) is found by its other words.
    assert _ids(searched, "renewal hello") == {"kept"}


def test_forget_reindexes_a_record_that_only_mentioned_the_address(searched: World) -> None:
    # Hank's mail names José's address in its body only: the sweep redacts it there, and
    # the index must follow on both engines (PostgreSQL checked the phrase against the
    # already redacted text, kept the record out of the reindex, and still found it).
    searched.deliver(
        "alice",
        make_message(
            sender="Hank Scorpio <hank@globex.co.uk>", subject="Intro",
            message_id="<mention@t>", body="Please write to jose@acme.com today\r\n",
        ),
    )  # fmt: skip
    searched.cli("sync")
    assert "mention" in _ids(searched, "jose")
    searched.cli("forget", "jose@acme.com", "--yes")
    for query in ("jose", "jose@acme.com", '"jose acme"'):
        assert _search(searched, query) == [], query
    assert _ids(searched, "intro today") == {"mention"}


def test_metadata_mode_indexes_no_body_and_reindex_rebuilds(world: World) -> None:
    world.rep("alice")
    world.deliver(
        "alice",
        make_message(subject="Renewal", message_id="<m1@t>", body="secret discount terms\r\n"),
    )
    world.write_config(capture='store = "metadata"')
    world.cli("sync")
    assert _search(world, "discount") == []
    assert [r["subject"] for r in _search(world, "renewal")] == ["Renewal"]
    # The index emptied by hand comes back whole from the records.
    engine = database.make_engine(world.db_url)
    with engine.begin() as conn:
        search_index.clear(conn)
    engine.dispose()
    assert _search(world, "renewal") == []
    assert "1 record(s)" in world.cli("db", "reindex").stdout
    assert [r["subject"] for r in _search(world, "renewal")] == ["Renewal"]
    assert _search(world, "discount") == []


def test_logged_calls_visits_and_notes_are_found_edited_and_deleted(world: World) -> None:
    """A logged record enters the index in the transaction that writes it, follows its edits
    and leaves with its deletion, and an import is searchable at once."""
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)

    def add(*args: str) -> int:
        out = world.cli("records", "add", "--owner", "alice@example.com", *args, "--json")
        return int(json.loads(out.stdout)["id"])

    call = add("--kind", "call", "--contact", "wile@acme.com", "--subject", "Price call",
               "--body", "客户拜访记录: 讨论了报价", "--duration", "15m")  # fmt: skip
    visit = add("--kind", "visit", "--customer", "Globex", "--subject", "Site visit",
                "--location", "Springfield plant")  # fmt: skip
    assert [r["id"] for r in _search(world, "拜访")] == [call]
    assert [r["id"] for r in _search(world, "springfield")] == [visit]
    assert [r["id"] for r in _search(world, "wile@acme.com", "--kind", "call")] == [call]
    world.cli("records", "edit", str(call), "--body", "Discussed the renewal")
    assert _search(world, "拜访") == []
    assert [r["id"] for r in _search(world, "renewal")] == [call]
    world.cli("records", "delete", str(call), "--yes")
    assert _search(world, "renewal") == []
    calls = world.tmp / "calls.csv"
    calls.write_text(
        "kind,occurred_at,owner,customer,contact_email,direction,duration_seconds,outcome,"
        "location,subject,body,external_id\n"
        "note,2024-06-03T09:00:00Z,alice@example.com,Globex,,,,,,Café notes,crème brûlée,n-1\n"
    )
    world.cli("records", "import", str(calls))
    assert [r["subject"] for r in _search(world, "creme brulee")] == ["Café notes"]
