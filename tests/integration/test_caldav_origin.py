"""A CalDAV server that names URLs on another origin never receives the password there.

Two real HTTP listeners on loopback: the configured server answers discovery with a
calendar home (or principal, or calendar) on a second port, over plain http; the second
listener records every request and whether it carried an Authorization header.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from syncd.config import CalendarConfig
from syncd.engine.calendar_sync import open_caldav
from syncd.errors import RemoteConfigError

PASSWORD = "origin-test-s3cr3t"
COLLECTION = "<D:resourcetype><D:collection/></D:resourcetype>"
CALENDAR = (
    "<D:resourcetype><D:collection/><C:calendar/></D:resourcetype>"
    "<D:displayname>Work</D:displayname>"
)


@dataclass
class Seen:
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # method, path, auth


def _multistatus(*responses: tuple[str, str]) -> bytes:
    """A 207 body: one response per (href, properties)."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        + "".join(
            f"<D:response><D:href>{href}</D:href><D:propstat><D:prop>{props}</D:prop>"
            "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
            for href, props in responses
        )
        + "</D:multistatus>"
    ).encode()


def _serve(answer: object, seen: Seen) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            seen.requests.append(
                (self.command, self.path, self.headers.get("Authorization") is not None)
            )
            body = answer(self.path) if callable(answer) else b""
            self.send_response(207 if body else 404)
            self.send_header("Content-Type", "application/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_PROPFIND = do_REPORT = do_GET = do_OPTIONS = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def elsewhere() -> Iterator[tuple[ThreadingHTTPServer, Seen]]:
    seen = Seen()
    server = _serve(
        lambda path: _multistatus((path, CALENDAR)),
        seen,
    )
    yield server, seen
    server.shutdown()
    server.server_close()


def _server_naming(foreign: str, where: str) -> tuple[ThreadingHTTPServer, Seen]:
    """The configured server; ``where`` names which discovered URL points at ``foreign``."""
    seen = Seen()

    def answer(path: str) -> bytes:
        principal = f"{foreign}/principal/" if where == "principal" else "/principal/"
        home = f"{foreign}/home/" if where == "home" else "/home/"
        if path.startswith("/home"):
            calendar = f"{foreign}/home/work/" if where == "calendar" else "/home/work/"
            return _multistatus((path, COLLECTION), (calendar, CALENDAR))
        return _multistatus(
            (
                path,
                f"<D:current-user-principal><D:href>{principal}</D:href></D:current-user-principal>"
                f"<C:calendar-home-set><D:href>{home}</D:href></C:calendar-home-set>" + COLLECTION,
            )
        )

    return _serve(answer, seen), seen


@pytest.mark.parametrize("where", ["principal", "home"])
def test_a_foreign_calendar_url_never_receives_the_password(
    elsewhere: tuple[ThreadingHTTPServer, Seen], where: str
) -> None:
    foreign_server, foreign_seen = elsewhere
    foreign = f"http://127.0.0.1:{foreign_server.server_port}"
    home, home_seen = _server_naming(foreign, where)
    try:
        config = CalendarConfig(
            name="alice-cal",
            owner="alice@example.com",
            url=f"http://127.0.0.1:{home.server_port}/",
            username="u-origin",
            password=PASSWORD,
        )
        session = open_caldav(config)
        failure: Exception | None = None
        try:
            calendars = session.discover()
            session.changes(calendars[0].url, None, {})
        except Exception as err:
            failure = err
        session.close()
    finally:
        home.shutdown()
        home.server_close()
    assert not any(auth for _, _, auth in foreign_seen.requests), foreign_seen.requests
    assert foreign_seen.requests == []  # nothing at all goes there
    assert home_seen.requests and all(auth for _, _, auth in home_seen.requests)
    assert isinstance(failure, RemoteConfigError), failure
    message = f"{failure.message} {failure.hint}"
    assert foreign.replace("http://", "") in message and "configured" in message
    assert PASSWORD not in message and "u-origin" not in message


def test_a_calendar_named_on_another_origin_is_read_on_the_configured_one(
    elsewhere: tuple[ThreadingHTTPServer, Seen],
) -> None:
    """python-caldav keeps only the path of a calendar's href: it is read where configured."""
    foreign_server, foreign_seen = elsewhere
    home, _ = _server_naming(f"http://127.0.0.1:{foreign_server.server_port}", "calendar")
    try:
        config = CalendarConfig(
            name="alice-cal",
            owner="alice@example.com",
            url=f"http://127.0.0.1:{home.server_port}/",
            username="u-origin",
            password=PASSWORD,
        )
        with open_caldav(config) as session:
            (calendar,) = session.discover()
    finally:
        home.shutdown()
        home.server_close()
    assert calendar.url == f"http://127.0.0.1:{home.server_port}/home/work/"
    assert foreign_seen.requests == []
