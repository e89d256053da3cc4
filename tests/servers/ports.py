"""Free loopback ports and waiting for a server to listen."""

from __future__ import annotations

import signal
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, *, timeout: float = 15.0, up: bool = True) -> None:
    """Wait until 127.0.0.1:port accepts connections (or, with up=False, refuses them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    state = "listening" if up else "closed"
    raise TimeoutError(f"127.0.0.1:{port} not {state} after {timeout:.0f}s")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a server started by the suite, then SIGKILL it if it has not gone in 5 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
