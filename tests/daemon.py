"""`syncd run` as a real subprocess, with a systemd-style notify socket to know when it is ready."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path

SYNCD = str(Path(sys.executable).parent / "syncd")


class DaemonProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self._dir = Path(tempfile.mkdtemp(prefix="syncd-notify-"))
        # Gone with the object, whether or not a test calls close().
        self._remove_dir = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self.notify_path = self._dir / "notify"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.notify_path))
        self.messages: list[dict[str, str]] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_within: float = 30.0, verbose: int = 0) -> DaemonProcess:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), "WATCHDOG_USEC": "4000000"}
        env.pop("WATCHDOG_PID", None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    SYNCD,
                    *(["-" + "v" * verbose] if verbose else []),
                    "--config",
                    str(self.config),
                    "run",
                ],
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        self.wait_for_message(lambda m: m.get("READY") == "1", ready_within)
        return self

    def wait_for_message(
        self, match: Callable[[dict[str, str]], bool], timeout: float
    ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        for message in self.messages:
            if match(message):
                return message
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"syncd run exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            self._sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
            try:
                data = self._sock.recv(4096).decode()
            except TimeoutError:
                continue
            message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append(message)
            if match(message):
                return message
        raise AssertionError(f"no matching notify message in {timeout}s; got {self.messages[-5:]}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, *, within: float = 10.0) -> tuple[int, float]:
        """SIGTERM; the exit code and how long it took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=within + 5)
        return code, time.monotonic() - started

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._sock.close()
        self._remove_dir()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate``; the seconds it took to hold.  Never sleeps longer than needed."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_all(daemons: list[DaemonProcess]) -> None:
    """SIGTERM each daemon in turn; each must exit 0 within its stop window."""
    for daemon in daemons:
        code, _took = daemon.stop()
        assert code == 0, f"exit {code}"
