"""The token cache of a [[mailbox_group]] against a real local token endpoint: one request
serves every mailbox, tokens are renewed before they expire, a refusal is remembered (no
storm), passing failures are retried, TLS is verified, and no secret is ever shown."""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from syncd.config import GroupMemberConfig, OAuth2ClientConfig
from syncd.connectors.oauth2 import Grant, TokenCache
from syncd.errors import CredentialsError, RemoteConfigError, TransientError
from syncd.group_tokens import TokenCaches
from tests.daemon import wait_until
from tests.servers.oauth2 import TokenServer, self_signed

SECRET = "cs-Very-Secret-Value-42"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("oauth2"))


@pytest.fixture
def server(tls_files: tuple[Path, Path]) -> Iterator[TokenServer]:
    cert, key = tls_files
    with TokenServer({"syncd-app": SECRET}, cert_file=cert, key_file=key) as started:
        yield started


def _settings(server: TokenServer, ca_file: Path | None, **extra: object) -> OAuth2ClientConfig:
    return OAuth2ClientConfig(
        group="sales",
        token_url=server.token_url,
        client_id="syncd-app",
        client_secret_env="UNUSED",
        scope="https://outlook.example.com/.default",
        ca_file=str(ca_file) if ca_file else None,
        **({"timeout": 5} | extra),  # type: ignore[arg-type]
    )


def test_fifty_mailboxes_at_once_cause_one_token_request(
    server: TokenServer, tls_files: tuple[Path, Path]
) -> None:
    server.delay = 0.3  # the first request is still in flight when the others ask
    cache = TokenCache(_settings(server, tls_files[0]), "mailbox group sales")
    with ThreadPoolExecutor(50) as pool:
        tokens = list(pool.map(lambda _: cache.get(lambda: Grant(SECRET)), range(50)))
    assert server.requests_count() == 1 == cache.requests
    assert len(set(tokens)) == 1 and tokens[0] in server.issued
    assert server.token_requests == [{"grant_type": "client_credentials", "client_id": "syncd-app"}]
    # Nothing that holds a secret prints it, whatever logs it.
    assert SECRET not in repr(Grant(SECRET, "rt-1234")) and "rt-1234" not in repr(
        Grant(SECRET, "rt-1234")
    )
    assert tokens[0] not in repr(cache._token)


def test_a_token_is_renewed_shortly_before_it_expires(
    server: TokenServer, tls_files: tuple[Path, Path]
) -> None:
    server.expires_in = 2  # renewed a quarter of its life (0.5 s) early
    cache = TokenCache(_settings(server, tls_files[0]), "g")
    first = cache.get(lambda: Grant(SECRET))
    assert cache.get(lambda: Grant(SECRET)) == first and server.requests_count() == 1
    time.sleep(1.6)
    assert cache.get(lambda: Grant(SECRET)) != first
    assert server.requests_count() == 2


def test_a_revoked_secret_is_asked_about_once_until_it_changes(
    server: TokenServer, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(SECRET + "\n")
    member = GroupMemberConfig(
        name="dana@example.com", owner="dana@example.com", username="dana@example.com",
        host="127.0.0.1", group="sales", auth="xoauth2",
        oauth2=replace(
            _settings(server, tls_files[0]), client_secret_env=None, client_secret_file=str(secret_file)
        ),
    )  # fmt: skip
    eve = replace(member, name="eve@example.com", username="eve@example.com")
    caches = TokenCaches()  # the process's, as the daemon or a command owns them
    first = caches.member_token(member)
    assert caches.member_token(eve) == first and server.requests_count() == 1  # one token, both
    server.revoke_client("syncd-app")
    caches.cache_for(member)._token = None  # as if it had expired: the next login asks again
    with pytest.raises(CredentialsError) as caught:
        caches.member_token(member)
    err = caught.value
    assert "invalid_client" in err.message and "refused client 'syncd-app'" in err.message
    assert err.hint is not None and "client_secret_file" in err.hint
    assert SECRET not in str(err) + (err.hint or "")
    # Every other mailbox of the group, any number of times: the same answer, no request.
    for _ in range(20):
        with pytest.raises(CredentialsError):
            caches.member_token(eve)
    assert server.requests_count() == 2
    # A new secret in the file is tried at the next attempt, and works.
    server.clients["syncd-app"] = "cs-rotated-secret-43"
    secret_file.write_text("cs-rotated-secret-43\n")
    assert caches.member_token(member) in server.issued
    assert server.requests_count() == 3


def test_a_server_failure_is_transient_and_retried_a_bounded_number_of_times(
    server: TokenServer, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("syncd.connectors.oauth2.TRANSIENT_FOR", 1.0)
    server.fail_with = 503
    cache = TokenCache(_settings(server, tls_files[0]), "mailbox group sales")
    with pytest.raises(TransientError, match="HTTP 503"):
        cache.get(lambda: Grant(SECRET))
    assert server.requests_count() == 3  # the REQUEST policy's attempts
    with pytest.raises(TransientError):  # asked again at once: the same failure, no request
        cache.get(lambda: Grant(SECRET))
    assert server.requests_count() == 3
    server.fail_with = None
    time.sleep(1.1)
    assert cache.get(lambda: Grant(SECRET)) in server.issued


def test_the_endpoints_certificate_is_verified(server: TokenServer) -> None:
    cache = TokenCache(_settings(server, None), "mailbox group sales")
    with pytest.raises(RemoteConfigError, match="certificate is not trusted") as caught:
        cache.get(lambda: Grant(SECRET))
    assert caught.value.hint is not None and "ca_file" in caught.value.hint
    assert server.requests_count() == 0


def test_a_refresh_token_grant_names_the_rep_who_must_consent_again(
    server: TokenServer, tls_files: tuple[Path, Path]
) -> None:
    server.refresh_tokens["rt-dana-1234"] = "dana@example.com"
    cache = TokenCache(
        _settings(server, tls_files[0], grant="refresh_token"), "mailbox group g (mailbox dana)"
    )
    token = cache.get(lambda: Grant(SECRET, "rt-dana-1234"))
    assert server.issued[token] == "dana@example.com"
    other = TokenCache(_settings(server, tls_files[0], grant="refresh_token"), "g (mailbox eve)")
    with pytest.raises(CredentialsError, match="refused the refresh token") as caught:
        other.get(lambda: Grant(SECRET, "rt-eve-revoked"))
    assert "rt-eve-revoked" not in str(caught.value) and "consent again" in (
        caught.value.hint or ""
    )


def test_a_slow_endpoint_holds_one_login_and_the_others_give_up_soon(
    server: TokenServer, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("syncd.connectors.oauth2.WAIT_FOR_REQUEST", 0.3)
    server.delay = 1.5
    cache = TokenCache(_settings(server, tls_files[0]), "mailbox group sales")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(cache.get, lambda: Grant(SECRET))
        wait_until(lambda: server.requests_count() == 1, 5, "the first request in flight")
        started = time.monotonic()
        with pytest.raises(TransientError, match="has not answered another mailbox's request"):
            cache.get(lambda: Grant(SECRET))
        assert time.monotonic() - started < 1.2  # did not wait for the whole request
        assert first.result() in server.issued
    assert server.requests_count() == 1


def test_a_rotated_refresh_token_is_used_from_then_on(
    server: TokenServer, tls_files: tuple[Path, Path]
) -> None:
    server.rotate_refresh = True
    server.refresh_tokens["rt-first-5678"] = "dana@example.com"
    cache = TokenCache(_settings(server, tls_files[0], grant="refresh_token"), "g (mailbox dana)")
    assert cache.get(lambda: Grant(SECRET, "rt-first-5678")) in server.issued
    assert "rt-first-5678" not in server.refresh_tokens  # the endpoint rotated it
    cache._token = None  # as if expired; the configured file still holds the first token
    assert cache.get(lambda: Grant(SECRET, "rt-first-5678")) in server.issued
    assert server.requests_count() == 2


def test_an_endpoint_that_does_not_answer_in_time_is_transient(
    server: TokenServer, tls_files: tuple[Path, Path]
) -> None:
    server.delay = 1.0
    cache = TokenCache(_settings(server, tls_files[0], timeout=0.3), "mailbox group sales")
    with pytest.raises(TransientError, match=r"the token endpoint failed|did not answer in whole"):
        cache.get(lambda: Grant(SECRET))
    # Retried by the REQUEST policy, then given up; within the whole request's deadline
    # (2 x 0.3 + 1 s) the third attempt may not start, and on a loaded machine a slow TLS
    # handshake may leave no room for the second: the deadline, not the count, is the promise.
    assert 1 <= server.requests_count() <= 3


def test_a_deeply_nested_answer_is_a_remembered_config_error_not_a_crash(
    server: TokenServer, tls_files: tuple[Path, Path]
) -> None:
    # 40,000 brackets fit the 64 KB read, and would blow Python's recursion limit in json.
    server.raw_answer = b"[" * 40_000
    cache = TokenCache(_settings(server, tls_files[0]), "mailbox group sales")
    with pytest.raises(RemoteConfigError, match="without a usable access_token"):
        cache.get(lambda: Grant(SECRET))
    for _ in range(10):  # every other mailbox of the group: the same answer, no request
        with pytest.raises(RemoteConfigError):
            cache.get(lambda: Grant(SECRET))
    assert server.requests_count() == 1


@pytest.mark.parametrize("form", ["seconds", "date"])
def test_the_endpoints_retry_after_holds_the_whole_group(
    server: TokenServer, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.setattr("syncd.connectors.oauth2.TRANSIENT_FOR", 0.2)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=121), usegmt=True)
    server.fail_with, server.retry_after = 429, "120" if form == "seconds" else later
    cache = TokenCache(_settings(server, tls_files[0]), "mailbox group sales")
    with pytest.raises(TransientError, match="HTTP 429") as caught:
        cache.get(lambda: Grant(SECRET))
    assert 100 < (caught.value.retry_after or 0) <= 121
    assert server.requests_count() == 1  # a wait over REQUEST's 30 s goes to the scheduler
    time.sleep(0.4)  # past the usual memory of a passing failure, within the endpoint's wish
    with pytest.raises(TransientError, match="HTTP 429") as again:
        cache.get(lambda: Grant(SECRET))  # another mailbox of the group, a moment later
    assert again.value.retry_after is not None and again.value.retry_after <= 121
    assert server.requests_count() == 1


def test_a_refused_credential_opens_no_connection_to_the_mail_server(
    server: TokenServer, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    import socket
    import threading

    from syncd.connectors.imap import ImapSession
    from syncd.secrets import read_secret

    # A stand-in mail server that greets and counts who connects.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("cs-wrong-secret-77\n")
    member = GroupMemberConfig(
        name="fay@example.com", owner="fay@example.com", username="fay@example.com",
        host="127.0.0.1", port=listener.getsockname()[1], security="plain", timeout=2,
        group="sales", auth="xoauth2",
        oauth2=replace(
            _settings(server, tls_files[0]), client_secret_env=None, client_secret_file=str(secret_file)
        ),
    )  # fmt: skip
    caches = TokenCaches()  # the process's, as the daemon or a command owns them
    try:
        for _ in range(3):  # the first asks the endpoint, the others get its remembered answer
            with pytest.raises(CredentialsError, match="refused client"):
                ImapSession.open(
                    member, lambda: read_secret(member, what="m", tokens=caches), max_bytes=0
                )
    finally:
        stop.set()
        thread.join()
        listener.close()
        for conn in accepted:
            conn.close()
    assert accepted == []
    assert server.requests_count() == 1


def test_a_refused_secret_command_is_not_run_at_every_login(
    server: TokenServer, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    # A command that asks a secret store: each run costs (a process, a request to the store)
    # and holds the group's lock; a revoked secret must not run it at each mailbox's login.
    runs = tmp_path / "runs"
    script = tmp_path / "secret.py"
    script.write_text(
        f"with open({str(runs)!r}, 'a') as f:\n    f.write('x')\nprint('cs-revoked-secret-88')\n"
    )
    command = f"{sys.executable} {script}"
    member = GroupMemberConfig(
        name="gil@example.com", owner="gil@example.com", username="gil@example.com",
        host="127.0.0.1", group="sales", auth="xoauth2",
        oauth2=replace(
            _settings(server, tls_files[0]), client_secret_env=None, client_secret_command=command
        ),
    )  # fmt: skip
    caches = TokenCaches()  # the process's, as the daemon or a command owns them
    for _ in range(20):
        with pytest.raises(CredentialsError, match="refused client"):
            caches.member_token(member)
    assert server.requests_count() == 1
    assert len(runs.read_text()) == 1


def test_a_refresh_token_file_that_is_not_a_token_is_not_read_whole_nor_sent(
    server: TokenServer, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    # A members_file row pointing at a huge file (or a device): bounded memory, and nothing
    # that is not a token goes to the endpoint.
    huge = tmp_path / "huge"
    with huge.open("wb") as file:
        file.truncate(200 * 1024 * 1024)  # sparse: no disk used
    (tmp_path / "secret").write_text(SECRET)
    member = GroupMemberConfig(
        name="hal@example.com", owner="hal@example.com", username="hal@example.com",
        host="127.0.0.1", group="sales", auth="xoauth2", refresh_token_file=str(huge),
        oauth2=replace(
            _settings(server, tls_files[0], grant="refresh_token"), client_secret_env=None, client_secret_file=str(tmp_path / "secret")
        ),
    )  # fmt: skip
    caches = TokenCaches()  # the process's, as the daemon or a command owns them
    with pytest.raises(CredentialsError, match=r"refresh_token_file .* is over 65,536 bytes"):
        caches.member_token(member)
    assert server.requests_count() == 0


@pytest.mark.parametrize("status", [400, 408])
def test_a_busy_endpoint_is_transient_whatever_its_status(
    server: TokenServer, tls_files: tuple[Path, Path], status: int
) -> None:
    # Microsoft's token endpoint documents error=temporarily_unavailable ("retry after a
    # small delay"); a 408 comes from a proxy in front.  Neither is a setting to fix, nor
    # worth holding the whole group for a quarter of an hour.
    server.fail_with = status  # answers {"error": "temporarily_unavailable"}
    cache = TokenCache(_settings(server, tls_files[0]), "mailbox group sales")
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        cache.get(lambda: Grant(SECRET))


def test_a_hung_endpoint_does_not_take_every_worker(
    server: TokenServer,
    tls_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # One login's token request hangs.  The group's other logins must give their worker
    # back soon, once (not once per LOGIN/PASS retry), and those that come when the request
    # has already hung that long must not wait at all: otherwise a group of thousands of
    # mailboxes, all due, keeps every worker of the daemon waiting on one endpoint.
    from syncd.connectors.imap import ImapSession
    from syncd.secrets import read_secret

    monkeypatch.setattr("syncd.connectors.oauth2.WAIT_FOR_REQUEST", 1.0)
    server.delay = 4.0
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    member = GroupMemberConfig(
        name="ida@example.com", owner="ida@example.com", username="ida@example.com",
        host="127.0.0.1", port=9, security="plain", group="sales", auth="xoauth2",
        oauth2=replace(
            _settings(server, tls_files[0]), client_secret_env=None, client_secret_file=str(secret_file)
        ),
    )  # fmt: skip
    caches = TokenCaches()  # the process's, as the daemon or a command owns them
    cache = caches.cache_for(member)
    entered: list[float] = []
    real_get = TokenCache.get

    def counting_get(self: TokenCache, read_grant: object, store: object = None) -> str:
        entered.append(time.monotonic())
        return real_get(self, read_grant, store)  # type: ignore[arg-type]

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(caches.member_token, member)
        wait_until(lambda: server.requests_count() == 1, 5, "its request in flight")
        monkeypatch.setattr(TokenCache, "get", counting_get)
        with pytest.raises(TransientError, match="has not answered") as caught:
            ImapSession.open(
                member, lambda: read_secret(member, what="m", tokens=caches), max_bytes=0
            )
        assert len(entered) == 1  # not retried inline: the scheduler tries again later
        assert caught.value.retry_after is not None and caught.value.retry_after >= 30
        time.sleep(0.9)  # the request has now hung longer than a login waits
        started = time.monotonic()
        with pytest.raises(TransientError, match="has not answered"):
            cache.get(lambda: Grant(SECRET))
        assert time.monotonic() - started < 0.5  # no wait at all (it was 1 s)
        assert first.result() in server.issued
    assert server.requests_count() == 1


# --- a slow endpoint, an odd Retry-After, an echoing endpoint, a rotated refresh token --------


def test_an_endpoint_that_dribbles_its_answer_is_cut_at_the_whole_request_deadline(
    server: TokenServer, tls_files: tuple[Path, Path]
) -> None:
    # One byte every 1.9 s: each read finishes within timeout = 2, the answer never does.
    # The login that asks waits the deadline (2 x 2 + 1 s), not the hours the answer takes,
    # and the group's other logins get its answer rather than a "busy" failure of their own.
    server.dribble = 1.9
    cache = TokenCache(_settings(server, tls_files[0], timeout=2), "mailbox group sales")

    def login(_: int) -> tuple[float, str]:
        started = time.monotonic()
        try:
            cache.get(lambda: Grant(SECRET))
        except TransientError as err:
            return time.monotonic() - started, err.message
        return time.monotonic() - started, "logged in"

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(login, range(10)))
    assert max(seconds for seconds, _ in results) < 6.5, results
    assert all("did not answer in whole within 5 s" in said for _, said in results), results
    assert server.requests_count() == 1  # the deadline covers the retries too


def test_logins_go_on_with_the_token_in_hand_while_a_slow_endpoint_renews_it(
    server: TokenServer, tls_files: tuple[Path, Path]
) -> None:
    cache = TokenCache(_settings(server, tls_files[0], timeout=2), "mailbox group sales")
    first = cache.get(lambda: Grant(SECRET))
    assert cache._token is not None
    cache._token = replace(cache._token, expires_at=time.monotonic())  # due for renewal
    server.dribble = 1.9
    with ThreadPoolExecutor(1) as pool:
        renewal = pool.submit(cache.get, lambda: Grant(SECRET))
        wait_until(lambda: server.requests_count() == 2, 5, "the renewal in flight")
        started = time.monotonic()
        assert [cache.get(lambda: Grant(SECRET)) for _ in range(20)] == [first] * 20
        assert time.monotonic() - started < 0.5  # no login waited on the renewal
        with pytest.raises(TransientError, match="did not answer in whole"):
            renewal.result()
    # Its renewal failed a moment ago, and the token still works: it serves on.
    assert cache.get(lambda: Grant(SECRET)) == first
    assert server.requests_count() == 2


@pytest.mark.parametrize("retry_after", ["\xb2", "1\xb9", "soon"])
def test_an_unreadable_retry_after_is_a_remembered_slow_down_for_fifty_logins(
    server: TokenServer, tls_files: tuple[Path, Path], retry_after: str
) -> None:
    # "\xb2" is a latin-1 header byte http.client decodes to "²": str.isdigit() says yes and
    # float() raises.  The ValueError escaped the cache unremembered: 50 logins, 50 requests.
    server.fail_with, server.retry_after = 429, retry_after
    server.delay = 0.3  # the first request is still in flight when the others ask
    cache = TokenCache(_settings(server, tls_files[0]), "mailbox group sales")

    def login(_: int) -> BaseException | None:
        try:
            cache.get(lambda: Grant(SECRET))
        except Exception as err:
            return err
        return None

    with ThreadPoolExecutor(50) as pool:
        errors = list(pool.map(login, range(50)))
    assert all(isinstance(err, TransientError) for err in errors), {type(e) for e in errors}
    assert server.requests_count() == 1
    waits = [err.retry_after for err in errors if isinstance(err, TransientError)]
    assert all(w is not None and 30 < w <= 60 for w in waits)  # the scheduler's, not LOGIN's


def test_an_endpoint_that_echoes_the_request_shows_no_encoding_of_the_secret(
    server: TokenServer, tls_files: tuple[Path, Path]
) -> None:
    secret = "cs-Very+Secret/Value=42&x y~"  # characters a form encodes
    server.echo = True
    cache = TokenCache(
        _settings(server, tls_files[0], grant="refresh_token"), "mailbox group g (mailbox dana)"
    )
    with pytest.raises(RemoteConfigError, match="rejected the request") as caught:
        cache.get(lambda: Grant(secret, "rt-dana/Refresh+Token=="))
    said = caught.value.message
    assert "cannot parse" in said and "[redacted]" in said  # the echo, cut
    for needle in (secret, quote_plus(secret), quote(secret, safe=""), "rt-dana"):
        assert needle not in said
    assert quote_plus("rt-dana/Refresh+Token==") not in said
    # No run of base64 in it decodes to either secret, however it was aligned.
    for run in re.findall(r"[A-Za-z0-9+/]{8,}={0,2}", said):
        for start in range(4):
            chunk = run[start:]
            decoded = base64.b64decode(chunk[: len(chunk) // 4 * 4] or "AAAA", validate=False)
            text = decoded.decode("latin-1")
            assert "Secret/Value" not in text and "Secret%2FValue" not in text
            assert "Refresh+Token" not in text and "Refresh%2BToken" not in text


def test_a_refresh_token_file_linked_out_of_its_folder_after_loading_is_not_read(
    server: TokenServer, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    # The config checked the members file's names; a link made later is checked at reading.
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "not-a-token").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tokens / "jo.rt").symlink_to(tmp_path / "not-a-token")
    member = GroupMemberConfig(
        name="jo@example.com", owner="jo@example.com", username="jo@example.com",
        host="127.0.0.1", group="sales", auth="xoauth2",
        refresh_token_file=str(tokens / "jo.rt"), refresh_token_dir=str(tokens),
        oauth2=replace(
            _settings(server, tls_files[0], grant="refresh_token"), client_secret_env=None, client_secret_file=str(tmp_path / "secret")
        ),
    )  # fmt: skip
    caches = TokenCaches()  # the process's, as the daemon or a command owns them
    with pytest.raises(CredentialsError, match=f"refresh_token_file .* is outside {tokens}"):
        caches.member_token(member)
    assert server.requests_count() == 0


def test_a_rotated_refresh_token_is_kept_encrypted_and_used_after_a_restart(
    server: TokenServer, tls_files: tuple[Path, Path], db_url: str
) -> None:
    # The endpoint rotates refresh tokens and answers invalid_grant to a spent one, as
    # providers that detect reuse do.  The file still holds the first token.
    from syncd.store.database import open_database
    from syncd.store.refresh_tokens import StoredRefreshTokens

    server.rotate_refresh = True
    server.refresh_tokens["rt-first-9012"] = "dana@example.com"
    settings = _settings(server, tls_files[0], grant="refresh_token")
    engine = open_database(db_url)
    try:
        store = StoredRefreshTokens(engine)
        first = TokenCache(settings, "g (mailbox dana)")
        assert first.get(lambda: Grant(SECRET, "rt-first-9012"), store) in server.issued
        rotated = set(server.refresh_tokens)
        assert "rt-first-9012" not in rotated
        # A restart: a new cache, nothing in memory; the stored token is the one sent.
        again = TokenCache(settings, "g (mailbox dana)")
        assert again.get(lambda: Grant(SECRET, "rt-first-9012"), store) in server.issued
        assert server.requests_count() == 2
        # Without the database, the restart would have sent the spent one.
        with pytest.raises(CredentialsError, match="refused the refresh token"):
            TokenCache(settings, "g").get(lambda: Grant(SECRET, "rt-first-9012"))
        # Stored encrypted: neither the tokens nor their hashes appear in the table.
        from sqlalchemy import select

        from syncd.schema.tables import refresh_tokens

        with engine.connect() as conn:
            rows = [" ".join(map(str, row)) for row in conn.execute(select(refresh_tokens))]
        assert len(rows) == 1
        for token in [*rotated, *server.refresh_tokens, "rt-first-9012"]:
            assert token not in rows[0]
            assert hashlib.sha256(token.encode()).hexdigest() not in rows[0]
        # A new consent (another token in the file) starts afresh: the stored one is not used.
        server.refresh_tokens["rt-second-3456"] = "dana@example.com"
        fresh = TokenCache(settings, "g (mailbox dana)")
        assert fresh.get(lambda: Grant(SECRET, "rt-second-3456"), store) in server.issued
        assert "rt-second-3456" not in server.refresh_tokens  # it was the one sent
    finally:
        engine.dispose()
