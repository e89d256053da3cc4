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
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.client import HTTPException
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

from caldav.davclient import DAVClient
from caldav.lib import error as dav_error
from lxml import etree

from syncd.config import CalendarConfig
from syncd.connectors import retry

# Re-exported: these value types live with the interface in base.py; older imports from
# here keep working.
from syncd.connectors.base import CalendarInfo as CalendarInfo
from syncd.connectors.base import CalendarObject as CalendarObject
from syncd.connectors.base import Changes as Changes
from syncd.connectors.retry import parse_retry_after
from syncd.connectors.trust import system_ca_bundle, with_private_ca
from syncd.domain.calendar_limits import MAX_OBJECT_BYTES
from syncd.errors import (
    CredentialsError,
    InternalError,
    RefusedError,
    RemoteConfigError,
    RemoteError,
    SyncdError,
    TransientError,
)
from syncd.logs import get_logger

log = get_logger("syncd.caldav")

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
_SIZE_PATH = ".//D:getcontentlength"


class UnreadableAnswer(TransientError):
    """The server's answer is not XML the parser accepts: most often one object too large
    for it (lxml refuses text nodes over 10 MB).  Asked again in smaller pieces."""


def _too_large(item: Any) -> str | None:
    """Why a listed object is not downloaded, from its announced size; None to download."""
    try:
        size = int(item.findtext(_SIZE_PATH, namespaces=NS) or 0)
    except ValueError:
        return None
    if size > MAX_OBJECT_BYTES:
        return f"calendar-data of {size:,} bytes is over the limit of {MAX_OBJECT_BYTES:,}"
    return None


_UNJOINABLE = re.compile(r"can't be joined with (\S+)")


def _sync_body(token: str | None, with_data: bool) -> str:
    data = "<C:calendar-data/>" if with_data else "<D:getcontentlength/>"
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
    '<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:resourcetype/>'
    "<D:getcontentlength/></D:prop></D:propfind>"
)


_CALSERVER = "http://calendarserver.org/ns/"
_VERSION = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<D:propfind xmlns:D="DAV:" xmlns:CS="{_CALSERVER}">'
    "<D:prop><D:sync-token/><CS:getctag/></D:prop></D:propfind>"
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
    except (SyncdError, TokenRejected):  # already says what to do (RemoteError included)
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
    except (dav_error.DAVError, etree.XMLSyntaxError) as err:  # the server answered badly
        raise TransientError(f"{where}: the server failed ({type(err).__name__})") from None
    except MemoryError:
        raise TransientError(f"{where}: an answer too large to hold in memory") from None
    except Exception as err:
        if _is_network_failure(err):
            raise _network_error(where, err) from None
        internal = InternalError.from_exception(where, err)
        # The type and the place only: the message may quote server data or a secret.
        log.error("caldav.internal_error", where=where, error=internal.message)
        raise internal from None


# The HTTP stacks under caldav raise their own families, not all of them OSError.
_NETWORK_MODULES = ("niquests", "urllib3", "urllib3_future", "requests", "h11", "h2", "qh3")


def _is_network_failure(err: BaseException) -> bool:
    """A failure of the network or of the HTTP exchange, not of our code or caldav's."""
    if isinstance(err, (OSError, HTTPException, EOFError)):
        return True
    return any(cls.__module__.split(".")[0] in _NETWORK_MODULES for cls in type(err).__mro__)


def _network_error(where: str, err: BaseException) -> RemoteError:
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


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def _shown(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


class _SameOriginClient(DAVClient):
    """A DAV client that sends nothing, credentials least of all, outside the origin of the
    configured URL.  Discovery follows URLs the server names (principal, calendar home,
    calendars); a server that names another host, port or scheme (plain http included)
    must not receive the password there.  Every request passes through ``request``."""

    def __init__(self, *args: Any, where: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._origin = origin_of(str(kwargs["url"]))
        self._where = where

    def request(self, url: Any, *args: Any, **kwargs: Any) -> Any:
        target = urljoin(str(self.url), str(url))
        if origin_of(target) != self._origin:
            raise self.foreign(target)

        def attempt() -> Any:
            try:
                return super(_SameOriginClient, self).request(url, *args, **kwargs)
            except Exception as err:
                # Network failures are classified here so that the policy can retry the
                # transient ones; caldav's own errors go on to ``_classified`` unchanged.
                if _is_network_failure(err):
                    raise _network_error(self._where, err) from None
                raise

        return retry.REQUEST.call(attempt, on_retry=self._retrying)

    def _retrying(self, err: BaseException, wait: float) -> None:
        log.info("caldav.retry", error=str(err), retry_in=round(wait, 2))

    def foreign(self, url: str) -> RemoteConfigError:
        """The refusal of a URL on another origin: named by its origin only (no path, no
        user info), with what to do about it."""
        return RemoteConfigError(
            f"{self._where}: the server pointed to {_shown(origin_of(url))}, another "
            f"origin than the configured {_shown(self._origin)}; syncd sends the "
            "password only to the configured origin",
            hint="set url to the calendar collection or principal on the server that "
            "holds it (the same scheme, host and port as everything it names)",
        )


def _trusted_cas(config: CalendarConfig) -> str:
    """What the HTTP client verifies against: the system's CA bundle plus ``ca_file``, or
    ``ca_file`` alone with ``ca_only`` (a path is the only bundle trusted).  Never ``True``:
    the client's own default reads every PEM file under /etc/ssl, a self-signed snakeoil
    certificate included (see connectors/trust.py)."""
    if config.ca_file is not None and config.ca_only:
        return config.ca_file
    # PEM text is taken as the bundle itself.
    bundle = system_ca_bundle() if config.ca_file is None else with_private_ca(config.ca_file)
    if "-----BEGIN CERTIFICATE-----" not in bundle:
        # An empty text would turn verification off.
        raise RemoteConfigError(
            f"calendar {config.name}: this host has no CA certificates to verify the server with",
            hint="install the system's CA certificates (ca-certificates), or set ca_file",
        )
    return bundle


class CalDavSession:
    """One account on a CalDAV server; counts the requests it makes."""

    def __init__(self, config: CalendarConfig, secret: Callable[[], str]) -> None:
        self._config = config
        self._where = f"calendar {config.name}"
        verify = _trusted_cas(config)
        self._client = _SameOriginClient(
            where=self._where,
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
        self._listing_failed = False  # the last unfiltered calendar-query got a 500
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
            try:
                principal = self._client.principal()  # type: ignore[no-untyped-call]
            except ValueError as err:
                # python-caldav refuses to join a principal URL on another origin; say why.
                joined = _UNJOINABLE.search(str(err))
                if joined is None:
                    raise
                raise self._client.foreign(joined.group(1)) from None
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
            except UnreadableAnswer:
                # One changed object too large to read inline: list ETags and sizes, then
                # fetch only what is small enough.
                try:
                    return self._sync(url, token, known, with_data=False, method="token")
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
            try:
                return self._query_all(url, body)
            except TransientError as err:
                unreadable = isinstance(err, UnreadableAnswer)
                if err.retry_after is not None or not (self._listing_failed or unreadable):
                    raise
                # Even the unfiltered query fails (the server reads every object for it):
                # a sync-collection lists without reading; multiget fetches the objects.
                try:
                    return self._sync(url, None, known, with_data=False, method="full-token")
                except TokenRejected:
                    raise err from None
        since = window[0] - timedelta(days=1) if window else None
        try:
            return self._sync(url, None, known, with_data=False, method="full-token", since=since)
        except TokenRejected:
            return self._etag_diff(url, known, since=since)

    # --- verify ---------------------------------------------------------------------------------

    def collection_version(self, url: str) -> str | None:
        """The calendar's sync-token or CTag: changes whenever an object is added, changed or
        removed, so an unchanged value lets verify skip the listing.  None when it has neither."""
        response = self._propfind(url, _VERSION, "0")
        tree = response.tree
        if response.status >= 400 or tree is None:
            return None
        token = tree.findtext(".//D:sync-token", namespaces=NS) or ""
        ctag = tree.findtext(".//CS:getctag", namespaces={"CS": _CALSERVER}) or ""
        return f"{token}|{ctag}" if token or ctag else None

    def window_etags(self, url: str, start: datetime, end: datetime) -> dict[str, str]:
        """href -> ETag of every event with an occurrence in [start, end); no data."""
        response = self._report(url, _events_between(start, end, with_data=False), "1")
        if response.status in (400, 403, 422, 500, 501):
            # A server that cannot filter by time, or that fails the filter on one object it
            # cannot read itself (Xandikos answers 500), as `changes` does: every event (a
            # superset is still honest, the caller only asks about what it has not seen).
            response = self._report(url, _events_between(None, None, with_data=False), "1")
            if response.status == 500:
                # Even the unfiltered query reads every object: a PROPFIND lists without.
                return self._listed_etags(url)
        if response.status == 429 or response.status >= 500:
            raise self._busy(response)
        if response.status >= 400 or response.tree is None:
            raise TransientError(f"{self._where}: listing the calendar failed ({response.status})")
        return {
            self._href(url, item.findtext("D:href", namespaces=NS) or ""): (
                item.findtext(_ETAG_PATH, namespaces=NS) or ""
            )
            for item in response.tree.iterfind("D:response", NS)
        }

    def _listed_etags(self, url: str) -> dict[str, str]:
        """href -> ETag of every object of the calendar, by PROPFIND (nothing is parsed)."""
        response = self._propfind(url, _ETAGS, "1")
        if response.status == 429 or response.status >= 500:
            raise self._busy(response)
        if response.status >= 400 or response.tree is None:
            raise TransientError(f"{self._where}: listing the calendar failed ({response.status})")
        out = {}
        for item in response.tree.iterfind("D:response", NS):
            href = self._href(url, item.findtext("D:href", namespaces=NS) or "")
            if href.rstrip("/") != url.rstrip("/") and not href.endswith("/"):
                out[href] = item.findtext(".//D:getetag", namespaces=NS) or ""
        return out

    def changed_since(self, url: str, token: str) -> set[str] | None:
        """hrefs added or changed since ``token`` (RFC 6578, no data); None when the server
        no longer accepts the token."""
        try:
            response = self._report(url, _sync_body(token, False), "1", with_token=True)
        except TokenRejected:
            return None
        if response.status >= 400 or response.tree is None:
            return None
        return {
            self._href(url, item.findtext("D:href", namespaces=NS) or "")
            for item in response.tree.iterfind("D:response", NS)
            if "404" not in (item.findtext("D:status", namespaces=NS) or "")
        }

    def _propfind(self, url: str, body: str, depth: str) -> Any:
        self.requests += 1
        with _classified(self._where):
            return self._client.request(url, "PROPFIND", body, {**self._headers, "Depth": depth})

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
        self._listing_failed = response.status == 500 and body == _QUERY_ALL
        if response.status in (400, 403, 422, 500, 501) and body != _QUERY_ALL:
            # A server that cannot filter by time (RFC 4791 makes it mandatory, yet), or that
            # fails the filter on one object it cannot read itself (Xandikos answers 500,
            # SabreDAV reportedly too): ask for everything, which needs no reading; the
            # window is applied here anyway, and the broken object is quarantined here.
            found = self._query_all(url, _QUERY_ALL)
            return replace(found, method="query-unfiltered")
        if response.status == 429 or response.status >= 500:
            raise self._busy(response)
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
                response = self._client.request(
                    url, "REPORT", body, {**self._headers, "Depth": depth}
                )
            except etree.XMLSyntaxError:
                raise UnreadableAnswer(
                    f"{self._where}: the server's answer is not readable XML"
                ) from None
            except dav_error.AuthorizationError:
                # Radicale and others answer a stale token with 403 <valid-sync-token/>; python-caldav
                # reports every 403 as an authorization error.  Listing again without the token
                # tells the two apart: a real credentials problem fails there too.
                if with_token:
                    raise TokenRejected from None
                raise
        if response.status == 404:
            # The collection itself is gone (deleted since discovery): that calendar is
            # reported and the account's other calendars still sync.
            raise RemoteConfigError(
                f"{self._where}: calendar not found",
                hint="check url; `syncd check` lists the calendars",
            )
        return response

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
        oversized: dict[str, tuple[str, str]] = {}
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
            if data is None and known.get(href) != etag and (why := _too_large(item)):
                oversized[href] = (etag, why)
        if token is None:  # a full listing: whatever we knew and is not listed was deleted
            deleted = sorted(set(known) - set(listed))
        changed_meta = {
            h: v for h, v in listed.items() if known.get(h) != v[0] and h not in oversized
        }
        wanted, unread = self._still_relevant(url, changed_meta, known, since)
        return Changes(new_token, self._with_data(url, wanted), deleted, method, unread, oversized)

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
        oversized: dict[str, tuple[str, str]] = {}
        for item in tree.findall("D:response", NS):
            href = self._href(url, item.findtext("D:href", namespaces=NS) or "")
            if href.rstrip("/") == url.rstrip("/") or href.endswith("/"):
                continue
            etag = item.findtext(".//D:getetag", namespaces=NS) or ""
            listed[href] = (etag, None)
            if known.get(href) != etag and (why := _too_large(item)):
                oversized[href] = (etag, why)
        changed_meta = {
            h: v for h, v in listed.items() if known.get(h) != v[0] and h not in oversized
        }
        wanted, unread = self._still_relevant(url, changed_meta, known, since)
        objects = self._with_data(url, wanted, oversized)
        return Changes(
            None,
            objects,
            sorted(set(known) - set(listed)),
            "etag",
            unread,
            oversized,
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

    def _with_data(
        self,
        url: str,
        meta: dict[str, tuple[str, str | None]],
        unreadable: dict[str, tuple[str, str]] | None = None,
    ) -> list[CalendarObject]:
        """The objects of ``meta`` with their data (calendar-multiget for those without).
        An answer the XML parser refuses is asked again in halves; an object that cannot be
        read even alone goes to ``unreadable`` (href -> ETag, reason) when given."""
        out = [
            CalendarObject(h, etag, data) for h, (etag, data) in meta.items() if data is not None
        ]
        missing = sorted(h for h, (_, data) in meta.items() if data is None)
        for start in range(0, len(missing), MULTIGET_BATCH):
            out += self._multiget(url, missing[start : start + MULTIGET_BATCH], meta, unreadable)
        return sorted(out, key=lambda o: o.href)

    def _multiget(
        self,
        url: str,
        hrefs: list[str],
        meta: dict[str, tuple[str, str | None]],
        unreadable: dict[str, tuple[str, str]] | None,
    ) -> list[CalendarObject]:
        try:
            response = self._report(url, _multiget_body(hrefs), "1")
        except UnreadableAnswer:
            if len(hrefs) == 1 and unreadable is not None:
                unreadable[hrefs[0]] = (
                    meta[hrefs[0]][0],
                    "the server's answer for this object is not readable XML (too large?)",
                )
                return []
            if len(hrefs) == 1:
                raise
            half = len(hrefs) // 2
            return self._multiget(url, hrefs[:half], meta, unreadable) + self._multiget(
                url, hrefs[half:], meta, unreadable
            )
        out = []
        for item in response.tree.findall("D:response", NS):
            data = item.findtext(".//C:calendar-data", namespaces=NS)
            if data is None:
                continue  # deleted since the listing: the next sync reports it
            href = self._href(url, item.findtext("D:href", namespaces=NS) or "")
            out.append(
                CalendarObject(href, item.findtext(".//D:getetag", namespaces=NS) or "", data)
            )
        return out

    def _busy(self, response: Any) -> TransientError:
        """429 or 5xx: transient, with the wait the server asked for (Retry-After)."""
        return TransientError(
            f"{self._where}: server busy or failing ({response.status})",
            retry_after=parse_retry_after((response.headers or {}).get("Retry-After")),
        )

    @staticmethod
    def _href(base: str, href: str) -> str:
        """Hrefs as absolute paths, so the same resource always has the same name."""
        href = href.strip()
        if href.startswith("/") and "?" not in href and "#" not in href:
            return unquote(href)  # the usual form, without parsing URLs 2,000 times
        return unquote(urlsplit(urljoin(base, href)).path)
