"""CalDAV: discovery with python-caldav, incremental sync written against RFC 6578.

Requests are few by construction: an unchanged calendar costs one sync-collection
REPORT that returns no event; changes come with their calendar data in the same
answer.  A server without sync tokens, a token it rejects, or a truncated answer
(507) falls back to comparing ETags from one listing and fetching only what
changed (calendar-multiget).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

from caldav.davclient import DAVClient
from caldav.lib import error as dav_error

from syncd.config import CalendarConfig
from syncd.errors import (
    CredentialsError,
    RefusedError,
    RemoteConfigError,
    RemoteError,
    TransientError,
)

NS = {"D": "DAV:", "C": "urn:ietf:params:xml:ns:caldav"}
MULTIGET_BATCH = 200
_XML = {"Content-Type": "application/xml; charset=utf-8"}
# Direct paths: a descendant search per property costs more than the rest of the loop.
_DATA_PATH = "D:propstat/D:prop/C:calendar-data"
_ETAG_PATH = "D:propstat/D:prop/D:getetag"
_RESPONSE = "{DAV:}response"
_HREF = "{DAV:}href"
_ETAG = "{DAV:}getetag"
_DATA = "{urn:ietf:params:xml:ns:caldav}calendar-data"
_LOOPBACK = ("127.", "localhost", "[::1]", "::1")


def retry_after_seconds(value: str | None) -> float | None:
    """An HTTP Retry-After header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class CalendarInfo:
    url: str
    name: str


@dataclass(frozen=True, slots=True)
class CalendarObject:
    href: str
    etag: str
    data: str


@dataclass(slots=True)
class Changes:
    token: str | None  # the new sync token, None when the server has none
    changed: list[CalendarObject]
    deleted: list[str]  # hrefs
    method: str  # "query" (first sync), "token", "full-token" (no or rejected token) or "etag"
    # Objects listed but not downloaded: all their occurrences lie before the window, which
    # only moves forward (href -> ETag).  Remembered, so a change to one still shows.
    unread: dict[str, str] = field(default_factory=dict)


def _sync_body(token: str | None, with_data: bool) -> str:
    data = "<C:calendar-data/>" if with_data else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<D:sync-collection xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        f"<D:sync-token>{escape(token or '')}</D:sync-token><D:sync-level>1</D:sync-level>"
        f"<D:prop><D:getetag/>{data}</D:prop></D:sync-collection>"
    )


_QUERY_ALL = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
    '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/></C:comp-filter></C:filter>'
    "</C:calendar-query>"
)


def _events_between(start: datetime | None, end: datetime | None, *, with_data: bool) -> str:
    """A calendar-query of the events that have an occurrence in [start, end) (RFC 4791 9.9;
    either end open), with their data or ETags only."""
    body = _QUERY_ALL if with_data else _QUERY_ALL.replace("<C:calendar-data/>", "")
    if start is None and end is None:
        return body
    bounds = "".join(
        f' {name}="{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"'
        for name, moment in (("start", start), ("end", end))
        if moment is not None
    )
    return body.replace(
        '<C:comp-filter name="VEVENT"/>',
        f'<C:comp-filter name="VEVENT"><C:time-range{bounds}/></C:comp-filter>',
    )


_QUERY_TODO_ETAGS = _QUERY_ALL.replace('name="VEVENT"', 'name="VTODO"').replace(
    "<C:calendar-data/>", ""
)

_ETAGS = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:resourcetype/></D:prop></D:propfind>'
)


def _multiget_body(hrefs: list[str]) -> str:
    refs = "".join(f"<D:href>{escape(h)}</D:href>" for h in hrefs)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{refs}</C:calendar-multiget>"
    )


class TokenRejected(Exception):
    """The server no longer knows our sync token (RFC 6578 3.2): list everything again."""


@contextmanager
def _classified(where: str) -> Iterator[None]:
    try:
        yield
    except (RemoteError, TokenRejected):
        raise
    except dav_error.AuthorizationError as err:
        raise CredentialsError(
            f"{where}: the server refused the credentials ({getattr(err, 'reason', '')})".rstrip(
                " ()"
            ),
            hint="check username and password for this calendar",
        ) from None
    except dav_error.NotFoundError:
        raise RemoteConfigError(
            f"{where}: not found", hint="check url; `syncd check` lists the calendars"
        ) from None
    except dav_error.DAVError as err:
        raise TransientError(f"{where}: the server failed ({type(err).__name__})") from None
    except Exception as err:  # sockets, urllib3 and niquests each raise their own families
        raise _network_error(where, err) from None


def _network_error(where: str, err: Exception) -> RemoteError:
    """What a failed HTTP exchange means for the caller, whatever library raised it."""
    text = f"{type(err).__name__}: {err}"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return RemoteConfigError(
            f"{where}: the server's TLS certificate is not trusted",
            hint="set ca_file to the CA that signed the server certificate",
        )
    if isinstance(err, ConnectionRefusedError) or "refused" in text.lower():
        return RefusedError(
            f"{where}: connection refused", hint="check url and that the server is up"
        )
    return TransientError(f"{where}: connection failed ({type(err).__name__})")


def _trusted_cas(config: CalendarConfig) -> bool | str:
    """What the HTTP client verifies against: the system's CAs (True), plus ``ca_file``, or
    ``ca_file`` alone with ``ca_only`` (a path is the only bundle trusted)."""
    if config.ca_file is None:
        return True
    if config.ca_only:
        return config.ca_file
    # Imported here, not at the top: only a private CA needs them.
    from pathlib import Path

    import wassima  # the HTTP client's own source of the system's CAs

    # PEM text is taken as the bundle itself: the system's (what True would load) and ours.
    private = Path(config.ca_file).read_text(encoding="ascii", errors="replace")
    return wassima.generate_ca_bundle() + "\n" + private


class CalDavSession:
    """One account on a CalDAV server; counts the requests it makes."""

    def __init__(self, config: CalendarConfig, secret: Callable[[], str]) -> None:
        self._config = config
        self._where = f"calendar {config.name}"
        verify = _trusted_cas(config)
        self._client = DAVClient(
            url=config.url,
            username=config.username,
            password=secret(),
            timeout=int(max(1, config.timeout)),
            ssl_verify_cert=verify,
            enable_rfc6764=False,  # no DNS lookups of service records: talk to the URL we were given
            # Credentials on the first request: probing unauthenticated costs a round trip, and
            # servers (Radicale) slow every 401 down on purpose.
            auth_type="basic",
            require_tls=urlsplit(config.url).scheme != "http",
        )
        self.requests = 0
        # Compression saves a network, not a loopback: on the same host it only costs CPU on
        # both sides (about a tenth of a first sync's listing with Radicale).
        host = urlsplit(config.url).hostname or ""
        local = host.startswith(_LOOPBACK) or host == "::1"
        self._headers = {**_XML, "Accept-Encoding": "identity"} if local else _XML

    def close(self) -> None:
        with _classified(self._where):
            self._client.close()

    def __enter__(self) -> CalDavSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- discovery ------------------------------------------------------------------------

    def discover(self) -> list[CalendarInfo]:
        """The event calendars of the principal (or the collection the URL names)."""
        with _classified(self._where):
            principal = self._client.principal()  # type: ignore[no-untyped-call]
            found = principal.get_calendars()
            out = []
            for cal in found:
                name = cal.get_display_name() if hasattr(cal, "get_display_name") else cal.name
                out.append(CalendarInfo(str(cal.url), str(name or "")))
        self.requests += 3  # principal, home set, calendar listing (at least)
        wanted = self._config.calendars
        if wanted:
            missing = set(wanted) - {c.name for c in out}
            if missing:
                raise RemoteConfigError(
                    f"{self._where}: no calendar named {', '.join(sorted(missing))}",
                    hint=f"found: {', '.join(c.name for c in out) or 'none'}",
                )
            out = [c for c in out if c.name in wanted]
        return out

    # --- changes ----------------------------------------------------------------------------

    def changes(
        self,
        url: str,
        token: str | None,
        known: dict[str, str],
        *,
        window: tuple[datetime, datetime] | None = None,
    ) -> Changes:
        """What changed in a calendar since ``token`` (or since the ETags in ``known``).

        With a ``window``, history is never downloaded: the first sync asks only for the
        events in the window, and a full listing fetches only the unknown objects that have
        an occurrence after the window's start (the window only moves forward).
        """
        if token:
            try:
                return self._sync(url, token, known, with_data=True, method="token")
            except TokenRejected:
                pass
        if not known:
            # First sync: one calendar-query for the events in the window, with their data.
            # Servers answer it far faster than a first sync-collection (Radicale writes
            # history for every item then); the token comes with the next sync, which lists
            # ETags and reads the rest of what may still matter.
            margin = timedelta(days=1)  # floating and all-day times: the server's zone may differ
            body = _events_between(
                window[0] - margin if window else None,
                window[1] + margin if window else None,
                with_data=True,
            )
            return self._query_all(url, body)
        since = window[0] - timedelta(days=1) if window else None
        try:
            return self._sync(url, None, known, with_data=False, method="full-token", since=since)
        except TokenRejected:
            return self._etag_diff(url, known, since=since)

    # --- task lists (VTODO) ------------------------------------------------------------------

    def task_list(self, name: str) -> str:
        """The URL of the principal's task list named ``name``, created when missing."""
        with _classified(self._where):
            principal = self._client.principal()  # type: ignore[no-untyped-call]
            for cal in principal.get_calendars():
                if (cal.get_display_name() or "") == name:
                    self.requests += 3
                    return str(cal.url)
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "tasks"
            created = principal.make_calendar(
                name=name, cal_id=slug, supported_calendar_component_set=["VTODO"]
            )
        self.requests += 4
        return str(created.url)

    def todo_etags(self, url: str) -> dict[str, str]:
        """href -> ETag of every VTODO in a task list; no data (fetch() what changed)."""
        response = self._report(url, _QUERY_TODO_ETAGS, "1")
        if response.status >= 400 or response.tree is None:
            raise TransientError(f"{self._where}: listing the task list failed ({response.status})")
        return {
            self._href(url, item.findtext("D:href", namespaces=NS) or ""): (
                item.findtext(_ETAG_PATH, namespaces=NS) or ""
            )
            for item in response.tree.iterfind("D:response", NS)
        }

    def put(self, url: str, href: str, text: str) -> str:
        """Store an object at ``href`` of the collection ``url``; its new ETag ("" if not told)."""
        self.requests += 1
        with _classified(self._where):
            response = self._client.put(
                urljoin(url, href), text, {"Content-Type": "text/calendar; charset=utf-8"}
            )
        if response.status >= 400:
            raise TransientError(f"{self._where}: storing {href} failed ({response.status})")
        return str((response.headers or {}).get("ETag") or "")

    def delete(self, url: str, href: str) -> None:
        self.requests += 1
        with _classified(self._where):
            response = self._client.delete(urljoin(url, href))
        if response.status >= 400 and response.status != 404:
            raise TransientError(f"{self._where}: deleting {href} failed ({response.status})")

    def _query_all(self, url: str, body: str = _QUERY_ALL) -> Changes:
        response = self._report(url, body, "1")
        tree = response.tree
        if response.status == 429 or response.status >= 500:
            raise self._busy(response)
        if response.status in (400, 403, 422, 501) and body != _QUERY_ALL:
            # A server that cannot filter by time (RFC 4791 makes it mandatory, yet): ask for
            # everything instead; the window is applied here anyway.
            return self._query_all(url, _QUERY_ALL)
        if response.status >= 400 or tree is None:
            raise TransientError(f"{self._where}: calendar-query failed ({response.status})")
        out = []
        # One pass over the elements that matter: a path search per property and response
        # costs as much as the rest of reading the answer.
        href = etag = data = None
        for element in tree.iter(_RESPONSE, _HREF, _ETAG, _DATA):
            tag = element.tag
            if tag == _RESPONSE:
                if data is not None and href is not None:
                    out.append(CalendarObject(self._href(url, href), etag or "", data))
                href = etag = data = None
            elif tag == _HREF:
                href = href or element.text or ""
            elif tag == _ETAG:
                etag = element.text
            else:
                data = element.text or ""
        if data is not None and href is not None:
            out.append(CalendarObject(self._href(url, href), etag or "", data))
        return Changes(None, sorted(out, key=lambda o: o.href), [], "query")

    def _report(self, url: str, body: str, depth: str, *, with_token: bool = False) -> Any:
        self.requests += 1
        with _classified(self._where):
            try:
                return self._client.request(url, "REPORT", body, {**self._headers, "Depth": depth})
            except dav_error.AuthorizationError:
                # Radicale and others answer a stale token with 403 <valid-sync-token/>; python-caldav
                # reports every 403 as an authorization error.  Listing again without the token
                # tells the two apart: a real credentials problem fails there too.
                if with_token:
                    raise TokenRejected from None
                raise

    def _sync(
        self,
        url: str,
        token: str | None,
        known: dict[str, str],
        *,
        with_data: bool,
        method: str,
        since: datetime | None = None,
    ) -> Changes:
        response = self._report(url, _sync_body(token, with_data), "1", with_token=bool(token))
        if response.status in (400, 403, 405, 409, 412, 501):
            raise TokenRejected
        if response.status == 507:  # truncated: the listing is incomplete, compare ETags instead
            raise TokenRejected
        if response.status == 429 or response.status >= 500:
            raise self._busy(response)
        tree = response.tree
        if tree is None:
            raise TokenRejected
        if tree.find(".//D:sync-token", NS) is None and tree.find("D:sync-token", NS) is None:
            raise TokenRejected  # a server without RFC 6578
        new_token = (tree.findtext("D:sync-token", namespaces=NS) or "").strip() or None
        listed: dict[str, tuple[str, str | None]] = {}
        deleted: list[str] = []
        for item in tree.findall("D:response", NS):
            href = self._href(url, item.findtext("D:href", namespaces=NS) or "")
            status = item.findtext("D:status", namespaces=NS) or ""
            if "404" in status:
                deleted.append(href)
                continue
            if href.rstrip("/") == url.rstrip("/") or href.endswith("/"):
                continue
            etag = item.findtext(".//D:getetag", namespaces=NS) or ""
            data = item.findtext(".//C:calendar-data", namespaces=NS)
            listed[href] = (etag, data)
        if token is None:  # a full listing: whatever we knew and is not listed was deleted
            deleted = sorted(set(known) - set(listed))
        changed_meta = {h: v for h, v in listed.items() if known.get(h) != v[0]}
        wanted, unread = self._still_relevant(url, changed_meta, known, since)
        return Changes(new_token, self._with_data(url, wanted), deleted, method, unread)

    def _etag_diff(
        self, url: str, known: dict[str, str], *, since: datetime | None = None
    ) -> Changes:
        self.requests += 1
        with _classified(self._where):
            response = self._client.request(
                url, "PROPFIND", _ETAGS, {**self._headers, "Depth": "1"}
            )
        tree = response.tree
        if tree is None:
            raise TransientError(f"{self._where}: the server answered PROPFIND without XML")
        listed: dict[str, tuple[str, str | None]] = {}
        for item in tree.findall("D:response", NS):
            href = self._href(url, item.findtext("D:href", namespaces=NS) or "")
            if href.rstrip("/") == url.rstrip("/") or href.endswith("/"):
                continue
            listed[href] = (item.findtext(".//D:getetag", namespaces=NS) or "", None)
        changed_meta = {h: v for h, v in listed.items() if known.get(h) != v[0]}
        wanted, unread = self._still_relevant(url, changed_meta, known, since)
        return Changes(
            None, self._with_data(url, wanted), sorted(set(known) - set(listed)), "etag", unread
        )

    def _still_relevant(
        self,
        url: str,
        meta: dict[str, tuple[str, str | None]],
        known: dict[str, str],
        since: datetime | None,
    ) -> tuple[dict[str, tuple[str, str | None]], dict[str, str]]:
        """Split objects to download from history not worth downloading: an object never
        seen whose every occurrence ends before ``since`` is only remembered (one
        calendar-query of ETags asks the server which objects reach past ``since``)."""
        unseen = [h for h, (_, data) in meta.items() if h not in known and data is None]
        if since is None or not unseen:
            return meta, {}
        response = self._report(url, _events_between(since, None, with_data=False), "1")
        if response.status >= 400 or response.tree is None:
            return meta, {}  # a server that cannot filter by time: download them all
        reaching = {
            self._href(url, item.findtext("D:href", namespaces=NS) or "")
            for item in response.tree.iterfind("D:response", NS)
        }
        unread = {h: meta[h][0] for h in unseen if h not in reaching}
        return {h: v for h, v in meta.items() if h not in unread}, unread

    def fetch(self, url: str, hrefs: list[str]) -> list[CalendarObject]:
        """These objects of a calendar, with their data (calendar-multiget)."""
        return self._with_data(url, {h: ("", None) for h in hrefs})

    def _with_data(self, url: str, meta: dict[str, tuple[str, str | None]]) -> list[CalendarObject]:
        out = [
            CalendarObject(h, etag, data) for h, (etag, data) in meta.items() if data is not None
        ]
        missing = sorted(h for h, (_, data) in meta.items() if data is None)
        for start in range(0, len(missing), MULTIGET_BATCH):
            response = self._report(
                url, _multiget_body(missing[start : start + MULTIGET_BATCH]), "1"
            )
            for item in response.tree.findall("D:response", NS):
                data = item.findtext(".//C:calendar-data", namespaces=NS)
                if data is None:
                    continue  # deleted since the listing: the next sync reports it
                href = self._href(url, item.findtext("D:href", namespaces=NS) or "")
                out.append(
                    CalendarObject(href, item.findtext(".//D:getetag", namespaces=NS) or "", data)
                )
        return sorted(out, key=lambda o: o.href)

    def _busy(self, response: Any) -> TransientError:
        """429 or 5xx: transient, with the wait the server asked for (Retry-After)."""
        return TransientError(
            f"{self._where}: server busy or failing ({response.status})",
            retry_after=retry_after_seconds((response.headers or {}).get("Retry-After")),
        )

    @staticmethod
    def _href(base: str, href: str) -> str:
        """Hrefs as absolute paths, so the same resource always has the same name."""
        href = href.strip()
        if href.startswith("/") and "?" not in href and "#" not in href:
            return unquote(href)  # the usual form, without parsing URLs 2,000 times
        return unquote(urlsplit(urljoin(base, href)).path)
