"""The webhook sender against hostile receivers on a loopback socket (no HTTP library on
the receiving side: it misbehaves on purpose)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from syncd.config_file import parse_config
from syncd.webhooks.http import Sender, load_signer
from syncd.webhooks.policy import Answer
from tests.servers.webhook import new_secret


@pytest.fixture
def dripping_receiver() -> Iterator[int]:
    """Reads a request, then sends its answer's headers one byte every 0.3 s, for 40 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                peer, _ = listener.accept()
            except TimeoutError:
                continue
            with peer:
                peer.recv(65536)
                peer.sendall(b"HTTP/1.1 200 OK\r\n")
                for byte in (b"X-Slow: " + b"a" * 200)[: 40 * 3]:
                    if stop.wait(0.3):
                        break
                    try:
                        peer.sendall(bytes([byte]))
                    except OSError:
                        break  # the sender gave up: good

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_receiver_dripping_its_answer_is_cut_off_and_retried(dripping_receiver: int) -> None:
    """``timeout`` bounds each socket read only: a receiver sending a byte every 0.3 s held
    a sender (and its delivery) for as long as it liked.  A whole request now ends within
    2 x timeout + 1 s, as a timeout (retried later)."""
    config = parse_config(
        {
            "webhook": [
                {
                    "name": "crm",
                    "url": f"http://127.0.0.1:{dripping_receiver}/hooks",
                    "secret": new_secret(),
                    "timeout": 1,
                }
            ]
        }
    ).webhook[0]
    sender = Sender(config, load_signer(config))
    got: list[Answer] = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: got.append(sender.post("1", b"{}")), daemon=True)
    worker.start()
    worker.join(20)
    elapsed = time.monotonic() - started
    sender.close()
    assert got, "the request was still waiting for the dripping answer after 20 s"
    assert got[0].status is None and got[0].error is not None
    assert got[0].error.startswith("timeout")
    assert elapsed < 15
