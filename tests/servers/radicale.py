"""A throw-away Radicale (CalDAV) on loopback, for the tests, the benchmark and the demo.

Large calendars are seeded by writing .ics files into its storage folder (each PUT
costs an fsync); changes during a test go through real PUT and DELETE requests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

from tests.servers.ports import free_port, stop_process, wait_listening

_CONFIG = """\
[server]
hosts = 127.0.0.1:{port}
[auth]
type = htpasswd
htpasswd_filename = {root}/users
htpasswd_encryption = plain
[storage]
filesystem_folder = {root}/collections
[logging]
level = warning
"""


@dataclass
class Radicale:
    root: Path
    users: dict[str, str]
    port: int = 0

    def start(self) -> Radicale:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "users").write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
        self.port = self.port or free_port()
        conf = self.root / "radicale.conf"
        conf.write_text(_CONFIG.format(port=self.port, root=self.root))
        log = (self.root / "radicale.log").open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(conf)], stdout=log, stderr=log
        )
        log.close()
        wait_listening(self.port)
        return self

    def stop(self) -> None:
        stop_process(getattr(self, "_process", None))

    def __enter__(self) -> Radicale:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # --- calendars ------------------------------------------------------------------------------

    def calendar_dir(self, user: str, calendar: str) -> Path:
        return self.root / "collections" / "collection-root" / user / calendar

    def make_calendar(self, user: str, calendar: str, display_name: str) -> Path:
        """A calendar collection, written the way Radicale itself writes one."""
        path = self.calendar_dir(user, calendar)
        path.mkdir(parents=True, exist_ok=True)
        (path / ".Radicale.props").write_text(
            json.dumps({"D:displayname": display_name, "tag": "VCALENDAR"})
        )
        return path

    def seed(self, user: str, calendar: str, objects: dict[str, str]) -> None:
        """Write many objects at once, straight into storage: {file name: iCalendar text}."""
        path = self.calendar_dir(user, calendar)
        for name, text in objects.items():
            tmp = path / f".{name}.tmp"
            tmp.write_text(text, newline="")
            tmp.replace(path / name)

    def _request(self, user: str, method: str, path: str, body: bytes = b"") -> int:
        password = self.users[user]
        request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
            f"{self.url}{user}/{path}",
            data=body or None,
            method=method,
            headers={
                "Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode(),
                "Content-Type": "text/calendar; charset=utf-8",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)

    def put(self, user: str, calendar: str, name: str, text: str) -> None:
        self._request(user, "PUT", f"{calendar}/{name}", text.encode())
        time.sleep(0.01)  # Radicale's sync tokens follow file times: keep writes apart

    def delete(self, user: str, calendar: str, name: str) -> None:
        self._request(user, "DELETE", f"{calendar}/{name}")
