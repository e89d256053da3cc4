"""The two sides every contract test runs on: an in-memory fake and the real server.

A backend is a test's hands on the server (deliver, expunge, rebuild a folder, put or
delete an object, remove a calendar) and a way to open sessions through the connector
interface.  On the real servers the hands reach into Dovecot's maildirs and Radicale's
storage or HTTP; the sessions are the production connectors.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from pathlib import Path

from syncd.config import CalendarConfig, MailboxConfig
from syncd.connectors.base import (
    CalendarSession,
    FetchedMessage,
    FolderInfo,
    FolderStatus,
    MailSession,
)
from syncd.connectors.dav import CalDavSession
from syncd.connectors.imap import ImapSession
from syncd.errors import TransientError
from tests.fakes import FakeCalendarServer, FakeMailServer
from tests.servers.dovecot import Dovecot
from tests.servers.radicale import Radicale

BIG = 10_000_000  # the engine's default max_message_bytes is far below: no message is cut

# --- mail -----------------------------------------------------------------------------------------


class FakeMail:
    kind = "fake"

    def __init__(self) -> None:
        self.server = FakeMailServer()
        self._uids: dict[tuple[str, str], int] = {}  # (folder, Message-ID) -> UID

    def open(self, max_bytes: int = BIG) -> MailSession:
        return self.server.session(None, max_bytes)

    def opener(self, box: MailboxConfig, max_bytes: int) -> MailSession:
        return self.server.session(box, max_bytes)

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        self._uids[folder, _message_id(raw)] = self.server.deliver(raw, folder)

    def expunge(self, folder: str, message_id: str) -> None:
        self.server.expunge(folder, self._uids.pop((folder, message_id)))

    def reset_uidvalidity(self, folder: str = "INBOX") -> None:
        self.server.reset_uidvalidity(folder)
        order = sorted(self.server.folders[folder].messages.items())
        for uid, message in order:
            self._uids[folder, _message_id(message.raw)] = uid

    def make_folder(self, name: str) -> None:
        self.server.make_folder(name)

    def remove_folder(self, name: str) -> None:
        self.server.remove_folder(name)

    def interrupt_next_fetch(self, *, after: int = 0) -> None:
        """Drop the connection at the fetch that follows ``after`` good ones."""
        self.server.fail_next(
            "fetch", TransientError("mailbox fake: connection lost (abort)"), after=after
        )


class DovecotMail:
    kind = "dovecot"

    def __init__(self, dovecot: Dovecot, login: str) -> None:
        self.dovecot = dovecot
        self.login = login
        self._interrupts: list[int] = []  # good fetches left before each drop

    def _box(self) -> MailboxConfig:
        return MailboxConfig.from_dict(
            {
                "name": "contract",
                "owner": "alice@example.com",
                "host": "127.0.0.1",
                "port": self.dovecot.port,
                "security": "plain",
                "username": self.login,
                "password": self.dovecot.users[self.login],
                "timeout": 5,
            }
        )

    def open(self, max_bytes: int = BIG) -> MailSession:
        password = self.dovecot.users[self.login]
        session = ImapSession.open(self._box(), lambda: password, max_bytes=max_bytes)
        return _Severable(session, self)

    def opener(self, box: MailboxConfig, max_bytes: int) -> MailSession:
        return self.open(max_bytes)

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        self.dovecot.deliver(self.login, raw, folder=folder)
        time.sleep(0.002)  # apart in time, as real deliveries are

    def _path(self, folder: str) -> Path:
        base = self.dovecot.root / "mail" / self.login / "Maildir"
        return base if folder == "INBOX" else base / f".{folder}"

    def expunge(self, folder: str, message_id: str) -> None:
        # Dovecot numbers maildir files when it first looks at them: let it look first, as
        # a server assigns UIDs at delivery, or the expunged message never had a UID.
        self._validity(folder)
        needle = f"Message-ID: {message_id}".encode()
        for path in self._path(folder).glob("*/*"):
            if path.parent.name in ("cur", "new") and needle in path.read_bytes():
                path.unlink()
                return
        raise AssertionError(f"no message {message_id} in {folder}")

    def reset_uidvalidity(self, folder: str = "INBOX") -> None:
        # Dovecot takes the clock's second for a new UIDVALIDITY: rebuilt within the second
        # the folder was made, it would get the same one.  Wait for a later second.
        before = self._validity(folder)
        for _ in range(20):
            self.dovecot.reset_uidvalidity(self.login, folder)
            if self._validity(folder) != before:
                return
            time.sleep(0.2)
        raise AssertionError("Dovecot kept the same UIDVALIDITY for 4 seconds")

    def _validity(self, folder: str) -> int:
        session = self.open()
        try:
            return session.examine(folder).uidvalidity
        finally:
            session.close()

    def make_folder(self, name: str) -> None:
        self.dovecot.maildir(self.login, name)

    def remove_folder(self, name: str) -> None:
        shutil.rmtree(self._path(name))

    def interrupt_next_fetch(self, *, after: int = 0) -> None:
        """Drop the connection at the fetch that follows ``after`` good ones."""
        self._interrupts.append(after)

    def take_interrupt(self) -> bool:
        if not self._interrupts:
            return False
        if self._interrupts[0] > 0:
            self._interrupts[0] -= 1
            return False
        self._interrupts.pop(0)
        return True


class _Severable:
    """A real ImapSession whose socket the test can cut before a fetch: the failure the
    engine then sees is the connector's own classification of a real dropped connection."""

    def __init__(self, inner: ImapSession, backend: DovecotMail) -> None:
        self._inner = inner
        self._backend = backend

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
        if self._backend.take_interrupt():
            self._inner._client._imap.sock.shutdown(socket.SHUT_RDWR)
        return self._inner.fetch(uids)

    def fetch_message_ids(self, uids: list[int]) -> dict[int, bytes]:
        return self._inner.fetch_message_ids(uids)

    def close(self) -> None:
        self._inner.close()


def _message_id(raw: bytes) -> str:
    found = re.search(rb"(?im)^message-id:\s*(\S+)", raw)
    assert found is not None
    return found.group(1).decode()


# --- calendars ------------------------------------------------------------------------------------


class FakeCalendars:
    kind = "fake"

    def __init__(self) -> None:
        self.server = FakeCalendarServer()

    def open(self) -> CalendarSession:
        return self.server.session(None)

    def opener(self, config: CalendarConfig) -> CalendarSession:
        return self.server.session(config)

    def make_calendar(self, slug: str, display_name: str) -> str:
        return self.server.make_calendar(slug, display_name)

    def put(self, slug: str, name: str, text: str) -> None:
        self.server.put(slug, name, text)

    def delete(self, slug: str, name: str) -> None:
        self.server.delete(slug, name)

    def remove_calendar(self, slug: str) -> None:
        self.server.remove_calendar(slug)

    def href(self, slug: str, name: str) -> str:
        return f"/{self.server.user}/{slug}/{name}"


class RadicaleCalendars:
    kind = "radicale"

    def __init__(self, radicale: Radicale, login: str) -> None:
        self.radicale = radicale
        self.login = login

    def config(self) -> CalendarConfig:
        return CalendarConfig.from_dict(
            {
                "name": "contract",
                "owner": "alice@example.com",
                "url": self.radicale.url,
                "username": self.login,
                "password": self.radicale.users[self.login],
            }
        )

    def open(self) -> CalendarSession:
        password = self.radicale.users[self.login]
        return CalDavSession(self.config(), lambda: password)

    def opener(self, config: CalendarConfig) -> CalendarSession:
        return self.open()

    def make_calendar(self, slug: str, display_name: str) -> str:
        self.radicale.make_calendar(self.login, slug, display_name)
        return f"{self.radicale.url}{self.login}/{slug}/"

    def put(self, slug: str, name: str, text: str) -> None:
        self.radicale.put(self.login, slug, name, text)

    def delete(self, slug: str, name: str) -> None:
        self.radicale.delete(self.login, slug, name)

    def remove_calendar(self, slug: str) -> None:
        shutil.rmtree(self.radicale.calendar_dir(self.login, slug))

    def href(self, slug: str, name: str) -> str:
        return f"/{self.login}/{slug}/{name}"
