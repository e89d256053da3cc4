"""The IMAP connector against hostile servers and messages: every fetch stays bounded."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from syncd.config import MailboxConfig
from syncd.connectors.imap import MAX_LITERAL_BYTES, ImapSession
from syncd.domain.bounds import bound_id
from syncd.domain.limits import MAX_FIELD_BYTES, MAX_HEADER_BYTES
from syncd.domain.message import parse_message
from syncd.engine.imap.mail_sync import reidentified_key
from syncd.errors import TransientError
from syncd.store.capture import email_key
from tests.integration.test_imap_connector import LOGIN, _box, _open
from tests.servers.dovecot import Dovecot


@pytest.mark.dovecot
def test_a_header_that_never_ends_is_fetched_up_to_the_cap(dovecot: Dovecot) -> None:
    # 4 MB of header lines and no blank line: the header is the whole message.
    filler = b"".join(
        b"X-Filler-%06d: %s\r\n" % (n, b"f" * 60) for n in range(4 * 1024 * 1024 // 78)
    )
    raw = b"From: wile@acme.com\r\nTo: alice@example.com\r\nSubject: endless\r\n" + filler
    dovecot.deliver(LOGIN, raw, folder="INBOX")
    with _open(_box(dovecot)) as session:
        session.examine("INBOX")
        uid = session.uids_from(1)[-1]
        (fetched,) = session.fetch([uid])
    assert fetched.size == len(raw)
    assert fetched.headers_only
    assert len(fetched.raw) <= MAX_HEADER_BYTES
    assert fetched.raw.startswith(b"From: wile@acme.com")


class _LyingServer:
    """A loopback IMAP server that answers the first FETCH with a {3000000000} literal."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            reader = conn.makefile("rb")
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1] lying server ready\r\n")
            for line in reader:
                tag, _, rest = line.decode().partition(" ")
                command = rest.split(" ", 1)[0].upper().strip()
                if command == "CAPABILITY":
                    conn.sendall(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n".encode())
                elif command in ("SELECT", "EXAMINE"):
                    conn.sendall(
                        f"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n"
                        f"{tag} OK [READ-ONLY] done\r\n".encode()
                    )
                elif command == "UID" and "FETCH" in rest.upper():
                    # The size of the literal is a lie: a few bytes follow, then silence.
                    conn.sendall(b"* 1 FETCH (UID 1 RFC822.SIZE 100 BODY[]<0> {3000000000}\r\nFrom")
                    time.sleep(8)
                    return
                elif command == "LOGOUT":
                    conn.sendall(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                    return
                else:
                    conn.sendall(f"{tag} OK done\r\n".encode())

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def lying_server() -> Iterator[_LyingServer]:
    server = _LyingServer()
    yield server
    server.close()


def test_an_absurd_literal_is_a_classified_error_at_once(lying_server: _LyingServer) -> None:
    box = MailboxConfig.from_dict(
        {
            "name": "liar",
            "owner": "alice@example.com",
            "host": "127.0.0.1",
            "port": lying_server.port,
            "security": "plain",
            "username": "rep",
            "password": "pw",
            "timeout": 5,
        }
    )
    session = ImapSession.open(box, lambda: "pw", max_bytes=10_000_000)
    session.examine("INBOX")
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match="3,000,000,000-byte literal") as err:
            session.fetch([1])
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        session.close()
    # Refused before reading (no wait for the socket timeout) and before allocating.
    assert took < 2.0
    assert peak < 10 * 1024 * 1024
    assert f"{MAX_LITERAL_BYTES:,}" in str(err.value)
    assert err.value.kind == "transient"


@pytest.mark.dovecot
def test_message_ids_are_fetched_within_a_bound(dovecot: Dovecot) -> None:
    repeated = b"".join(b"Message-ID: <dup%05d@acme.com>\r\n" % n for n in range(5_000))
    raw = b"From: wile@acme.com\r\nMessage-ID: <first@acme.com>\r\n" + repeated + b"\r\nbody\r\n"
    dovecot.deliver(LOGIN, raw, folder="INBOX")
    with _open(_box(dovecot)) as session:
        session.examine("INBOX")
        uid = session.uids_from(1)[-1]
        ids = session.fetch_message_ids([uid])[uid]
    # Before the bound: all 165 KB of Message-ID lines.
    assert ids.startswith(b"Message-ID: <first@acme.com>")
    assert len(ids) <= 2 * MAX_FIELD_BYTES


@pytest.mark.dovecot
@pytest.mark.parametrize("length", [5_000, 15_000, 40_000])
def test_a_long_message_id_re_identifies_to_the_key_it_was_stored_under(
    dovecot: Dovecot, length: int
) -> None:
    # The fetch used to stop at 4 KB while the parser keeps ids up to its 16 KB field cap:
    # after a UIDVALIDITY change a long id named a different record.
    long_id = "<" + "i" * length + "@acme.com>"
    raw = f"From: wile@acme.com\r\nMessage-ID: {long_id}\r\nSubject: x\r\n\r\nbody\r\n"
    dovecot.deliver(LOGIN, raw.encode(), folder="INBOX")
    with _open(_box(dovecot)) as session:
        session.examine("INBOX")
        uid = session.uids_from(1)[-1]
        fetched = session.fetch_message_ids([uid])[uid]
    stored = email_key(bound_id(parse_message(raw.encode(), internal_date=None).message_id))
    assert reidentified_key(fetched) == stored
