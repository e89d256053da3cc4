"""`syncd status` with several daemons: each one's share, and who holds each source."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.cli.plain import Screen
from syncd.cli.present import status as view
from syncd.store.status_read import DaemonInfo

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _daemon(daemon_id: str, pid: int) -> DaemonInfo:
    return DaemonInfo(daemon_id, f"host-{pid}", pid, NOW - timedelta(hours=1), NOW, "running")


def _box(name: str) -> dict[str, Any]:
    return {
        "mailbox": name, "state": "ok", "last_attempt_at": None, "last_success_at": None,
        "last_error": None, "last_error_kind": None, "messages_captured": 0, "folders": [],
        "quarantined": [],
    }  # fmt: skip


def _held(holder: str | None) -> dict[str, Any]:
    return {
        "state": "ok", "reason": None, "retry_at": None, "failures": 0, "daemon_id": holder,
        "lease_until": NOW, "updated_at": NOW,
    }  # fmt: skip


def test_each_daemon_shows_its_share_and_each_source_its_holder() -> None:
    boxes = [_box(f"rep{n}") for n in range(4)]
    activity = {
        ("mailbox", "rep0"): _held("aaaa1111"),
        ("mailbox", "rep1"): _held("aaaa1111"),
        ("mailbox", "rep2"): _held("bbbb2222"),
        ("mailbox", "rep3"): _held("dead0000"),  # a daemon that is not live holds nothing
    }
    doc = view.document(boxes, [], [_daemon("aaaa1111", 1), _daemon("bbbb2222", 2)], activity, NOW)
    assert [(d["id"], d["sources_held"], d["share"]) for d in doc["daemons"]] == [
        ("aaaa1111", 2, 0.5),
        ("bbbb2222", 1, 0.25),
    ]
    assert [s["held_by"] for s in doc["sources"]] == ["aaaa1111", "aaaa1111", "bbbb2222", None]
    out = io.StringIO()
    view.show(Screen(out, width=200), doc)
    text = out.getvalue()
    assert "daemon aaaa1111 (pid 1 on host-1): 2 sources held (50%)" in text
    header = next(line for line in text.splitlines() if "mailbox" in line)
    assert header.split()[-2] == "daemon" and "bbbb2222" in text


def test_one_daemon_keeps_the_usual_table() -> None:
    doc = view.document([_box("rep0")], [], [_daemon("aaaa1111", 1)], {}, NOW)
    assert doc["daemons"][0]["sources_held"] == 0 and doc["sources"][0]["held_by"] is None
    out = io.StringIO()
    view.show(Screen(out, width=200), doc)
    assert "sources held" not in out.getvalue()
