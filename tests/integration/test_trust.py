"""ca_file adds a private CA to the system's; ca_only = true trusts it alone.

The private CA is the suite's Dovecot's self-signed certificate; the HTTPS side is a real
TLS server on loopback with the same certificate."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import niquests
import pytest

from syncd.config import CalendarConfig, MailboxConfig, parse_config
from syncd.connectors.dav import _trusted_cas
from syncd.connectors.imap import ImapSession, tls_context
from syncd.errors import ConfigError
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.dovecot


def _system_cas() -> int:
    count = len(ssl.create_default_context().get_ca_certs())
    assert count > 0, "this host has no system CAs to keep"
    return count


def test_imap_trusts_the_system_and_the_private_ca(dovecot: Dovecot) -> None:
    assert dovecot.cert_file is not None
    added = tls_context(str(dovecot.cert_file)).get_ca_certs()
    assert len(added) == _system_cas() + 1
    only = tls_context(str(dovecot.cert_file), ca_only=True).get_ca_certs()
    assert len(only) == 1
    # Both still reach the server whose certificate only the private CA signed.
    for ca_only in (False, True):
        box = MailboxConfig(
            name="alice", owner="alice@example.com", host="127.0.0.1", port=dovecot.tls_port,
            security="tls", username="user298", password=dovecot.users["user298"],
            ca_file=str(dovecot.cert_file), ca_only=ca_only,
        )  # fmt: skip
        session = ImapSession.open(box, lambda b=box: b.password.get_secret_value(), max_bytes=0)  # type: ignore[union-attr]
        assert "IMAP4REV1" in session.capabilities()
        session.close()


@pytest.fixture
def https_server(dovecot: Dovecot) -> Iterator[str]:
    assert dovecot.cert_file is not None

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(dovecot.cert_file, dovecot.cert_file.with_name("key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_caldav_trusts_the_system_and_the_private_ca(dovecot: Dovecot, https_server: str) -> None:
    cert = str(dovecot.cert_file)

    def calendar(**keys: object) -> CalendarConfig:
        return CalendarConfig(
            name="c", owner="alice@example.com", url=https_server, username="alice",
            password="x", **keys,  # type: ignore[arg-type]
        )  # fmt: skip

    added = _trusted_cas(calendar(ca_file=cert))
    assert isinstance(added, str)
    assert added.count("-----BEGIN CERTIFICATE-----") == _system_cas() + 1
    assert _trusted_cas(calendar(ca_file=cert, ca_only=True)) == cert
    assert _trusted_cas(calendar()) is True
    for verify in (added, cert):
        assert niquests.get(https_server, verify=verify, timeout=5).status_code == 200
    with pytest.raises(niquests.exceptions.SSLError):
        niquests.get(https_server, verify=True, timeout=5)


def test_ca_only_needs_a_ca_file() -> None:
    with pytest.raises(ConfigError, match="ca_only"):
        parse_config(
            {
                "mailbox": [
                    {"name": "a", "owner": "a@example.com", "host": "imap.example.com",
                     "username": "a", "password": "x", "ca_only": True}
                ]
            }
        )  # fmt: skip
