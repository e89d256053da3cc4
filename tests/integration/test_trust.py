"""ca_file adds a private CA to the system's; ca_only = true trusts it alone.

The private CA is the suite's Dovecot's self-signed certificate; the HTTPS side is a real
TLS server on loopback with the same certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import niquests
import pytest
import wassima
import wassima._os._linux

from syncd.config import CalendarConfig, MailboxConfig
from syncd.config_file import parse_config
from syncd.connectors.dav import CalDavSession, _trusted_cas
from syncd.connectors.imap import ImapSession, tls_context
from syncd.connectors.trust import system_ca_bundle
from syncd.errors import ConfigError, RemoteConfigError
from tests.servers.dovecot import Dovecot
from tests.servers.oauth2 import self_signed

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


@contextmanager
def _serving(cert: Path, key: Path) -> Iterator[str]:
    """An HTTPS server on loopback presenting ``cert``; yields its URL."""

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
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def https_server(dovecot: Dovecot) -> Iterator[str]:
    assert dovecot.cert_file is not None
    with _serving(dovecot.cert_file, dovecot.cert_file.with_name("key.pem")) as url:
        yield url


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
    system = _trusted_cas(calendar())
    assert system.count("-----BEGIN CERTIFICATE-----") == _system_cas()
    for verify in (added, cert):
        assert niquests.get(https_server, verify=verify, timeout=5).status_code == 200
    for verify in (system, True):
        with pytest.raises(niquests.exceptions.SSLError):
            niquests.get(https_server, verify=verify, timeout=5)


@pytest.fixture
def snakeoil_under_etc_ssl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Path]]:
    """What Debian's ssl-cert package does: a self-signed certificate for this host among the
    PEM files under /etc/ssl.  Here under a folder of ours that the HTTP client's own trust
    store (wassima) is pointed at, so the real /etc/ssl stays untouched."""
    etc_ssl = tmp_path / "etc-ssl"
    (etc_ssl / "certs").mkdir(parents=True)
    cert, key = self_signed(etc_ssl / "certs")
    cert = cert.rename(etc_ssl / "certs" / "ssl-cert-snakeoil.pem")
    (etc_ssl / "private").mkdir()
    key = key.rename(etc_ssl / "private" / "ssl-cert-snakeoil.key")
    monkeypatch.setattr(
        wassima._os._linux,
        "BUNDLE_TRUST_STORE_DIRECTORIES",
        [*wassima._os._linux.BUNDLE_TRUST_STORE_DIRECTORIES, str(etc_ssl)],
    )
    wassima.root_der_certificates.cache_clear()
    wassima.root_pem_certificates.cache_clear()
    yield cert, key
    wassima.root_der_certificates.cache_clear()
    wassima.root_pem_certificates.cache_clear()


def test_caldav_refuses_a_snakeoil_certificate_lying_under_etc_ssl(
    dovecot: Dovecot, snakeoil_under_etc_ssl: tuple[Path, Path]
) -> None:
    cert, key = snakeoil_under_etc_ssl
    # The HTTP client's default store now holds it, as on a Debian host with ssl-cert.
    assert cert.read_text().strip() in wassima.generate_ca_bundle()
    assert cert.read_text().strip() not in system_ca_bundle()
    with _serving(cert, key) as url:
        for keys in ({}, {"ca_file": str(dovecot.cert_file)}):  # system CAs, or plus a private CA
            config = CalendarConfig(
                name="c", owner="alice@example.com", url=url, username="alice",
                password="x", **keys,  # type: ignore[arg-type]
            )  # fmt: skip
            with (
                pytest.raises(RemoteConfigError, match="not trusted"),
                CalDavSession(config, lambda: "x") as session,
            ):
                session.discover()


def test_without_a_bundle_file_the_hashed_certificates_are_the_system_cas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system with only OpenSSL's hashed directory: the certificates OpenSSL would look up
    there, not the other PEM files lying beside them."""
    for name in ("ca", "stray", "certs"):
        (tmp_path / name).mkdir()
    trusted, _ = self_signed(tmp_path / "ca")
    stray, _ = self_signed(tmp_path / "stray")
    certs = tmp_path / "certs"
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(trusted)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    shutil.copyfile(trusted, certs / f"{subject_hash}.0")
    shutil.copyfile(stray, certs / "ssl-cert-snakeoil.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(certs))
    bundle = system_ca_bundle()
    assert bundle.count("-----BEGIN CERTIFICATE-----") == 1
    assert trusted.read_text().strip() in bundle
    assert stray.read_text().strip() not in bundle


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
