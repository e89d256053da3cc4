"""The API's connections send a response's head and body together: what the protocol
writes in one turn of the event loop leaves in one write, in order, and nothing is lost
when the connection closes."""

from __future__ import annotations

import asyncio
from typing import Any

from syncd.api.server import _Coalescing


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"extra {name}"


def test_one_turn_s_writes_leave_in_one_send() -> None:
    async def scenario() -> _Transport:
        transport = _Transport()
        coalescing = _Coalescing(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        coalescing.write(b"HTTP/1.1 200 OK\r\n\r\n")
        coalescing.write(b"")
        coalescing.write(memoryview(b"body"))
        assert transport.sent == []  # not yet: the turn is not over
        await asyncio.sleep(0)
        assert transport.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        coalescing.write(b"next")
        await asyncio.sleep(0)
        coalescing.write(b"last")
        coalescing.close()  # flushes first
        assert coalescing.get_extra_info("socket") == "extra socket"
        assert coalescing.is_closing()
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(scenario())
    assert transport.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next", b"last"]
