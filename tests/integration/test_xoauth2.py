"""XOAUTH2 logins against a real Dovecot that checks tokens at a local introspection endpoint."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from syncd.config import MailboxConfig
from syncd.connectors.imap import ImapSession
from syncd.errors import CredentialsError
from tests.mail import make_message
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.dovecot

TOKENS = {"ya29.valid-token-for-rep": "rep"}


class Introspection(BaseHTTPRequestHandler):
    """RFC 7662: {"active": true, "username": ...} for a known token, else inactive."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        user = TOKENS.get((form.get("token") or [""])[0])
        body = json.dumps({"active": True, "username": user} if user else {"active": False})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def oauth_dovecot() -> Iterator[Dovecot]:
    issuer = ThreadingHTTPServer(("127.0.0.1", 0), Introspection)
    threading.Thread(target=issuer.serve_forever, daemon=True).start()
    server = Dovecot(
        Path(tempfile.mkdtemp(prefix="syncd-test-oauth-")),
        {"rep": "an-unrelated-password"},
        oauth2_introspection_url=f"http://127.0.0.1:{issuer.server_address[1]}/introspect",
    ).start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)
    issuer.shutdown()


def _box(server: Dovecot, token: str) -> MailboxConfig:
    return MailboxConfig(
        name="rep", owner="rep@example.com", host="127.0.0.1", port=server.port,
        security="plain", username="rep", auth="xoauth2", password=token, folders=["INBOX"],
    )  # fmt: skip


def test_a_valid_token_logs_in_and_a_wrong_one_is_a_credentials_error(
    oauth_dovecot: Dovecot,
) -> None:
    with ImapSession.open(
        _box(oauth_dovecot, "ya29.valid-token-for-rep"),
        lambda: "ya29.valid-token-for-rep",
        max_bytes=0,
    ) as session:
        assert session.examine("INBOX").uidvalidity > 0
    with pytest.raises(CredentialsError):
        ImapSession.open(_box(oauth_dovecot, "x"), lambda: "ya29.expired", max_bytes=0)


def test_sync_with_a_token_from_a_command(oauth_dovecot: Dovecot, tmp_path: Path) -> None:
    oauth_dovecot.deliver("rep", make_message(message_id="<oauth@acme.com>"))
    config = tmp_path / "syncd.toml"
    # A token helper (here: echo) prints a fresh access token; syncd never stores it.
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\n'
        '[organization]\ninternal_domains = ["example.com"]\n'
        '[[mailbox]]\nname = "rep"\nowner = "rep@example.com"\nhost = "127.0.0.1"\n'
        f'port = {oauth_dovecot.port}\nsecurity = "plain"\nusername = "rep"\nauth = "xoauth2"\n'
        'password_command = "echo ya29.valid-token-for-rep"\nfolders = ["INBOX"]\n'
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "-vv", "sync"])
    assert result.exit_code == 0, result.output
    assert "rep: 1 captured" in result.output
    assert "ya29.valid-token-for-rep" not in result.output


def test_a_token_endpoint_echoing_the_request_leaks_no_spelling_of_the_secret(
    oauth_dovecot: Dovecot, tmp_path: Path
) -> None:
    # Some endpoints quote the refused request in error_description: the client secret as
    # the form carried it (URL-encoded), and base64 of it.  Nothing of it may reach the
    # command's output, `syncd status` or the database (source_states).
    import base64
    from urllib.parse import quote_plus

    from tests.servers.oauth2 import TokenServer

    secret = "cs-Echo+Secret/Value=77&z y"
    (tmp_path / "client.secret").write_text(secret + "\n")
    (tmp_path / "client.secret").chmod(0o600)
    with TokenServer({"syncd-app": secret}, echo=True) as tokens:
        config = tmp_path / "syncd.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\n'
            '[organization]\ninternal_domains = ["example.com"]\n'
            '[[mailbox_group]]\nname = "m365"\nhost = "127.0.0.1"\n'
            f'port = {oauth_dovecot.port}\nsecurity = "plain"\nfolders = ["INBOX"]\n'
            'members = ["rep@example.com"]\n'
            f'token_url = "{tokens.token_url}"\nclient_id = "syncd-app"\n'
            f'client_secret_file = "{tmp_path / "client.secret"}"\n'
        )
        synced = CliRunner().invoke(cli, ["--config", str(config), "-vv", "sync"])
        status = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
    assert synced.exit_code == 1 and "rejected the request" in synced.output, synced.output
    assert "[redacted]" in synced.output
    database = (tmp_path / "db.sqlite").read_bytes().decode("latin-1")
    for text in (synced.output, status.output, database):
        for needle in (secret, quote_plus(secret), "Echo+Secret", "Echo%2BSecret"):
            assert needle not in text
        assert base64.b64encode(f"syncd-app:{secret}".encode()).decode() not in text
