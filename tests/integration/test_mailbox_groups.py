"""[[mailbox_group]] against a real Dovecot: a master user (passwd-file passdb with
master = yes, separator "*") and XOAUTH2 with tokens from a local token endpoint that
Dovecot's oauth2 passdb checks by RFC 7662 introspection."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli.main import cli
from syncd.config_file import load_config
from syncd.engine.sources import configured_sources
from syncd.store.database import open_database
from syncd.store.directory import load_directory
from tests.daemon import SYNCD, DaemonProcess, stop_all, wait_until
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.oauth2 import TokenServer, self_signed

pytestmark = pytest.mark.dovecot

REPS = 50
MASTER_PASSWORD = "m4ster-Pa55word-xyz"
SOLO_PASSWORD = "solo-Pa55word-abc"
_clients = itertools.count(1)


@dataclass
class Servers:
    dovecot: Dovecot
    tokens: TokenServer
    cert: Path


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    root = Path(tempfile.mkdtemp(prefix="syncd-test-groups-"))
    cert, key = self_signed(root)  # Dovecot and the token endpoint share it
    tokens = TokenServer({}, cert_file=cert, key_file=key).start()
    users = {f"rep{n}@example.com": f"own-pw-{n}" for n in range(REPS)}
    users["solo"] = SOLO_PASSWORD
    dovecot = Dovecot(
        root,
        users,
        tls=True,
        oauth2_introspection_url=tokens.introspection_url,
        oauth2_username_format="%d",  # an app-only token is good for any mailbox of its domain
        master_users={"syncadmin": MASTER_PASSWORD},
    ).start()
    yield Servers(dovecot, tokens, cert)
    dovecot.stop()
    tokens.stop()
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Client:
    """A client registered with the token endpoint for one test."""

    id: str
    secret: str
    tokens: TokenServer

    def requests(self) -> int:
        return sum(1 for r in list(self.tokens.token_requests) if r["client_id"] == self.id)


@pytest.fixture
def client(servers: Servers) -> Client:
    servers.tokens.expires_in = 3600
    servers.tokens.delay = 0.0
    n = next(_clients)
    found = Client(f"syncd-app-{n}", f"cs-{n}-Sup3r-Secret-Value", servers.tokens)
    servers.tokens.clients[found.id] = found.secret
    return found


def _reps(first: int, count: int) -> list[str]:
    return [f"rep{n}@example.com" for n in range(first, first + count)]


def _group(servers: Servers, tmp_path: Path, name: str, credential: str, members: str) -> str:
    return (
        f'[[mailbox_group]]\nname = "{name}"\nhost = "127.0.0.1"\n'
        f'port = {servers.dovecot.tls_port}\nsecurity = "tls"\nca_file = "{servers.cert}"\n'
        f'folders = ["INBOX"]\n{members}{credential}'
    )


def _master(tmp_path: Path) -> str:
    (tmp_path / "master.pass").write_text(MASTER_PASSWORD + "\n")
    (tmp_path / "master.pass").chmod(0o600)
    return f'login_user = "%u*syncadmin"\npassword_file = "{tmp_path / "master.pass"}"\n'


def _xoauth2(servers: Servers, tmp_path: Path, client: Client) -> str:
    secret = tmp_path / "client.secret"
    secret.write_text(client.secret + "\n")
    secret.chmod(0o600)
    return (
        f'token_url = "{servers.tokens.token_url}"\nclient_id = "{client.id}"\n'
        f'client_secret_file = "{secret}"\nscope = "imap.access-as-app"\n'
    )


def _write(tmp_path: Path, *parts: str, extra: str = "") -> Path:
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n'
        '[organization]\ninternal_domains = ["example.com"]\n' + extra + "\n".join(parts)
    )
    return config


def _cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def _deliver(servers: Servers, rep: str, tag: str) -> None:
    servers.dovecot.deliver(
        rep,
        make_message(to=rep, message_id=f"<{tag}.{rep}@acme.com>", subject=f"{tag} for {rep}"),
    )


def _no_secret_in(texts: list[str], secrets: list[str]) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_a_master_user_group_captures_mail_for_every_rep(servers: Servers, tmp_path: Path) -> None:
    reps = _reps(0, 3)
    (tmp_path / "reps.csv").write_text("owner\n" + "\n".join(reps) + "\n")
    for rep in reps:
        _deliver(servers, rep, "master")
    config = _write(
        tmp_path,
        _group(servers, tmp_path, "sales", _master(tmp_path), 'members_file = "reps.csv"\n'),
    )
    checked = _cli(config, "check")
    assert checked.exit_code == 0, checked.output
    for rep in reps:
        assert (
            f"{rep} (tls://127.0.0.1:{servers.dovecot.tls_port} as {rep}*syncadmin, password, mailbox group sales)"
            in checked.output
        )
    assert checked.output.count("login: ok") == 3
    synced = _cli(config, "sync")
    assert synced.exit_code == 0, synced.output
    for rep in reps:
        assert f"{rep}: 1 captured" in synced.output
    records = json.loads(_cli(config, "records", "list", "--json").stdout)
    assert sorted(s["mailbox"] for r in records for s in r["sources"]) == reps
    status = _cli(config, "status")
    assert "mailbox group sales: 3 mailboxes, ok" in status.output
    _no_secret_in([checked.output, synced.output, status.output], [MASTER_PASSWORD])


def test_a_client_credentials_group_captures_mail_with_one_token(
    servers: Servers, tmp_path: Path, client: Client
) -> None:
    reps = _reps(3, 3)
    for rep in reps:
        _deliver(servers, rep, "app")
    members = "members = [" + ", ".join(f'"{r}"' for r in reps) + "]\n"
    config = _write(
        tmp_path, _group(servers, tmp_path, "m365", _xoauth2(servers, tmp_path, client), members)
    )
    synced = _cli(config, "-vv", "sync")
    assert synced.exit_code == 0, synced.output
    for rep in reps:
        assert f"{rep}: 1 captured" in synced.output
    assert client.requests() == 1  # three logins, one token
    checked = _cli(config, "check")
    assert checked.exit_code == 0 and checked.output.count("login: ok") == 3, checked.output
    issued = list(servers.tokens.issued)
    database = (tmp_path / "syncd.db").read_bytes().decode("latin-1")
    _no_secret_in([synced.output, checked.output, database], [client.secret, *issued])


def test_fifty_mailboxes_syncing_at_once_share_one_token_request(
    servers: Servers, tmp_path: Path, client: Client
) -> None:
    servers.tokens.delay = 0.3  # the request is in flight while the other 49 log in
    reps = _reps(0, REPS)
    members = "members = [" + ", ".join(f'"{r}"' for r in reps) + "]\n"
    config_path = _write(
        tmp_path, _group(servers, tmp_path, "all", _xoauth2(servers, tmp_path, client), members)
    )
    config = load_config(config_path)
    engine = open_database(config.database.url, pool_size=REPS)
    with engine.connect() as conn:
        directory = load_directory(conn, config.capture)
    sources = configured_sources(engine, config)
    assert len(sources) == REPS
    with ThreadPoolExecutor(REPS) as pool:
        reports = list(pool.map(lambda s: s.sync(directory), sources))
    assert [r.reason() for r in reports if not r.ok] == []
    assert client.requests() == 1
    engine.dispose()


def test_a_refresh_token_group_has_a_token_per_rep(
    servers: Servers, tmp_path: Path, client: Client
) -> None:
    reps = _reps(20, 2)
    rows = ["owner,username,refresh_token_file"]
    for rep in reps:
        _deliver(servers, rep, "consent")
        token = f"rt-{client.id}-{rep}"
        servers.tokens.refresh_tokens[token] = rep
        (tmp_path / f"{rep}.rt").write_text(token + "\n")
        rows.append(f"{rep},,{tmp_path / f'{rep}.rt'}")
    (tmp_path / "reps.csv").write_text("\n".join(rows) + "\n")
    credential = _xoauth2(servers, tmp_path, client) + 'grant = "refresh_token"\n'
    config = _write(
        tmp_path, _group(servers, tmp_path, "gmail", credential, 'members_file = "reps.csv"\n')
    )
    synced = _cli(config, "sync")
    assert synced.exit_code == 0, synced.output
    assert all(f"{rep}: 1 captured" in synced.output for rep in reps)
    assert client.requests() == 2  # one refresh per rep: each has their own consent
    # One rep revokes their consent: only their mailbox fails, saying what to do.
    servers.tokens.refresh_tokens.pop(f"rt-{client.id}-{reps[0]}")
    # Each command owns its token caches (group_tokens.TokenCaches): this one asks afresh.
    synced = _cli(config, "sync")
    assert synced.exit_code == 1
    assert (
        f"{reps[0]}: FAILED: mailbox group gmail (mailbox {reps[0]}): the token endpoint refused the refresh token"
        in synced.output
    )
    assert "have them consent again" in synced.output
    assert f"{reps[1]}: 0 captured" in synced.output
    _no_secret_in([synced.output], [f"rt-{client.id}-{reps[1]}", client.secret])


@pytest.mark.daemon
def test_a_revoked_client_secret_puts_the_group_in_attention_without_a_storm(
    servers: Servers, tmp_path: Path, client: Client
) -> None:
    servers.tokens.expires_in = 3  # cached for 2.25 s, then asked again
    reps = _reps(10, 3)
    (tmp_path / "reps.csv").write_text("owner\n" + "\n".join(reps) + "\n")
    for rep in reps:
        _deliver(servers, rep, "before")
    (tmp_path / "solo.pass").write_text(SOLO_PASSWORD)
    solo = (
        '[[mailbox]]\nname = "solo"\nowner = "solo@example.com"\nhost = "127.0.0.1"\n'
        f'port = {servers.dovecot.port}\nsecurity = "plain"\nusername = "solo"\n'
        f'password_file = "{tmp_path / "solo.pass"}"\nfolders = ["INBOX"]\n'
    )
    group = _group(
        servers,
        tmp_path,
        "m365",
        _xoauth2(servers, tmp_path, client),
        'members_file = "reps.csv"\n',
    )
    # Kept sessions stay logged in after a revoke (the server accepted the token): every poll
    # logs in here, so that each one would ask the endpoint again if the refusal were not kept.
    extra = "[sync]\ninterval = 1\njitter = 0\nkeep_connections = 0\n"
    config = _write(tmp_path, group, solo, extra=extra)
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, log).start()
    try:
        # Records are read through a config of their own: the daemon's is broken on purpose
        # below, and a command loading it would refuse it as the daemon does.
        reader = tmp_path / "reader.toml"
        reader.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')

        def captured() -> int:
            return len(json.loads(_cli(reader, "records", "list", "--json").stdout))

        wait_until(lambda: captured() == 3, 30, "the group's mail")
        before = client.requests()
        assert before >= 1
        servers.tokens.revoke_client(client.id)

        def group_failing() -> bool:
            doc = json.loads(_cli(config, "status", "--json").stdout)
            return [g["failing"] for g in doc["groups"]] == [3]

        wait_until(group_failing, 30, "the group to need attention")
        # Polls every second for a while: neither the mailboxes nor the endpoint are retried.
        servers.dovecot.deliver(
            "solo", make_message(to="solo@example.com", message_id="<s1@acme.com>")
        )
        wait_until(lambda: captured() == 4, 30, "the password mailbox's mail")
        servers.dovecot.deliver(
            "solo", make_message(to="solo@example.com", message_id="<s2@acme.com>")
        )
        wait_until(lambda: captured() == 5, 30, "more of the password mailbox's mail")
        assert client.requests() == before + 1  # the refused one, and no other

        status = _cli(config, "status")
        assert status.exit_code == 2
        line = next(x for x in status.output.splitlines() if x.startswith("mailbox group m365"))
        assert (
            "3 mailboxes, failing; 3 failing: needs attention: mailbox group m365: the token endpoint refused client"
            in line
        )
        assert (
            "invalid_client" in line
            and "(fix: the client secret is wrong, expired or revoked, or client_id" in line
        )
        doc = json.loads(_cli(config, "status", "--json").stdout)
        members = [s for s in doc["sources"] if s.get("group") == "m365"]
        assert [m["activity"]["state"] for m in members] == ["attention"] * 3
        solo_state = next(s for s in doc["sources"] if s.get("mailbox") == "solo")
        assert solo_state["state"] == "ok"

        # A members file with a bad row is refused on SIGHUP; the running config goes on.
        (tmp_path / "reps.csv").write_text("owner\n" + "\n".join(reps) + "\nnot-an-address\n")
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "config.reload_refused" in log.read_text(), 15, "the refusal")
        assert "reps.csv line 5: owner 'not-an-address' is not an email address" in log.read_text()
        servers.dovecot.deliver(
            "solo", make_message(to="solo@example.com", message_id="<s3@acme.com>")
        )
        wait_until(lambda: captured() == 6, 30, "mail after the refused reload")
        assert client.requests() == before + 1

        # Each mailbox of the group was tried once after the revocation, not in a loop.
        failures = [x for x in log.read_text().splitlines() if '"mailbox.failed"' in x]
        assert sorted(json.loads(x)["mailbox"] for x in failures) == reps

        texts = [log.read_text(), status.output, json.dumps(doc)]
        texts.append((tmp_path / "syncd.db").read_bytes().decode("latin-1"))
        wal = tmp_path / "syncd.db-wal"
        if wal.exists():
            texts.append(wal.read_bytes().decode("latin-1"))
        _no_secret_in(texts, [client.secret, *servers.tokens.issued])
    finally:
        daemon.close()


@pytest.mark.daemon
@pytest.mark.postgres
def test_two_daemons_on_postgresql_share_a_master_user_group_and_an_xoauth2_group(
    servers: Servers, tmp_path: Path, client: Client, pg_admin: str
) -> None:
    """The fleet and the service credentials together: two `syncd run` on one PostgreSQL
    share both groups' mailboxes, each mailbox captured by one of them, once."""
    from sqlalchemy import func, select

    from syncd.schema.tables import records, source_health
    from tests.servers.postgres import scratch_database

    sales, m365 = _reps(30, 6), _reps(40, 6)
    (tmp_path / "sales.csv").write_text("owner\n" + "\n".join(sales) + "\n")
    for rep in sales + m365:
        _deliver(servers, rep, "fleet")
    groups = (
        _group(servers, tmp_path, "sales", _master(tmp_path), 'members_file = "sales.csv"\n')
        + "\n"
        + _group(
            servers, tmp_path, "m365", _xoauth2(servers, tmp_path, client),
            "members = [" + ", ".join(f'"{r}"' for r in m365) + "]\n",
        )
    )  # fmt: skip
    with scratch_database(pg_admin) as url:
        config = tmp_path / "syncd.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n[organization]\ninternal_domains = ["example.com"]\n'
            "[sync]\ninterval = 600\n" + groups
        )
        engine = open_database(url)
        daemons = [DaemonProcess(config, tmp_path / f"daemon-{n}.log").start() for n in range(2)]
        try:

            def counts() -> tuple[int, int]:
                with engine.connect() as conn:
                    total = conn.scalar(select(func.count()).select_from(records))
                    keys = conn.scalar(select(func.count(func.distinct(records.c.key))))
                return int(total or 0), int(keys or 0)

            wait_until(lambda: counts()[0] == 12, 60, "both groups' backlog")

            def holders() -> dict[str, str]:
                with engine.connect() as conn:
                    rows = conn.execute(select(source_health.c.name, source_health.c.daemon_id))
                    return {str(name): str(holder) for name, holder in rows if holder}

            wait_until(lambda: len(set(holders().values())) == 2, 30, "both daemons holding")
            # New mail after the start reaches each mailbox's holder by IDLE.
            for rep in sales + m365:
                _deliver(servers, rep, "later")
            wait_until(lambda: counts()[0] == 24, 60, "the new mail")
            assert counts() == (24, 24)
            status = _cli(config, "status")
            assert "mailbox group sales: 6 mailboxes, ok" in status.output, status.output
            assert "mailbox group m365: 6 mailboxes, ok" in status.output, status.output
            stop_all(daemons)
        finally:
            for daemon in daemons:
                daemon.close()
            engine.dispose()
    logs = [(tmp_path / f"daemon-{n}.log").read_text() for n in range(2)]
    _no_secret_in(logs, [MASTER_PASSWORD, client.secret, *servers.tokens.issued])


def test_a_rotated_refresh_token_survives_a_restart_of_syncd(
    servers: Servers, tmp_path: Path, client: Client
) -> None:
    # A provider that rotates refresh tokens and answers invalid_grant to a spent one: the
    # file still holds the first token after syncd exchanged it.  Each `syncd sync` is a
    # process of its own, as a restart is: the newest token must come from the database.
    rep = "rep48@example.com"
    first = f"rt-{client.id}-first"
    servers.tokens.refresh_tokens[first] = rep
    (tmp_path / "rep48.rt").write_text(first + "\n")
    (tmp_path / "rep48.rt").chmod(0o600)
    (tmp_path / "reps.csv").write_text(f"owner,refresh_token_file\n{rep},{tmp_path / 'rep48.rt'}\n")
    credential = _xoauth2(servers, tmp_path, client) + 'grant = "refresh_token"\n'
    config = _write(
        tmp_path, _group(servers, tmp_path, "gmail", credential, 'members_file = "reps.csv"\n')
    )
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}

    def sync() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SYNCD, "--config", str(config), "sync"],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip

    servers.tokens.rotate_refresh = True
    try:
        outputs = []
        for n in range(3):
            _deliver(servers, rep, f"restart{n}")
            done = sync()
            outputs += [done.stdout, done.stderr]
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"{rep}: 1 captured" in done.stdout
    finally:
        servers.tokens.rotate_refresh = False
    assert client.requests() == 3  # one refresh per run, each with the newest token
    assert first not in servers.tokens.refresh_tokens
    newest = [t for t, who in servers.tokens.refresh_tokens.items() if who == rep]
    database = (tmp_path / "syncd.db").read_bytes().decode("latin-1")
    _no_secret_in([*outputs, database], [first, *newest, client.secret])
