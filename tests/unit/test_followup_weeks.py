"""Follow-up due dates look a rep's working week up once per email: with a fleet of
[[mailbox_group]] members that lookup must not scan every mailbox each time."""

from __future__ import annotations

import gc
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.config_file import load_config
from syncd.engine import followups
from syncd.engine.followups import working_weeks
from syncd.store.database import open_database

MEMBERS = 10_000


def test_working_weeks_match_the_config_and_do_not_scan_the_fleet(tmp_path: Path) -> None:
    (tmp_path / "reps.csv").write_text(
        "owner\n" + "".join(f"rep{n}@example.com\n" for n in range(MEMBERS))
    )
    (tmp_path / "syncd.toml").write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n'
        '[organization]\ntimezone = "America/New_York"\n'
        '[[mailbox]]\nname = "solo"\nowner = "solo@example.com"\nhost = "imap.example.com"\n'
        'username = "solo"\npassword_env = "PW"\ntimezone = "Asia/Tokyo"\n'
        '[[mailbox_group]]\nname = "emea"\nhost = "imap.example.com"\nmembers_file = "reps.csv"\n'
        'login_user = "%u*m"\npassword_env = "PW"\ntimezone = "Europe/Paris"\n'
    )
    config = load_config(tmp_path / "syncd.toml")
    week_of = working_weeks(config)
    for owner in (
        "solo@example.com",
        "rep0@example.com",
        f"rep{MEMBERS - 1}@example.com",
        "x@y.com",
    ):
        assert week_of(owner) == config.working_week_of(owner)
    assert str(week_of("rep7@example.com").zone) == "Europe/Paris"
    assert str(week_of("someone@acme.com").zone) == "America/New_York"
    # An evaluation asks for thousands of reps and senders: each answer without a scan.
    # This thread's CPU only: a worker process also runs what earlier tests left behind.
    # Nor a collection of their garbage: a full one over a worker's heap took half a second.
    gc.collect()
    gc.disable()
    try:
        started = time.thread_time()
        for n in range(5_000):
            week_of(f"rep{(n * 7919) % MEMBERS}@example.com")
            week_of(f"sender{n}@acme.com")
        took = time.thread_time() - started
    finally:
        gc.enable()
    assert took < 0.5  # a scan each time: about 4 s here; 0.03 s without
    # evaluate_followups uses it (and not the scan per email).
    calls: list[object] = []
    real = followups.Rules

    def spy(after: object, lookback: datetime, week: object) -> object:
        calls.append(week)
        return real(after, lookback, week)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(followups, "Rules", spy)
        engine = open_database(config.database.url)
        followups.evaluate_followups(engine, config, datetime.now(UTC) + timedelta(days=1))
        engine.dispose()
    (week,) = calls
    assert getattr(week, "__name__", "") == "week_of" and week != config.working_week_of
