"""A CRM (or the proxy before it) that echoes the request in its answer: the token never
reaches what syncd keeps of a refusal (the log, ``crm_deliveries``, `syncd crm list`).

The server is a real HTTP server on a loopback port answering as a Django REST API does to
bad input, quoting what it was sent: the Authorization header as sent, base64-encoded (as a
proxy's request dump has it), URL-encoded and JSON-escaped."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest

from syncd.config import CrmConfig
from syncd.connectors.bottlecrm import BottleCrmApi
from syncd.connectors.crm_http import JsonHttp
from syncd.crm.base import Refused, Target
from syncd.crm.bottlecrm import BottleCrm
from syncd.errors import TransientError, describe
from tests.servers.ports import free_port, wait_listening

# The shape of BottleCRM's tokens, with characters that encodings change.
TOKEN = "bcrm_pat_Zq+9/x=Echo-Me_0123456789abcdef"


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    status = 400

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        sent = self.rfile.read(length).decode()
        auth = self.headers.get("Authorization", "")
        said = {
            "error": True,
            "errors": {
                "kind": [f'"{auth}" is not a valid choice.'],
                "request": base64.b64encode(
                    f"Authorization: {auth}\r\n\r\n{sent}".encode()
                ).decode(),
                "url": quote(auth, safe=""),
            },
        }
        body = json.dumps(said).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PATCH = do_GET = do_DELETE = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[tuple[str, type[_Echo]]]:
    handler = type("Echo", (_Echo,), {})
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    wait_listening(port)
    try:
        yield f"http://127.0.0.1:{port}", handler
    finally:
        server.shutdown()
        server.server_close()


def _spelled(text: str) -> list[str]:
    """Which spellings of the token ``text`` still holds."""
    auth = f"Bearer {TOKEN}"
    forms = {
        "raw": TOKEN,
        "url": quote(TOKEN, safe=""),
        "base64": base64.b64encode(f"Authorization: {auth}".encode()).decode()[24:60],
    }
    return [name for name, form in forms.items() if form in text]


def test_a_refusal_that_echoes_the_token_keeps_none_of_it(
    echo: tuple[str, type[_Echo]],
) -> None:
    url, _ = echo
    crm = BottleCrm(
        CrmConfig(name="echo", kind="bottlecrm", url=url, token_env="UNUSED"),
        BottleCrmApi(JsonHttp(url, TOKEN, timeout=5, what="crm echo")),
    )
    record = {
        "kind": "call", "direction": "outbound", "occurred_at": "2026-12-01T10:00:00Z",
        "subject": "Renewal", "body": "Agreed", "duration_seconds": 60, "outcome": "connected",
    }  # fmt: skip
    try:
        # The echo is a real risk only if the answer holds the token as sent: it does.
        raw = crm.api.http.once("POST", "/api/interactions/", body={})
        assert raw.status == 400
        with pytest.raises(Refused) as refused:
            crm.push_record(record, Target(contact="c-1"), "syncd:x:record:1", None)
    finally:
        crm.close()
    # What the sink stores and `crm list` shows of a refusal.
    said = refused.value.answer
    assert said.startswith("400 ") and "not a valid choice" in said
    assert "[redacted]" in said
    assert _spelled(said) == []


def test_a_server_error_that_echoes_the_token_keeps_none_of_it(
    echo: tuple[str, type[_Echo]],
) -> None:
    url, handler = echo
    handler.status = 502  # a proxy's error page quoting the request
    http = JsonHttp(url, TOKEN, timeout=5, what="crm echo")
    try:
        with pytest.raises(TransientError) as failed:
            http.once("PATCH", "/api/interactions/1/", body={"subject": "x"})
    finally:
        http.close()
    said = describe(failed.value)  # what `crm list` and the log show as the last error
    assert "502" in said and "[redacted]" in said
    assert _spelled(said) == []
