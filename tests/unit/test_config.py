from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from syncd.cli.example_config import EXAMPLE
from syncd.config_file import load_config, parse_config
from syncd.errors import ConfigError


def test_example_is_valid() -> None:
    config = parse_config(tomllib.loads(EXAMPLE))
    assert config.mailbox[0].name == "alice"
    assert config.internal_domains == frozenset({"example.com"})


def test_every_problem_is_reported_with_its_key_path() -> None:
    data = {
        "database": {"url": "sqlite:///x.db", "colour": "blue"},
        "mailbox": [
            {
                "name": "a",
                "owner": "not-an-address",
                "host": "imap.acme.com",
                "username": "a",
                "password": "x",
                "port": 0,
            },
            {"name": "b", "owner": "b@x.com", "host": "imap.acme.com", "username": "b"},
            {
                "name": "c",
                "owner": "c@x.com",
                "host": "imap.acme.com",
                "username": "c",
                "password": "x",
                "security": "plain",
            },
        ],
    }
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    problems = "\n".join(err.value.problems)
    assert "database.colour: unknown key" in problems
    assert "mailbox[0].owner: 'not-an-address' is not an email address" in problems
    assert "mailbox[0].port" in problems
    assert "mailbox[1]: set exactly one of password_file" in problems
    assert 'mailbox[2]: security = "plain" sends the password in clear to imap.acme.com' in problems
    assert len(err.value.problems) == 5
    assert "x" not in [p.split(": ", 1)[-1] for p in err.value.problems]  # no secret echoed


def test_plain_is_fine_on_loopback_and_names_are_unique() -> None:
    box = {
        "owner": "a@x.com",
        "host": "127.0.0.1",
        "username": "a",
        "password": "x",
        "security": "plain",
    }
    parse_config({"mailbox": [{"name": "a", **box}]})
    with pytest.raises(ConfigError, match="used twice"):
        parse_config({"mailbox": [{"name": "a", **box}, {"name": "a", **box}]})


def test_relative_sqlite_path_is_relative_to_the_config(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text('[database]\nurl = "sqlite:///data/syncd.db"\n')
    assert load_config(path).database.url == f"sqlite:///{tmp_path}/data/syncd.db"


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[database\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    "toml", ["x = " + "[" * 3000 + "]" * 3000, "x = " + "{a = " * 3000 + "}" * 3000]
)
def test_a_value_nested_too_deeply_is_a_config_error_naming_the_file(
    tmp_path: Path, toml: str
) -> None:
    """tomllib recurses once per level: its RecursionError was a traceback."""
    path = tmp_path / "deep.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match="nested too deeply") as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_working_weeks_per_rep_and_follow_up_rules() -> None:
    from datetime import time

    config = parse_config(
        {
            "organization": {"timezone": "Europe/Berlin", "holidays": ["2026-12-24"]},
            "followup": [
                {"rule": "no_response", "after": "2 business days"},
                {"rule": "after_meeting", "enabled": False},
            ],
            "mailbox": [
                {
                    "name": "kim", "owner": "kim@example.com", "host": "imap.example.com",
                    "username": "kim", "password": "x", "timezone": "Asia/Seoul",
                    "workdays": ["mon", "tue", "wed", "thu"], "hours": "10:00-19:00",
                }
            ],
        }
    )  # fmt: skip
    assert set(config.followup_rules()) == {"unanswered_inbound", "no_response", "gone_quiet"}
    assert str(config.followup_rules()["no_response"]) == "2 business days"
    kim = config.working_week_of("kim@example.com")
    assert (str(kim.zone), kim.opens, kim.closes, sorted(kim.workdays)) == (
        "Asia/Seoul", time(10), time(19), [0, 1, 2, 3],
    )  # fmt: skip
    other = config.working_week_of("bob@example.com")
    assert str(other.zone) == "Europe/Berlin" and sorted(other.workdays) == [0, 1, 2, 3, 4]
    assert len(other.holidays) == 1 == len(kim.holidays)


def test_follow_up_and_working_hours_mistakes_are_reported_by_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "organization": {"workdays": ["mon", "someday"], "hours": "9-5"},
                "followup": [{"rule": "no_response", "after": "soon"}],
                "metrics": {"listen": "9464"},
                "sync": {"interval": 0},
            }
        )
    text = str(caught.value)
    for key in (
        "organization.workdays", "organization.hours", "followup[0].after",
        "metrics.listen", "sync.interval",
    ):  # fmt: skip
        assert key in text, key


def test_every_length_of_time_is_written_one_way_and_the_old_numbers_still_read() -> None:
    new = parse_config(
        {
            "sync": {"interval": "5m", "max_backoff": "1h", "verify_interval": "0s"},
            "tasks": {"interval": "90 seconds"},
            "followup": [{"rule": "no_response", "after": "48h"}],
        }
    )
    old = parse_config(
        {
            "sync": {"interval": 300, "max_backoff": "3600", "verify_interval": 0},
            "tasks": {"interval": 90},
            "followup": [{"rule": "no_response", "after": "48 hours"}],
        }
    )
    assert new.sync == old.sync and new.tasks == old.tasks
    assert new.sync.interval == 300.0 and new.sync.verify_interval == 0.0
    assert new.followup[0].span == old.followup[0].span
    with pytest.raises(ConfigError) as caught:
        parse_config({"sync": {"interval": "5 fortnights", "max_backoff": "2 business days"}})
    text = str(caught.value)
    assert "sync.interval" in text and "sync.max_backoff" in text
    assert "is not a length of time" in text


def test_notify_is_on_unless_switched_off(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    assert load_config(path).sync.notify is True
    path.write_text(path.read_text() + "[sync]\nnotify = false\n")
    assert load_config(path).sync.notify is False


def test_an_unknown_time_zone_is_refused_with_its_key_path() -> None:
    """zoneinfo is imported when a zone is read (config.py): a bad one is still refused."""
    data = {
        "organization": {"internal_domains": ["x.com"], "timezone": "Mars/Olympus_Mons"},
        "mailbox": [
            {"name": "a", "owner": "a@x.com", "host": "imap.x.com", "username": "a",
             "password": "x", "timezone": "Europe/Nowhere"},
        ],
    }  # fmt: skip
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "organization.timezone" in str(err.value) and "mailbox[0].timezone" in str(err.value)
    assert "unknown time zone 'Mars/Olympus_Mons'" in str(err.value)
