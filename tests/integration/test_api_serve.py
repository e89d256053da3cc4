"""The API as people run it: `syncd serve` alone, and `syncd run` serving it beside capture
(a captured email reaches a long-polling client; /metrics and `status` show the API)."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import World
from tests.daemon import DaemonProcess
from tests.mail import make_message
from tests.servers.ports import free_port, wait_listening

SYNCD = str(Path(sys.executable).with_name("syncd"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_serve_runs_the_api_alone_and_stops_on_sigterm(world: World, tmp_path: Path) -> None:
    port = free_port()
    world.write_config(extra=f'[api]\nlisten = "127.0.0.1:{port}"')
    token = json.loads(world.cli("tokens", "create", "crm", "--scope", "read", "--json").stdout)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SYNCD, "--config", str(world.config_path), "serve"], stdout=out, stderr=out
        )
    try:
        wait_listening(port, timeout=30)
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/status",
            headers={"Authorization": f"Bearer {token['token']}"},
        )
        assert answer.status_code == 200 and answer.json()["daemon"] is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
        assert f"http://127.0.0.1:{port}/api/docs" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.dovecot
@pytest.mark.daemon
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_run_serves_the_api_beside_capture(world: World, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    world.rep("alice")
    world.write_config(
        extra=f'[api]\nlisten = "127.0.0.1:{port}"\n\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"'
    )
    token = json.loads(world.cli("tokens", "create", "crm", "--scope", "read", "--json").stdout)
    daemon = DaemonProcess(world.config_path, tmp_path / "daemon.log").start()
    try:
        headers = {"Authorization": f"Bearer {token['token']}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers) as http:
            after = http.get("/events").json()["next_cursor"] or "0"
            world.deliver("alice", make_message(message_id="<served@acme.com>"))
            waited = http.get("/events", params={"after": after, "wait": 30}, timeout=40).json()
            assert [e["type"] for e in waited["items"]][:1] == ["record.created"]
            assert waited["items"][0]["data"]["message_id"] == "served@acme.com"
            status = http.get("/status").json()
            assert status["daemon"] is not None and status["api"]["listen"] == f"127.0.0.1:{port}"
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert (
            'route="/api/v1/events"' in scraped and "syncd_api_request_duration_seconds" in scraped
        )
        shown = world.cli("status", expect=None).stdout
        assert f"api: 127.0.0.1:{port}" in shown
        code, _ = daemon.stop()
        assert code == 0
        wait_listening(port, up=False, timeout=10)
    finally:
        daemon.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_tls_listener_serves_https_only(world: World, tmp_path: Path) -> None:
    from syncd.api.server import ApiServer
    from syncd.config_file import load_config
    from tests.servers.oauth2 import self_signed

    cert, key = self_signed(tmp_path)
    world.write_config(
        extra=f'[api]\nlisten = "127.0.0.1:0"\ntls_cert = "{cert}"\ntls_key = "{key}"'
    )
    token = json.loads(world.cli("tokens", "create", "crm", "--scope", "read", "--json").stdout)
    server = ApiServer(load_config(world.config_path)).start()
    try:
        assert server.url.startswith("https://")
        headers = {"Authorization": f"Bearer {token['token']}"}
        trust = ssl.create_default_context(cafile=str(cert))
        answer = httpx.get(server.url + "/api/v1/status", headers=headers, verify=trust)
        assert answer.status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port: no answer
            httpx.get(server.url.replace("https", "http") + "/api/v1/status", headers=headers)
    finally:
        server.stop()
