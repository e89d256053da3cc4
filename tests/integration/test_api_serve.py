"""The API as people run it: `syncd serve` alone, and `syncd run` serving it beside capture
(a captured email reaches a long-polling client; /metrics and `status` show the API)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from syncd.api.processes import ApiProcesses
from syncd.config_file import parse_config
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


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] != "Z":
                found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    """Ended: no process, or a zombie left for its new parent to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return stat[0] == "Z"


def _wait_children(pid: int, count: int = 2, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(children := _children(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return children


def _all_gone(pids: list[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return all(_gone(pid) for pid in pids)


def _end(proc: subprocess.Popen[bytes], children: list[int]) -> None:
    """Had the test failed: nothing left running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in children:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def _serve_workers(
    world: World, tmp_path: Path, extra: str = "", cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], int, str, list[int]]:
    port = free_port()
    world.write_config(extra=f'[api]\nlisten = "127.0.0.1:{port}"\nworkers = 2\n{extra}')
    token = json.loads(world.cli("tokens", "create", "crm", "--scope", "read", "--json").stdout)
    with (tmp_path / "serve.log").open("wb") as out:
        proc = subprocess.Popen(
            [SYNCD, "--config", str(world.config_path), "serve"], stdout=out, stderr=out, cwd=cwd
        )
    wait_listening(port, timeout=60)
    return proc, port, token["token"], _wait_children(proc.pid)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_serve_workers_run_the_parent_s_code_whatever_the_working_directory(
    world: World, tmp_path: Path
) -> None:
    # Started from a folder holding a syncd/ of its own (another checkout): the children
    # (python -m) imported that one.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "syncd").mkdir(parents=True)
    (elsewhere / "syncd" / "__init__.py").write_text(
        'raise SystemExit("syncd imported from the working directory")\n'
    )
    proc, port, token, children = _serve_workers(world, tmp_path, cwd=elsewhere)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(4):  # a new connection each: either process may answer
            answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/records", headers=headers)
            assert answer.status_code == 200
        assert len(children) == 2 and all(not _gone(pid) for pid in children)
        assert "working directory" not in (tmp_path / "serve.log").read_text()
    finally:
        _end(proc, children)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_serve_workers_share_the_port_the_rate_limit_and_the_metrics(
    world: World, tmp_path: Path
) -> None:
    metrics_port = free_port()
    proc, port, token, children = _serve_workers(
        world, tmp_path, f'rate_limit = 2\n\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"'
    )
    try:
        assert (
            len(children) == 2
            and "api.processes" in Path(f"/proc/{children[0]}/cmdline").read_text()
        )
        headers = {"Authorization": f"Bearer {token}"}
        sent: dict[int, int] = {}
        # One connection lands on one process: it gets that process's share, 2 / 2 a
        # second (one process alone would take a burst of 2).
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers) as http:
            answers = [http.get("/records", params={"limit": 1}) for _ in range(2)]
            assert [a.status_code for a in answers] == [200, 429]
            detail = answers[1].json()["detail"]
            assert "more than 1 requests a second with this token on this process" in detail
            assert "rate_limit 2, divided among 2 API processes" in detail
        # A new connection each: whichever process accepts it first answers it.
        for _ in range(10):
            with httpx.Client(headers=headers) as http:
                code = http.get(f"http://127.0.0.1:{port}/api/v1/records").status_code
                sent[code] = sent.get(code, 0) + 1
        sent[200] = sent.get(200, 0) + 1
        sent[429] = sent.get(429, 0) + 1
        # /metrics is the parent's: the children's counts, summed (reported every second).
        deadline = time.monotonic() + 10
        while True:
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            counts = {
                int(line.split('status="')[1].split('"')[0]): float(line.rsplit(" ", 1)[1])
                for line in scraped.splitlines()
                if line.startswith("syncd_api_requests_total{")
            }
            if sum(counts.values()) == 12 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counts == sent
        assert 'syncd_api_request_duration_seconds_count{route="/api/v1/records"} 12.0' in scraped
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert all(_gone(pid) for pid in children)
        wait_listening(port, up=False, timeout=5)
    finally:
        _end(proc, children)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_serve_workers_end_with_their_parent_even_killed(world: World, tmp_path: Path) -> None:
    proc, port, token, children = _serve_workers(world, tmp_path)
    try:
        assert len(children) == 2
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/status", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200
        proc.kill()  # no SIGTERM passed on: the children see their stdin end
        proc.wait()
        assert _all_gone(children)
        wait_listening(port, up=False, timeout=5)
    finally:
        _end(proc, children)


def test_children_exit_cleanly_on_stop(tmp_path: Path) -> None:
    """The review's proof: a child stopped gracefully exits 0 (it aborted, SIGABRT, with a
    thread blocked in a buffered read of stdin), and ``stop`` says so."""
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path}/s.db"},
            "api": {"listen": "127.0.0.1:0", "workers": 2},
        }
    )
    procs = ApiProcesses(config, None, 2).start()
    children = [c.proc for c in procs._children]
    assert procs.stop() is True
    assert [p.returncode for p in children] == [0, 0]


def test_a_child_failing_is_reported_by_stop(tmp_path: Path) -> None:
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path}/s.db"},
            "api": {"listen": "127.0.0.1:0", "workers": 2},
        }
    )
    procs = ApiProcesses(config, None, 2).start()
    children = [c.proc for c in procs._children]
    children[1].kill()
    children[1].wait()
    assert not procs.alive
    assert procs.stop() is False
    assert [p.returncode for p in children] == [0, -signal.SIGKILL]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_second_serve_on_the_same_port_is_refused(world: World, tmp_path: Path) -> None:
    """As with one process: the second `syncd serve` fails (address in use), with an error
    and no traceback; the first goes on serving (the review's proof, ported)."""
    port = free_port()
    world.write_config(extra=f'[api]\nlisten = "127.0.0.1:{port}"\nworkers = 2\n')
    with (tmp_path / "first.log").open("wb") as out:
        first = subprocess.Popen(
            [SYNCD, "--config", str(world.config_path), "serve"], stdout=out, stderr=out
        )
    kids: list[int] = []
    second = None
    try:
        wait_listening(port, timeout=60)
        kids = _wait_children(first.pid)
        second = subprocess.run(
            [SYNCD, "--config", str(world.config_path), "serve"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2, second.stderr
        assert "error: the API cannot serve on" in second.stderr
        assert "Address already in use" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None and len(_children(first.pid)) == 2
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0
    finally:
        _end(first, kids)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ctrl_c_during_start_up_stops_serve_cleanly(world: World, tmp_path: Path) -> None:
    """^C at a terminal (SIGINT to the whole process group) while the children start: the
    parent stops them, exit 0, no traceback (children in sessions of their own)."""
    port = free_port()
    world.write_config(extra=f'[api]\nlisten = "127.0.0.1:{port}"\nworkers = 2\n')
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SYNCD, "--config", str(world.config_path), "serve"],
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own group, as a shell's job
        )
    kids: list[int] = []
    try:
        kids = _wait_children(proc.pid)
        assert len(kids) == 2
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
        assert "Traceback" not in log.read_text()
        assert _all_gone(kids)
        wait_listening(port, up=False, timeout=5)
    finally:
        _end(proc, kids)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_run_refuses_api_workers(world: World) -> None:
    world.write_config(extra='[api]\nlisten = "127.0.0.1:0"\nworkers = 2\n')
    result = world.cli("run", expect=2)
    assert "workers > 1 is for `syncd serve`" in result.output


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
