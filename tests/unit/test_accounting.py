"""The pure accounting behind `syncd verify`: every UID or href lands in exactly one bucket."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd.config_file import parse_config
from syncd.domain.accounting import account_hrefs, account_uids, skip_rule
from syncd.domain.capture import decide
from syncd.domain.message import parse_message
from syncd.errors import ConfigError
from tests.mail import make_message


@pytest.mark.parametrize(
    ("headers", "sender", "rule"),
    [
        ({"List-Id": "<news.acme.com>"}, "wile@acme.com", "bulk"),
        ({"List-Unsubscribe": "<mailto:x@acme.com>"}, "wile@acme.com", "bulk"),
        ({"Precedence": "bulk"}, "wile@acme.com", "bulk"),
        ({"Auto-Submitted": "auto-replied"}, "wile@acme.com", "auto-submitted"),
        ({"X-Autoreply": "yes"}, "wile@acme.com", "auto-submitted"),
        ({"Return-Path": "<>"}, "wile@acme.com", "bounce"),
        ({}, "noreply@acme.com", "no-reply"),
        ({}, "bob@example.com", "internal"),
    ],
)
def test_every_reason_the_capture_decision_gives_has_a_rule_name(
    headers: dict[str, str], sender: str, rule: str
) -> None:
    raw = make_message(sender=sender, headers=headers)
    msg = parse_message(raw, internal_date=datetime(2024, 1, 1, tzinfo=UTC), with_body=True)
    decision = decide(msg, "alice@example.com", frozenset({"example.com"}))
    assert not decision.capture
    assert skip_rule(decision.reason) == rule


def test_pipeline_reasons_and_unknown_reasons() -> None:
    assert skip_rule("only excluded external participants") == "only_excluded"
    assert skip_rule("no customer link (only_matched)") == "only_matched"
    assert skip_rule("no outside address that can be stored") == "unstorable_address"
    assert skip_rule("a rule added later") == "other"


def test_each_uid_lands_in_one_bucket() -> None:
    tally = account_uids(
        [1, 2, 3, 4, 5, 6, 9],
        synced_up_to=6,
        recorded={1, 4},
        quarantined={2, 4},
        skipped={3: "bulk", 2: "internal"},
    )
    assert tally.server == 7
    assert (tally.recorded, tally.quarantined, tally.pending) == (2, 1, 1)
    assert dict(tally.skipped) == {"bulk": 1}
    assert tally.unaccounted == [5, 6]
    assert tally.as_counts()["skipped_by_rule"] == {"bulk": 1}


def test_hrefs_changed_since_the_last_sync_are_pending_and_the_rest_missing() -> None:
    listed = {"/a": '"1"', "/b": '"2"', "/c": '"3"', "/d": '"4"', "/e": '"5"'}
    tally = account_hrefs(
        listed,
        synced=True,
        known={"/a": '"1"', "/b": '"old"', "/c": '"3"'},
        quarantined={"/c"},
        changed_since_sync={"/d"},
    )
    assert (tally.recorded, tally.pending, tally.quarantined) == (1, 2, 1)
    assert tally.unaccounted == ["/e"]
    # Without a token nothing can be pending: an unknown object is missing.
    assert account_hrefs(
        listed, synced=True, known={}, quarantined=set(), changed_since_sync=None
    ).unaccounted == list(listed)
    # A calendar never synced: all of it is the next sync's work.
    assert (
        account_hrefs(
            listed, synced=False, known={}, quarantined=set(), changed_since_sync=None
        ).pending
        == 5
    )


def test_verify_interval_defaults_to_daily_and_refuses_nonsense() -> None:
    base: dict[str, object] = {"database": {"url": "sqlite:///x.db"}}
    assert parse_config(base).sync.verify_interval == 86400
    assert parse_config({**base, "sync": {"verify_interval": 0}}).sync.verify_interval == 0
    for bad in (-1, 10**9, "daily"):
        with pytest.raises(ConfigError) as err:
            parse_config({**base, "sync": {"verify_interval": bad}})
        assert any("sync.verify_interval" in p for p in err.value.problems)
