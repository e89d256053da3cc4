"""BottleCRM's mapping of syncd's records and tasks, and the sink's pure rules."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.config_file import load_config
from syncd.crm.base import DirectoryEntry, Refused
from syncd.crm.bottlecrm import (
    BODY_MAX,
    COMMENT_MAX,
    _website_domain,
    comment_text,
    interaction_fields,
    marker_line,
    task_fields,
)
from syncd.crm.sink import BACKOFF_CAP, backoff, directory_csv
from syncd.domain.directory_file import parse_directory
from syncd.errors import ConfigError

MARK = "syncd:abc:record:1"


def _record(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "kind": "call", "direction": "inbound", "occurred_at": "2026-12-01T10:00:00Z",
        "subject": "Renewal", "snippet": None, "body": "Agreed", "duration_seconds": 300,
        "outcome": "voicemail", "location": None, "status": None,
    }  # fmt: skip
    base.update(over)
    return base


def test_each_kind_maps_to_an_interaction_kind() -> None:
    call = interaction_fields(_record(), MARK)
    assert call["kind"] == "call" and call["outcome"] == "voicemail"
    assert call["direction"] == "inbound" and call["duration_seconds"] == 300
    assert call["body"] == "Agreed\n\n" + marker_line(MARK)
    email = interaction_fields(_record(kind="email", body=None, snippet="Hi"), MARK)
    assert email["kind"] == "email" and "outcome" not in email
    assert email["body"].startswith("Hi")
    visit = interaction_fields(_record(kind="visit", location="Berlin"), MARK)
    assert visit["kind"] == "meeting" and visit["body"].startswith("Location: Berlin")
    meeting = interaction_fields(
        _record(
            kind="meeting", status="cancelled", starts_at="2026-12-01T10:00:00Z",
            ends_at="2026-12-01T10:45:00Z", duration_seconds=None,
        ),
        MARK,
    )  # fmt: skip
    assert meeting["subject"] == "Cancelled: Renewal" and meeting["duration_seconds"] == 2700
    with pytest.raises(Refused, match="note"):
        interaction_fields(_record(kind="note"), MARK)


@given(st.text(max_size=30_000), st.text(max_size=500))
def test_body_and_subject_fit_and_keep_the_marker(body: str, subject: str) -> None:
    fields = interaction_fields(_record(body=body, subject=subject), MARK)
    assert len(fields["body"]) <= BODY_MAX
    assert fields["body"].endswith(marker_line(MARK))
    assert len(fields["subject"]) <= 200


def test_a_note_is_a_comment_with_its_subject_time_and_marker() -> None:
    note = comment_text(_record(kind="note", owner="rep@example.com"), MARK)
    assert note == (
        "Note: Renewal\n2026-12-01 10:00 UTC by rep@example.com\n\nAgreed\n\n" + marker_line(MARK)
    )


@given(st.text(max_size=30_000), st.text(max_size=500))
def test_a_comment_fits_and_keeps_the_marker(body: str, subject: str) -> None:
    text = comment_text(_record(kind="note", body=body, subject=subject), MARK)
    assert len(text) <= COMMENT_MAX
    assert text.endswith(marker_line(MARK))


def test_task_fields() -> None:
    task = {
        "title": "Call back", "status": "dismissed", "priority": "high", "type": "call",
        "owner": "jo@example.com", "due_at": datetime(2026, 12, 3, 15, 0, tzinfo=UTC),
    }  # fmt: skip
    fields = task_fields(task, MARK, "acc-1")
    assert fields == {
        "title": "Call back",
        "status": "Completed",
        "priority": "High",
        "due_date": "2026-12-03",
        "description": "call for jo@example.com\n\n" + marker_line(MARK),
        "account": "acc-1",
    }
    assert (
        task_fields({**task, "status": "snoozed", "priority": "normal"}, MARK, None)["status"]
        == "New"
    )


def test_directory_entries_read_back_as_the_mirror_file() -> None:
    entries = [
        DirectoryEntry(
            "a1", "Acme, Inc.", ("acme.com",), (("c1", "Jane Doe", ("jane@acme.com",)),)
        ),
        DirectoryEntry("a2", "Beta", (), ()),
    ]
    parsed = parse_directory(directory_csv(entries))
    assert [c.name for c in parsed.customers.values()] == ["Acme, Inc.", "Beta"]
    assert parsed.customers["acme, inc."].domains == ("acme.com",)
    assert [(c.name, c.addresses) for c in parsed.contacts] == [("Jane Doe", ("jane@acme.com",))]


@pytest.mark.parametrize(
    ("website", "domain"),
    [("https://www.acme.com/about", "acme.com"), ("acme.de", "acme.de"),
     ("http://shop.acme.com:8080", "shop.acme.com"), ("", None), (None, None)],
)  # fmt: skip
def test_website_domain(website: str | None, domain: str | None) -> None:
    assert _website_domain(website) == domain


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    rng = random.Random(7)
    first = [backoff(0, None, rng) for _ in range(50)]
    later = [backoff(6, None, rng) for _ in range(50)]
    assert max(first) <= 5.0 < min(later)
    assert all(backoff(40, None, rng) <= BACKOFF_CAP for _ in range(50))
    assert backoff(0, 120.0, rng) >= 120.0


def _crm_config(**keys: object) -> str:
    values = {"name": "b", "kind": "bottlecrm", "url": "https://crm.example.com", "token_env": "T"}
    values.update(keys)
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items() if v is not None)
    return f"[[crm]]\n{body}"


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"url": "http://crm.example.com"}, "in clear"),
        ({"token_file": "t"}, "exactly one of token_file, token_env, token_command"),
        ({"token_env": None}, "exactly one of token_file, token_env, token_command"),
        ({"kind": "hubspot"}, "kind"),
        ({"push": ["emails"]}, "push"),
    ],
)
def test_crm_config_is_checked(tmp_path: Path, keys: dict[str, object], problem: str) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text(_crm_config(**keys))
    with pytest.raises(ConfigError, match=problem):
        load_config(path)


def test_crm_config_defaults(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text(_crm_config(url="http://127.0.0.1:8000"))
    crm = load_config(path).crm[0]
    assert crm.push == ["records", "tasks"] and crm.interval == 300 and not crm.directory
