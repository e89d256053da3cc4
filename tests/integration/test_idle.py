"""An IDLE watch against a real Dovecot: push, renewal, and a server that goes away."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from syncd.config import MailboxConfig
from syncd.engine.imap.idle_hub import IdleHub
from tests.daemon import wait_until
from tests.mail import make_message
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.dovecot


class Calls:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, _mailbox: str) -> None:
        with self._lock:
            self.count += 1


def test_new_mail_renewal_and_reconnection_after_the_server_restarts() -> None:
    server = Dovecot(Path(tempfile.mkdtemp(prefix="syncd-test-idle-")), {"rep": "pw-idle"}).start()
    calls = Calls()
    box = MailboxConfig(
        name="rep", owner="rep@example.com", host="127.0.0.1", port=server.port,
        security="plain", username="rep", password="pw-idle", timeout=5,
    )  # fmt: skip
    hub = IdleHub(renew_every=0.6)
    watcher = hub.watch(box, calls)
    try:
        wait_until(lambda: watcher.supported is True, 10, "IDLE to start")
        server.deliver("rep", make_message(message_id="<one@acme.com>"))
        wait_until(lambda: calls.count == 1, 10, "the push for the first message")
        # DONE + NOOP + IDLE again, as a 29-minute renewal does: nothing is reported.
        wait_until(lambda: watcher.renewals >= 2, 10, "two renewals")
        assert calls.count == 1
        # The server goes away and comes back: the watcher reconnects by itself and says so
        # (mail may have arrived meanwhile), then pushes again.
        server.stop()
        server.deliver("rep", make_message(message_id="<during@acme.com>"))
        server.start()
        wait_until(lambda: calls.count == 2, 30, "the reconnection")
        server.deliver("rep", make_message(message_id="<after@acme.com>"))
        wait_until(lambda: calls.count == 3, 10, "the push after reconnecting")
    finally:
        watcher.stop()
        watcher.join(5)
        hub.close()
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
    assert not watcher.alive and watcher.ended == "stopped"


def test_a_refused_login_stops_the_watcher_instead_of_retrying() -> None:
    server = Dovecot(Path(tempfile.mkdtemp(prefix="syncd-test-idle-")), {"rep": "pw-idle"}).start()
    try:
        box = MailboxConfig(
            name="rep", owner="rep@example.com", host="127.0.0.1", port=server.port,
            security="plain", username="rep", password="wrong", timeout=5,
        )  # fmt: skip
        hub = IdleHub()
        watcher = hub.watch(box, Calls())
        watcher.join(15)
        # The scheduler owns the hourly retry of a refused login.
        assert not watcher.alive and watcher.ended == "login refused"
        assert hub.watching() == 0
    finally:
        hub.close()
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
