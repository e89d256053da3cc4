"""systemd's notify protocol (sd_notify): READY, STATUS, WATCHDOG, STOPPING.

A datagram to $NOTIFY_SOCKET; without that variable (not under systemd) every call does
nothing.  Written here because it is ten lines and a dependency would be more.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        self._address = address or None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # Pinging at half the watchdog period, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval: float | None = int(usec) / 2e6 if watched else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> None:
        if self._address is None:
            return
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # Never wait: a receiver that stopped reading (its queue holds ten datagrams)
            # would otherwise stall the daemon's main loop on its next ping for good.
            sock.setblocking(False)
            try:
                sock.connect(self._address)
                sock.sendall(message)
            except OSError:
                pass  # systemd gone (shutdown): nothing to tell

    def ready(self, status: str) -> None:
        self.send(ready="1", status=status)

    def status(self, status: str) -> None:
        self.send(status=status)

    def watchdog(self) -> None:
        self.send(watchdog="1")

    def stopping(self) -> None:
        self.send(stopping="1", status="stopping")
