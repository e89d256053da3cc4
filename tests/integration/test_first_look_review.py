"""Review of h-look (issue #20): cases where the full pass acts and the first look skips.
Real Dovecot and SQLite, as tests/integration/test_first_look.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from syncd.engine import first_look
from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot

MON_9 = datetime(2026, 3, 2, 8, tzinfo=UTC)  # Monday 09:00 in Berlin (the tests' org zone)


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    done: list[int] = []
    real = first_look._record

    def spy(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        done.append(1)

    monkeypatch.setattr(first_look, "_record", spy)
    yield done


def _tasks(world: World, status: str = "open") -> list[dict[str, Any]]:
    out = world.cli("tasks", "list", "--json", "--status", status).stdout
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("full", [False, True], ids=["first_look", "full_pass"])
def test_a_contact_moved_to_another_customer_closes_no_response(
    world: World, looks: list[int], monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    """`syncd contacts add ADDRESS --customer OTHER` moves a contact in place (no new row,
    no event, no audit row): the data stamp does not move, yet the rules' answer does (the
    reply now comes from the customer the rep wrote to, which settles no_response)."""
    if not world.db_url.startswith("sqlite"):
        pytest.skip("the first look is SQLite's")
    if full:
        monkeypatch.setenv(first_look.DISABLE_ENV, "1")
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})
    world.deliver(
        "alice",
        make_message(
            sender="Alice Rep <alice@example.com>",
            to="Wile Coyote <wile@acme.com>",
            subject="Quote",
            message_id="<out@example.com>",
            date=MON_9,
        ),
        folder="Sent",
    )
    # The answer comes from a contact of another customer (Umbrella's Albert).
    world.deliver(
        "alice",
        make_message(
            sender="Albert Wesker <albert.wesker@gmail.com>",
            subject="Re: Quote",
            message_id="<re@gmail.com>",
            in_reply_to="<out@example.com>",
            date=MON_9 + timedelta(hours=1),
        ),
    )
    with time_machine.travel(MON_9 + timedelta(days=4), tick=False):  # Friday: 3 business days
        world.cli("sync")
        world.cli("sync")  # nothing changed: the mark is written
        world.cli("sync")
        (task,) = [t for t in _tasks(world) if t["rule"] == "no_response"]
        assert task["status"] == "open"
        out = world.cli("contacts", "add", "albert.wesker@gmail.com", "--customer", "Acme Corp")
        assert "saved" in out.output
        world.cli("sync")
        still_open = [t for t in _tasks(world) if t["rule"] == "no_response"]
        done = [t for t in _tasks(world, "done") if t["rule"] == "no_response"]
    # The full pass closes it: the reply came from Acme now.
    assert (len(still_open), len(done)) == (0, 1), (still_open, looks)


@pytest.mark.parametrize("full", [False, True], ids=["first_look", "full_pass"])
def test_a_refused_login_is_tried_once_per_run(
    world: World, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    """A wrong password: the first look swallows the refusal and the full pass logs in
    again, so every cron run makes two failed logins per mailbox instead of one (an
    account lockout policy, fail2ban, Dovecot's auth_failure_delay: twice as soon)."""
    if not world.db_url.startswith("sqlite"):
        pytest.skip("the first look is SQLite's")
    from syncd.connectors.imap import ImapSession

    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})
    world.cli("sync")
    world.cli("sync")  # the mark
    (world.tmp / "alice.pass").write_text("not-the-password\n")
    if full:
        monkeypatch.setenv(first_look.DISABLE_ENV, "1")
    opened: list[str] = []
    real = ImapSession.open.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ImapSession], box: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(box.name)
        return real(cls, box, *args, **kwargs)

    monkeypatch.setattr(ImapSession, "open", classmethod(counting))
    result = world.cli("sync", expect=1)
    assert "not-the-password" not in result.output
    assert opened == ["alice"], result.output


@pytest.mark.parametrize("full", [False, True], ids=["first_look", "full_pass"])
def test_a_server_that_never_answers_is_waited_for_once(
    world: World, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    """A server that accepts and never greets: the first look waits out the timeout, then
    the full pass waits it out again (and retries as before): one connection (and one
    [mailbox] timeout) more per mailbox per run than main."""
    import socket
    import threading
    import time

    if not world.db_url.startswith("sqlite"):
        pytest.skip("the first look is SQLite's")
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}})
    world.cli("sync")
    world.cli("sync")  # the mark
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        mute.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(mute.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    world.write_config(
        mailbox={
            "alice": {"folders": ["INBOX", "Sent"], "port": mute.getsockname()[1], "timeout": "1s"}
        }
    )
    if full:
        monkeypatch.setenv(first_look.DISABLE_ENV, "1")
    try:
        began = time.monotonic()
        world.cli("sync", expect=1)
        took = time.monotonic() - began
    finally:
        stop.set()
        thread.join()
        for s in accepted:
            s.close()
        mute.close()
    print(f"connections {len(accepted)}, {took:.1f} s")
    # main's full pass, measured with SYNCD_NO_FIRST_LOOK: its connections (see the output)
    assert len(accepted) == MAIN_CONNECTIONS, (len(accepted), took)


# main's full pass (SYNCD_NO_FIRST_LOOK, run 2026-12-07): 6 connections, 8.0 s with a 1 s
# timeout; h-look: 9 connections, 12.2 s (the first look's own open retries too).
MAIN_CONNECTIONS = 6
