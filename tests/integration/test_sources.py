"""Every kind of source behind one interface, one report shape and one status rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd.config_file import load_config
from syncd.engine.imap.idle_hub import IdleHub
from syncd.engine.sources import CalendarSource, MailboxSource, configured_sources
from syncd.store import database, state
from syncd.store.directory import load_directory
from syncd.store.queries import calendar_status, sync_status
from tests.conftest import World
from tests.mail import make_message
from tests.migration_scenario import MEETING
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV


@pytest.mark.dovecot
@pytest.mark.radicale
def test_a_mailbox_and_a_calendar_report_in_one_shape(world: World, radicale: Radicale) -> None:
    world.rep("alice")
    world.cal_rep("alice", radicale)
    world.deliver("alice", make_message())
    today = datetime.now(UTC).strftime("%Y%m%d")  # inside the capture window whenever it runs
    world.put_event("alice", "review-1.ics", MEETING.replace("20261120", today))
    world.write_config()
    world.customers(CUSTOMERS_CSV)
    config = load_config(world.config_path)
    engine = database.open_database(world.db_url)
    sources = configured_sources(engine, config)
    assert [(s.kind, s.name, type(s)) for s in sources] == [
        ("mailbox", "alice", MailboxSource),
        ("calendar", "alice-cal", CalendarSource),
    ]
    with engine.connect() as conn:
        directory = load_directory(conn, config.capture)
    mail, calendar = (s.sync(directory) for s in sources)
    assert mail.ok and calendar.ok
    assert [(p.place, p.captured, p.error) for p in mail.places] == [
        ("INBOX", 1, None),
        ("Sent", 0, None),
    ]
    assert [(p.place, p.captured, p.error) for p in calendar.places] == [("Work", 1, None)]
    assert calendar.requests > 0 and mail.reason() is None
    # Push is a capability: IDLE for a mailbox, none for a calendar.
    hub = IdleHub()
    watch = sources[0].watcher(hub, lambda _name: None)
    assert watch is not None and hub.watching() == 1
    assert sources[1].watcher(hub, lambda _name: None) is None
    hub.close()
    assert watch.ended == "stopped"
    assert sources[0].push_tasks() is None and sources[1].push_tasks() is None
    engine.dispose()


@pytest.mark.dovecot
@pytest.mark.radicale
def test_check_findings_name_the_problem_and_the_fix(world: World, radicale: Radicale) -> None:
    world.rep("alice")
    world.cal_rep("alice", radicale)
    (world.tmp / "alice.calpass").write_text("wrong\n")
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Nope"]}})
    config = load_config(world.config_path)
    mail, calendar = configured_sources(None, config)  # check needs no database
    found = mail.check()
    assert ("info", "login: ok") in [(f.level, f.text) for f in found]
    (problem,) = [f for f in found if f.level == "problem"]
    assert problem.text == "folder 'Nope' does not exist" and problem.fix and "INBOX" in problem.fix
    (refused,) = calendar.check()
    assert refused.level == "problem" and refused.fix


@pytest.mark.parametrize(
    ("error_kind", "expected"),
    [("transient", "degraded"), ("credentials", "failing"), ("config", "failing")],
)
def test_status_maps_an_account_error_by_one_rule_for_every_kind(
    db_url: str, error_kind: str, expected: str
) -> None:
    engine = database.open_database(db_url)
    with engine.begin() as conn:
        for kind in ("mailbox", "calendar"):
            state.attempted(conn, kind, "bad")
            state.failed(conn, kind, "bad", state.ACCOUNT, "it broke", error_kind)
            state.succeeded(conn, kind, "place-broken")
            state.failed(conn, kind, "place-broken", "INBOX", "no such place", "config")
            state.succeeded(conn, kind, "fine")
            state.succeeded(conn, kind, "fine", "INBOX")
            state.counted(conn, kind, "fine", "INBOX", captured=3, skipped=1)
    names = ["bad", "place-broken", "fine", "never"]
    with engine.connect() as conn:
        shown = {
            "mailbox": {s["mailbox"]: s for s in sync_status(conn, names)},
            "calendar": {s["calendar"]: s for s in calendar_status(conn, names)},
        }
    for kind, by_name in shown.items():
        assert {n: s["state"] for n, s in by_name.items()} == {
            "bad": expected,
            "place-broken": "degraded",
            "fine": "ok",
            "never": "never synced",
        }, kind
        assert by_name["bad"]["last_error_kind"] == error_kind
    assert shown["mailbox"]["fine"]["folders"][0]["messages_skipped"] == 1
    assert shown["mailbox"]["fine"]["messages_captured"] == 3
    assert shown["calendar"]["fine"]["meetings_captured"] == 3
    engine.dispose()
