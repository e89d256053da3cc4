"""A PostgreSQL that accepts TCP and never answers: nothing waits on it for long, and the
daemon's main loop (watchdog pings, /healthz) never waits on it at all."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from syncd.engine.daemon import Daemon
from syncd.notify import Notifier
from syncd.store.database import make_engine


@pytest.fixture
def silent_postgres() -> Iterator[str]:
    """A loopback port whose kernel completes the TCP handshake; nobody ever answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield f"postgresql+psycopg://postgres@127.0.0.1:{listener.getsockname()[1]}/syncd"
    listener.close()


def _within(seconds: float, call: object) -> tuple[bool, BaseException | None, float]:
    """Run ``call`` on a thread: (finished in time, what it raised, how long it took)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()  # type: ignore[operator]
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    return bool(outcome), outcome[0] if outcome else None, time.monotonic() - started


def test_connecting_to_a_silent_server_gives_up_within_seconds(silent_postgres: str) -> None:
    engine = make_engine(silent_postgres)
    finished, error, took = _within(15, engine.connect)
    assert finished, "the connection attempt hung on a server that never answers"
    assert isinstance(error, OperationalError), error
    assert took < 10


class CountingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__(address="")
        self.pings = 0

    def watchdog(self) -> None:
        self.pings += 1


def test_the_heartbeat_never_blocks_the_watchdog(silent_postgres: str, tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "{silent_postgres}"\n')
    notifier = CountingNotifier()
    daemon = Daemon(config, notifier=notifier)
    daemon._engine = make_engine(silent_postgres)
    # Beat as the main loop does, faster: every beat returns at once and pings the watchdog,
    # while the database write waits on its own thread (one at a time, never piling up).
    for beat in range(1, 6):
        finished, error, took = _within(2, daemon._beat)
        assert finished and error is None, f"beat {beat} blocked on the database"
        assert took < 0.5
        assert notifier.pings == beat
        time.sleep(0.2)
    writers = [t for t in threading.enumerate() if t.name == "heartbeat"]
    assert len(writers) == 1
    writers[0].join(10)  # the connect timeout ends the stuck write
    assert not writers[0].is_alive()
