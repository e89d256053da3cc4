"""The API's port with several processes ([api] workers): listened on once, by the parent,
without SO_REUSEPORT; no other process joins it (the h-api5 review's proof: with SO_REUSEPORT
a same-user process joined and took connections).  A process of another user is not tried:
Linux lets SO_REUSEPORT sockets share a port only under the same effective user, so the
same-user case is the one that can get in."""

from __future__ import annotations

import socket

import pytest

from syncd.api.processes import ApiProcesses
from syncd.config_file import parse_config


def _reserve() -> ApiProcesses:
    config = parse_config({"api": {"listen": "127.0.0.1:0", "workers": 2}})
    return ApiProcesses(config, None, 2)  # listens, spawns nothing yet


def _join(port: int) -> socket.socket:
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", port))
        other.listen(8)
    except OSError:
        other.close()
        raise
    return other


def test_a_same_user_process_cannot_join_the_api_port() -> None:
    procs = _reserve()
    try:
        with pytest.raises(OSError) as refused:
            _join(procs.port).close()
        assert refused.value.errno == 98  # EADDRINUSE
        # The parent's socket listens: a client's connection waits there for the children.
        with socket.create_connection(("127.0.0.1", procs.port), timeout=2):
            pass
    finally:
        procs._socket.close()


def test_main_style_listener_is_exclusive() -> None:
    server = socket.create_server(("127.0.0.1", 0), backlog=8)  # main's ApiServer
    try:
        with pytest.raises(OSError):
            _join(server.getsockname()[1]).close()
    finally:
        server.close()
