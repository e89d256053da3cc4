"""Engine edge cases, each run on the in-memory fake (fast) and on the real server (proof).

The real engine (MailSync, CalendarSync) and the real database run every time; only the
session behind the connector interface changes.  The fakes pass the same contract as
Dovecot and Radicale (test_mail_contract.py, test_calendar_contract.py), so a scenario
that passes on both shows the fake is faithful where the engine can tell.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from syncd.cli.main import cli
from syncd.config import Config, MailboxConfig
from syncd.config_file import load_config
from syncd.connectors.base import FetchedMessage, FolderInfo, FolderStatus, MailSession
from syncd.domain.calendar_limits import MAX_OBJECT_BYTES
from syncd.engine.calendar_sync import CalendarSync
from syncd.engine.imap.mail_sync import MailSync
from syncd.store import events as outbox
from syncd.store.database import open_database
from tests.contract.backends import RadicaleCalendars
from tests.contract.conftest import CalendarBackend, MailBackend
from tests.contract.test_calendar_contract import _description, event
from tests.mail import make_message

SOON = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)


class Harness:
    """A config with one mailbox and one calendar for alice, a database, and the CLI to read
    back what the engine stored (its JSON shapes are stable across the store's changes)."""

    def __init__(self, tmp_path: Path, db_url: str, *, calendar_url: str, extra: str = "") -> None:
        self.path = tmp_path / "syncd.toml"
        self.path.write_text(
            f'[database]\nurl = "{db_url}"\n\n[organization]\ninternal_domains = ["example.com"]\n'
            f'timezone = "Europe/Berlin"\n\n[capture]\nbatch_size = 10\n\n{extra}\n'
            '[[mailbox]]\nname = "alice"\nowner = "alice@example.com"\nhost = "127.0.0.1"\n'
            'security = "plain"\nusername = "alice"\npassword = "unused"\n'
            'folders = ["INBOX", "Projects"]\n\n'
            '[[calendar]]\nname = "alice-cal"\nowner = "alice@example.com"\n'
            f'url = "{calendar_url}"\nusername = "alice"\npassword = "unused"\n'
        )
        self.config: Config = load_config(self.path)
        self.engine: Engine = open_database(db_url)

    def cli(self, *args: str) -> Any:
        result = CliRunner().invoke(cli, ["--config", str(self.path), *args])
        return json.loads(result.stdout)

    def records(self, kind: str = "email") -> list[dict[str, Any]]:
        return self.cli("records", "list", "--json", "--kind", kind, "--limit", "1000")  # type: ignore[no-any-return]

    def source(self, name: str) -> dict[str, Any]:
        status = self.cli("status", "--json")["sources"]
        return next(s for s in status if name in (s.get("mailbox"), s.get("calendar")))


@pytest.fixture
def harness(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(calendars: CalendarBackend | None = None) -> Harness:
        url = "https://dav.invalid/"
        if isinstance(calendars, RadicaleCalendars):
            url = calendars.radicale.url
        made.append(Harness(tmp_path, db_url, calendar_url=url))
        return made[-1]

    yield make
    for world in made:
        world.engine.dispose()


class Counting:
    """Counts what the engine asks the server for: re-downloads show here."""

    def __init__(self, mail: MailBackend) -> None:
        self.mail = mail
        self.fetched: list[int] = []
        self.ids_asked: list[int] = []

    def opener(self, box: MailboxConfig, max_bytes: int) -> MailSession:
        return _CountingSession(self.mail.opener(box, max_bytes), self)


class _CountingSession:
    def __init__(self, inner: MailSession, counts: Counting) -> None:
        self._inner = inner
        self._counts = counts

    def capabilities(self) -> frozenset[str]:
        return self._inner.capabilities()

    def folders(self) -> list[FolderInfo]:
        return self._inner.folders()

    def default_folders(self) -> list[str]:
        return self._inner.default_folders()

    def examine(self, folder: str) -> FolderStatus:
        return self._inner.examine(folder)

    def status(self, folder: str) -> FolderStatus:
        return self._inner.status(folder)

    def uids_from(self, first_uid: int, last_uid: int | None = None) -> list[int]:
        return self._inner.uids_from(first_uid, last_uid)

    def fetch(self, uids: list[int]) -> list[FetchedMessage]:
        self._counts.fetched += uids
        return self._inner.fetch(uids)

    def fetch_message_ids(self, uids: list[int]) -> dict[int, bytes]:
        self._counts.ids_asked += uids
        return self._inner.fetch_message_ids(uids)

    def close(self) -> None:
        self._inner.close()


def _inbound(n: int) -> bytes:
    return make_message(message_id=f"<in{n}@acme.com>", subject=f"Order {n}")


# --- mail -----------------------------------------------------------------------------------------


def test_uidvalidity_change_reidentifies_without_downloading_again(
    mail: MailBackend, harness: Callable[..., Harness]
) -> None:
    world = harness()
    mail.make_folder("Projects")
    for n in range(5):
        mail.deliver(_inbound(n))
    counts = Counting(mail)
    sync = MailSync(world.engine, world.config, opener=counts.opener)
    assert sync.run_once()[0].ok
    before = {r["message_id"]: r["id"] for r in world.records()}
    assert len(before) == 5 and len(counts.fetched) == 5

    mail.reset_uidvalidity("INBOX")
    mail.deliver(_inbound(99))
    counts.fetched.clear()
    (result,) = sync.run_once()
    assert result.ok
    assert len(counts.fetched) == 1  # only the new message is downloaded
    assert sorted(counts.ids_asked) == [1, 2, 3, 4, 5, 6]  # the rest re-identified by Message-ID
    after = world.records()
    assert len(after) == 6
    assert {r["message_id"]: r["id"] for r in after if r["message_id"] in before} == before
    assert all(len(r["sources"]) == 1 for r in after)  # old UIDs dropped, new ones attached
    # Re-identifying the folder's own messages is bookkeeping, not news for the CRM: the
    # outbox holds the six record.created events and nothing else.
    with world.engine.connect() as conn:
        types = [e.type for e in outbox.read(conn)]
    assert types == ["record.created"] * 6


def test_a_connection_lost_mid_batch_loses_and_doubles_nothing(
    mail: MailBackend, harness: Callable[..., Harness]
) -> None:
    world = harness()
    mail.make_folder("Projects")
    for n in range(25):
        mail.deliver(_inbound(n))
    counts = Counting(mail)
    # Batches of 10: the first commits, the connection drops at the second; the engine
    # reconnects once and goes on from the committed cursor.
    mail.interrupt_next_fetch(after=1)
    (result,) = MailSync(world.engine, world.config, opener=counts.opener).run_once()
    assert result.ok, result
    assert sorted(counts.fetched) == sorted(
        [*range(1, 26), *range(11, 21)]
    )  # the batch in flight twice
    ids = [r["message_id"] for r in world.records()]
    assert sorted(ids) == sorted(f"in{n}@acme.com" for n in range(25))

    # Dropped on both tries: the mailbox fails, what was committed stays, and the next pass
    # picks up at the cursor.
    for n in range(25, 50):
        mail.deliver(_inbound(n))
    mail.interrupt_next_fetch(after=1)
    mail.interrupt_next_fetch(after=0)
    (failed,) = MailSync(world.engine, world.config, opener=counts.opener).run_once()
    assert failed.error is not None and failed.error.kind == "transient"
    assert len(world.records()) == 35
    (again,) = MailSync(world.engine, world.config, opener=counts.opener).run_once()
    assert again.ok
    ids = [r["message_id"] for r in world.records()]
    assert sorted(ids) == sorted(f"in{n}@acme.com" for n in range(50))


def test_a_vanished_folder_is_reported_and_the_others_sync(
    mail: MailBackend, harness: Callable[..., Harness]
) -> None:
    world = harness()
    mail.make_folder("Projects")
    mail.deliver(_inbound(1))
    mail.deliver(_inbound(2), folder="Projects")
    sync = MailSync(world.engine, world.config, opener=mail.opener)
    assert sync.run_once()[0].ok and len(world.records()) == 2

    mail.remove_folder("Projects")
    mail.deliver(_inbound(3))
    (result,) = sync.run_once()
    folders = {f.folder: f for f in result.folders}
    assert result.error is None and not result.ok
    assert folders["INBOX"].captured == 1 and folders["INBOX"].error is None
    assert folders["Projects"].error and "cannot open the folder" in folders["Projects"].error
    assert "syncd check" in folders["Projects"].error  # says what to do
    assert len(world.records()) == 3
    state = world.source("alice")
    failed = {f["folder"]: f for f in state["folders"]}
    assert failed["Projects"]["last_error"] and not failed["INBOX"]["last_error"]


# --- calendars ------------------------------------------------------------------------------------


def test_a_broken_object_is_quarantined_and_the_rest_syncs(
    calendars: CalendarBackend, harness: Callable[..., Harness]
) -> None:
    world = harness(calendars)
    calendars.make_calendar("work", "Work")
    calendars.put("work", "good.ics", event("good", SOON))
    calendars.put(
        "work", "big.ics", event("big", SOON, extra=_description(MAX_OBJECT_BYTES + 10_000))
    )
    sync = CalendarSync(world.engine, world.config, opener=calendars.opener)
    (result,) = sync.run_once()
    assert result.ok and result.calendars["Work"]["created"] == 1
    assert result.calendars["Work"]["quarantined"] == 1
    (held,) = world.source("alice-cal")["quarantined"]
    assert held["href"] == calendars.href("work", "big.ics") and "over the limit" in held["reason"]
    # Not read again until it changes; the good meeting is not doubled; a new one comes in.
    calendars.put("work", "later.ics", event("later", SOON + timedelta(days=1)))
    (again,) = sync.run_once()
    assert again.calendars["Work"]["created"] == 1 and again.calendars["Work"]["quarantined"] == 0
    assert sorted(r["ical_uid"] for r in world.records("meeting")) == ["good", "later"]


def test_a_vanished_calendar_is_reported_and_the_others_sync(
    calendars: CalendarBackend, harness: Callable[..., Harness]
) -> None:
    world = harness(calendars)
    calendars.make_calendar("work", "Work")
    calendars.make_calendar("home", "Home")
    calendars.put("work", "w.ics", event("w1", SOON))
    calendars.put("home", "h.ics", event("h1", SOON))
    sync = CalendarSync(world.engine, world.config, opener=calendars.opener)
    (first,) = sync.run_once()
    assert first.ok and {n: c["created"] for n, c in first.calendars.items()} == {
        "Work": 1,
        "Home": 1,
    }

    calendars.remove_calendar("home")
    calendars.put("work", "w2.ics", event("w2", SOON + timedelta(hours=3)))
    (result,) = sync.run_once()
    assert result.error is None  # the account is fine: one calendar is gone
    assert "not found" in result.errors["Home"]
    assert result.calendars["Work"]["created"] == 1
    assert sorted(r["ical_uid"] for r in world.records("meeting")) == ["h1", "w1", "w2"]
