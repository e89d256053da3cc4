"""A throw-away Xandikos (CalDAV) on loopback, for the tests.

Xandikos stores what it is given, including objects it cannot read itself, and then
answers a time-range query on that calendar with 500: the shape of server that syncd
must survive (SabreDAV-based servers are reported to do the same).  It runs without
authentication, with one principal at ``/user/``; syncd's Basic credentials are ignored.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from tests.servers.ports import free_port, stop_process, wait_listening

_MKCALENDAR = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    "<D:set><D:prop><D:displayname>{name}</D:displayname></D:prop></D:set></C:mkcalendar>"
)


@dataclass
class Xandikos:
    root: Path
    port: int = 0

    def start(self) -> Xandikos:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = (self.root / "xandikos.log").open("ab")
        self._process = subprocess.Popen(
            [
                sys.executable, "-m", "xandikos.web", "--defaults",
                "-d", str(self.root / "data"), "-l", "127.0.0.1", "-p", str(self.port),
            ],
            stdout=log,
            stderr=log,
        )  # fmt: skip
        log.close()
        wait_listening(self.port)
        return self

    def stop(self) -> None:
        stop_process(getattr(self, "_process", None))

    def __enter__(self) -> Xandikos:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The principal: what a [[calendar]] url points at."""
        return f"http://127.0.0.1:{self.port}/user/"

    def _request(self, method: str, path: str, body: bytes, content_type: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/user/calendars/{path}",
            data=body,
            method=method,
            headers={"Content-Type": content_type},
        )
        # Xandikos parses what it stores: an 11 MB object took over 30 s on a loaded 2-core
        # machine.  This is the suite's set-up, not a bound under test.
        with urllib.request.urlopen(request, timeout=180) as response:  # noqa: S310
            return int(response.status)

    def make_calendar(self, slug: str, display_name: str) -> None:
        body = _MKCALENDAR.format(name=escape(display_name)).encode()
        self._request("MKCALENDAR", f"{slug}/", body, "application/xml; charset=utf-8")

    def put(self, slug: str, name: str, text: str) -> None:
        self._request("PUT", f"{slug}/{name}", text.encode(), "text/calendar; charset=utf-8")
