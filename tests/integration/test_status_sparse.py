"""STATUS answers that leave items out: the poll falls back to EXAMINE instead of failing.

RFC 3501 asks a server to return the items requested, but proxies and old servers answer
STATUS with less (MESSAGES only).  A loopback server scripted here answers that way."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.config_file import parse_config
from syncd.engine.imap.mail_sync import MailSync
from syncd.store import database, state


class SparseStatusImap:
    """An empty INBOX (UIDVALIDITY 7, UIDNEXT 1) whose STATUS reports ``items`` only."""

    def __init__(self, items: bytes) -> None:
        self.items = items
        self.commands: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1] sparse test server\r\n")
            for raw in lines:
                tag, _, rest = raw.decode().rstrip("\r\n").partition(" ")
                command = rest.split(" ")[0].upper()
                self.commands.append(command)
                if command == "CAPABILITY":
                    reply = b"* CAPABILITY IMAP4rev1\r\n"
                elif command == "EXAMINE":
                    reply = b"* 0 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 1] ok\r\n"
                elif command == "STATUS":
                    reply = b"* STATUS INBOX (" + self.items + b")\r\n"
                elif command == "LOGOUT":
                    conn.sendall(b"* BYE\r\n" + f"{tag} OK done\r\n".encode())
                    return
                else:
                    reply = b""
                conn.sendall(reply + f"{tag} OK done\r\n".encode())


@pytest.fixture(params=[b"MESSAGES 0", b"MESSAGES 0 UIDVALIDITY 7", b"MESSAGES 0 UIDNEXT 1"])
def server(request: pytest.FixtureRequest) -> Iterator[SparseStatusImap]:
    imap = SparseStatusImap(request.param)
    yield imap
    imap.close()


def test_a_sparse_status_answer_falls_back_to_examine(
    server: SparseStatusImap, tmp_path: Path
) -> None:
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'sparse.db'}"},
            "mailbox": [
                {
                    "name": "rep",
                    "owner": "rep@example.com",
                    "host": "127.0.0.1",
                    "port": server.port,
                    "security": "plain",
                    "username": "rep",
                    "password": "pw",
                    "folders": ["INBOX"],
                    "timeout": 5,
                }
            ],
        }
    )
    engine = database.open_database(config.database.url)
    try:
        sync = MailSync(engine, config)
        for _ in range(2):  # the first pass examines; the second asks STATUS first
            (result,) = sync.run_once()
            assert result.ok, result.error or result.folders
        assert server.commands.count("STATUS") == 1 and server.commands.count("EXAMINE") == 2
        with engine.connect() as conn:
            cursor = state.get_cursor(conn, "rep", "INBOX")
        assert cursor is not None and cursor.uidvalidity == 7
    finally:
        engine.dispose()
