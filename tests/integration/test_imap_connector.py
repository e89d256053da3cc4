"""The IMAP connector against a real Dovecot: TLS, STARTTLS, errors, read-only fetches."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.config import MailboxConfig
from syncd.connectors.imap import ImapSession
from syncd.errors import CredentialsError, RefusedError, RemoteConfigError, TransientError
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port

pytestmark = pytest.mark.dovecot
LOGIN, PASSWORD = "user299", "pw-user299-s3cr3t"  # the last login of the shared server's pool


def _box(dovecot: Dovecot, **overrides: object) -> MailboxConfig:
    values: dict[str, object] = {
        "name": "alice",
        "owner": "alice@example.com",
        "host": "127.0.0.1",
        "port": dovecot.port,
        "security": "plain",
        "username": LOGIN,
        "password": PASSWORD,
        "timeout": 5,
    }
    values.update(overrides)
    return MailboxConfig.from_dict(values)


def _open(box: MailboxConfig, max_bytes: int = 10_000_000) -> ImapSession:
    return ImapSession.open(
        box, lambda: box.password.get_secret_value() if box.password else "", max_bytes=max_bytes
    )


def test_tls_certificate_is_verified(dovecot: Dovecot) -> None:
    with pytest.raises(RemoteConfigError, match="not trusted") as err:
        _open(_box(dovecot, port=dovecot.tls_port, security="tls"))
    assert err.value.hint and "ca_file" in err.value.hint
    with _open(
        _box(dovecot, port=dovecot.tls_port, security="tls", ca_file=str(dovecot.cert_file))
    ) as s:
        assert "IMAP4REV1" in s.capabilities()


def test_starttls_upgrades_and_verifies(dovecot: Dovecot) -> None:
    with pytest.raises(RemoteConfigError, match="not trusted"):
        _open(_box(dovecot, security="starttls"))
    with _open(_box(dovecot, security="starttls", ca_file=str(dovecot.cert_file))) as s:
        assert "INBOX" in [f.name for f in s.folders()]


@pytest.fixture
def dovecot_without_tls() -> Iterator[Dovecot]:
    with Dovecot(Path(tempfile.mkdtemp(prefix="syncd-test-notls-")), {LOGIN: PASSWORD}) as server:
        yield server
    shutil.rmtree(server.root, ignore_errors=True)


def test_starttls_never_falls_back_to_plain_text(dovecot_without_tls: Dovecot) -> None:
    with pytest.raises(RemoteConfigError, match="does not offer STARTTLS") as err:
        _open(_box(dovecot_without_tls, security="starttls"))
    assert err.value.hint and "never falls back" in err.value.hint


def test_failures_are_classified(dovecot: Dovecot) -> None:
    with pytest.raises(CredentialsError) as err:
        _open(_box(dovecot, password="wrong-password"))
    assert "wrong-password" not in str(err.value)
    with pytest.raises(RefusedError):
        _open(_box(dovecot, port=free_port()))


def test_a_silent_server_times_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    box = MailboxConfig.from_dict(
        {
            "name": "x",
            "owner": "x@example.com",
            "host": "127.0.0.1",
            "port": listener.getsockname()[1],
            "security": "plain",
            "username": "x",
            "password": "x",
            "timeout": 0.3,
        }
    )
    try:
        with pytest.raises(TransientError, match=r"timed out|connection lost"):
            _open(box)
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_examine_fetch_and_defaults(dovecot: Dovecot) -> None:
    dovecot.deliver(LOGIN, make_message(message_id="<c1@acme.com>"))
    dovecot.deliver(LOGIN, make_message(message_id="<c2@acme.com>", body="x" * 5000))
    with _open(_box(dovecot), max_bytes=3000) as session:
        assert session.default_folders() == ["INBOX", "Sent"]
        assert {"IDLE", "CONDSTORE"} <= session.capabilities()
        status = session.examine("INBOX")
        assert status.uidvalidity > 0 and status.highestmodseq is not None
        uids = session.uids_from(1)
        assert session.uids_from(uids[-1] + 1) == []  # "n:*" past the end is not the last message
        small, big = session.fetch(uids[-2:])
        assert not small.headers_only and small.raw.endswith(
            b"Could you send the updated quote?\r\n"
        )
        assert big.headers_only and big.size > 5000 and len(big.raw) < 1000
        assert b"c2@acme.com" in session.fetch_message_ids([big.uid])[big.uid]
        with pytest.raises(RemoteConfigError, match="cannot open the folder"):
            session.examine("Does-Not-Exist")


def test_fast_fetch_path_agrees_with_imapclient(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    import syncd.connectors.imap as imap_module

    for n in range(3):
        dovecot.deliver(LOGIN, make_message(message_id=f"<fast{n}@acme.com>", body=f"body {n}\r\n"))
    with _open(_box(dovecot)) as session:
        session.examine("INBOX")
        uids = session.uids_from(1)
        fast = session._fetch_prefixes(uids)
        reference = session._client.fetch(
            uids, ["RFC822.SIZE", f"BODY.PEEK[]<0.{imap_module.PREFIX_BYTES}>"]
        )
        assert fast == {u: (d[b"RFC822.SIZE"], d[b"BODY[]<0>"]) for u, d in reference.items()}
        assert len(fast) == len(uids) >= 3
        # A server answering in another shape still gets every message, through imapclient.
        monkeypatch.setattr(imap_module, "_FETCH_HEAD", __import__("re").compile(rb"^never$"))
        assert session._fetch_prefixes(uids) == fast
