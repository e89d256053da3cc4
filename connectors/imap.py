"""IMAP over imapclient: read-only, peek-only, bounded, with failures classified.

Never changes a mailbox: folders are opened with EXAMINE and bodies fetched with
BODY.PEEK, so no \\Seen flag is ever set.  Messages are fetched partially (the first
``PREFIX_BYTES``), which bounds memory whatever the size of a message; messages over
the configured size limit are captured from their headers only.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import select
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import imapclient
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError

from syncd.config import MailboxConfig
from syncd.connectors import retry
from syncd.connectors.base import FetchedMessage, FolderInfo, FolderStatus
from syncd.domain.limits import MAX_FIELD_BYTES, MAX_HEADER_BYTES
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

log = get_logger("syncd.imap")

# The header and enough of the body for a 500-character snippet of new text, even behind
# HTML or MIME headers.  Also the most a single message can cost in memory.
PREFIX_BYTES = 64 * 1024
_PREFIX = b"BODY[]<0>"
_DATE_FIELD = re.compile(rb"(?im)^date[ \t]*:")
# "12 (UID 40 RFC822.SIZE 3630 BODY[]<0> {3630}": how Dovecot, Gmail and others answer.
_FETCH_HEAD = re.compile(
    rb"^\d+ \(UID (?P<uid>\d+) RFC822\.SIZE (?P<size>\d+) BODY\[\]<0> \{\d+\}$"
)
# Message-ID lines only, and only twice the parser's field cap of them: a header repeating
# the field 10,000 times costs 32 KB, not megabytes, while the first Message-ID (the one
# that counts), which the parser keeps up to MAX_FIELD_BYTES once unfolded, comes whole
# with its name and folding, so it re-identifies to the key it was stored under.
_IDS_BYTES = 2 * MAX_FIELD_BYTES
_IDS_ITEM = f"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]<0.{_IDS_BYTES}>"
_IDS = b"BODY[HEADER.FIELDS (MESSAGE-ID)]<0>"
# A header that does not end within the prefix is fetched again on its own, up to the
# parser's cap: an 18 MB header costs 256 KB, not 18 MB.
_HEADER_ITEM = f"BODY.PEEK[HEADER]<0.{MAX_HEADER_BYTES}>"
_HEADER_KEY = b"BODY[HEADER]<0>"
# The largest literal (a "{n}" counted string) syncd reads from a server.  Every literal
# it asks for is bounded by a partial fetch (at most MAX_HEADER_BYTES), so this only
# leaves room for a server that ignores partial fetches on an ordinary message; a server
# announcing "{3000000000}" is refused before anything is allocated.
MAX_LITERAL_BYTES = 64 * 1024 * 1024


class LiteralTooLarge(Exception):
    """The server announced a literal over MAX_LITERAL_BYTES; the connection is unusable."""


def classify(err: BaseException, where: str) -> RemoteError:
    """Turn a library or socket failure into the error that says what to do next.

    Only network and server failures are transient; anything else (an ``AttributeError``
    from a changed imapclient, a ``TypeError`` of ours) is an ``InternalError``.
    """
    if isinstance(err, RemoteError):
        return err
    if isinstance(err, LiteralTooLarge):
        return TransientError(f"{where}: {err}")
    if isinstance(err, MemoryError):
        return TransientError(f"{where}: a server response too large to hold in memory")
    if isinstance(err, LoginError):
        if "UNAVAILABLE" in str(err).upper():  # RFC 5530: the server's auth backend is down
            return TransientError(f"{where}: the server cannot check logins right now")
        return CredentialsError(
            f"{where}: the server refused the login",
            hint="check username and password (or token) for this mailbox",
        )
    if isinstance(err, ssl.SSLCertVerificationError):
        return RemoteConfigError(
            f"{where}: the server's TLS certificate is not trusted ({err.verify_message})",
            hint="set ca_file to the CA that signed the server certificate",
        )
    if isinstance(err, CapabilityError) and "STARTTLS" in str(err):
        return RemoteConfigError(
            f"{where}: the server does not offer STARTTLS",
            hint='use security = "tls" on the TLS port (usually 993); syncd never falls back to plain text',
        )
    if isinstance(err, ssl.SSLError):
        return RemoteConfigError(
            f"{where}: TLS failed ({err.reason or err})",
            hint='check port and security ("tls" on 993, "starttls" on 143)',
        )
    if isinstance(err, ConnectionRefusedError):
        return RefusedError(
            f"{where}: connection refused", hint="check host and port, and that the server is up"
        )
    if isinstance(err, socket.gaierror):
        return RemoteConfigError(f"{where}: cannot resolve the host name", hint="check host")
    if isinstance(err, (TimeoutError, socket.timeout)):
        return TransientError(f"{where}: timed out")
    if isinstance(err, (ConnectionError, imaplib.IMAP4.abort, EOFError)):
        return TransientError(f"{where}: connection lost ({type(err).__name__})")
    if isinstance(err, OSError):
        return RefusedError(f"{where}: network error ({err.strerror or type(err).__name__})")
    if isinstance(err, IMAPClientError):
        return RemoteConfigError(f"{where}: the server said no ({err})")
    return InternalError.from_exception(where, err)


@contextmanager
def _classified(where: str) -> Iterator[None]:
    try:
        yield
    except SyncdError:  # already says what to do (a secret that cannot be read, a RemoteError)
        raise
    except (Exception, MemoryError) as err:
        classified = classify(err, where)
        if isinstance(classified, InternalError):
            # The type and the place only: the message may quote server data or a secret.
            log.error("imap.internal_error", where=where, error=classified.message)
        raise classified from None


def _bound_literals(client: imapclient.IMAPClient) -> None:
    """Refuse literals over MAX_LITERAL_BYTES before imaplib allocates a buffer for them.

    imaplib reads every literal with ``self.read(size)``, trusting the server's size.
    """
    imap = getattr(client, "_imap", None)
    if imap is None:
        return
    read = imap.read

    def bounded_read(size: int) -> bytes:
        if size > MAX_LITERAL_BYTES:
            raise LiteralTooLarge(
                f"the server announced a {size:,}-byte literal; syncd reads at most "
                f"{MAX_LITERAL_BYTES:,} (a broken or hostile server)"
            )
        data: bytes = read(size)
        return data

    imap.read = bounded_read


def tls_context(ca_file: str | None, *, ca_only: bool = False) -> ssl.SSLContext:
    """Certificates are always verified: against the system's CAs plus ``ca_file``, or
    against ``ca_file`` alone with ``ca_only``."""
    # create_default_context(cafile=...) skips the system store: load the two separately.
    context = ssl.create_default_context(cafile=ca_file if ca_only else None)
    if ca_file is not None and not ca_only:
        context.load_verify_locations(cafile=ca_file)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class ImapSession:
    """A logged-in, read-only connection to one mailbox."""

    def __init__(
        self,
        client: imapclient.IMAPClient,
        config: MailboxConfig,
        caps: frozenset[bytes] = frozenset(),
    ) -> None:
        self._client = client
        self._config = config
        self._max_bytes = 0
        self._folder: str | None = None
        self._condstore = b"CONDSTORE" in caps  # the capabilities seen at login

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        config: MailboxConfig,
        secret: Callable[[], str],
        *,
        max_bytes: int,
        should_stop: retry.StopCheck = retry.never,
        policy: retry.RetryPolicy = retry.LOGIN,
    ) -> ImapSession:
        """Connect and log in, retrying transient failures by ``policy``."""
        session = policy.call(lambda: _connect(config, secret), should_stop=should_stop)
        session._max_bytes = max_bytes
        return session

    # --- MailSession ------------------------------------------------------------------------

    def capabilities(self) -> frozenset[str]:
        with _classified(self._where()):
            caps = self._client.capabilities()
        return frozenset(c.decode("ascii", "replace").upper() for c in caps)

    def folders(self) -> list[FolderInfo]:
        with _classified(self._where()):
            listing = self._client.list_folders()
        return [
            FolderInfo(name, frozenset(f.decode("ascii", "replace") for f in flags))
            for flags, _delim, name in listing
        ]

    def default_folders(self) -> list[str]:
        """INBOX and the folder with the \\Sent special use (RFC 6154), when there is one."""
        out = ["INBOX"]
        for info in self.folders():
            if "\\Sent" in info.flags and info.name not in out:
                out.append(info.name)
        return out

    def examine(self, folder: str) -> FolderStatus:
        info = self._ask_folder(folder, lambda: self._client.select_folder(folder, readonly=True))
        self._folder = folder
        with _classified(self._where(folder)):
            return _folder_status(folder, info, count=b"EXISTS", selected=True)

    def status(self, folder: str) -> FolderStatus:
        """The folder's UIDVALIDITY, UIDNEXT, message count (and HIGHESTMODSEQ under
        CONDSTORE) in one round trip, without opening it.

        The folder open right now is examined again instead: STATUS is not meant for the
        selected mailbox (RFC 3501 6.3.10, RFC 9051 6.3.11), and EXAMINE is one round trip too.
        """
        if folder == self._folder:
            return self.examine(folder)
        items = ["UIDNEXT", "UIDVALIDITY", "MESSAGES"]
        if self._condstore:
            items.append("HIGHESTMODSEQ")  # RFC 7162 3.1.8
        info = self._ask_folder(folder, lambda: self._client.folder_status(folder, items))
        if b"UIDVALIDITY" not in info:  # a server (or proxy) that answers less than asked
            return self.examine(folder)
        with _classified(self._where(folder)):
            return _folder_status(folder, info, count=b"MESSAGES", selected=False)

    def _ask_folder(self, folder: str, ask: Callable[[], dict[bytes, Any]]) -> dict[bytes, Any]:
        """EXAMINE or STATUS: a server's refusal names the folder as the thing to fix."""
        with _classified(self._where(folder)):
            try:
                return ask()
            except imaplib.IMAP4.abort:
                raise  # a dropped connection, not a bad folder: transient (classify)
            except IMAPClientError as err:
                raise RemoteConfigError(
                    f"{self._where(folder)}: cannot open the folder ({err})",
                    hint="check the folder name; `syncd check` lists the folders of each mailbox",
                ) from None

    def uids_from(self, first_uid: int, last_uid: int | None = None) -> list[int]:
        """UIDs in [first_uid, last_uid] (to the end when last_uid is None) of the open folder, ascending."""
        upper = "*" if last_uid is None else str(last_uid)
        with _classified(self._where(self._folder)):
            found = self._client.search(["UID", f"{max(first_uid, 1)}:{upper}"])
        # "n:*" also matches the highest UID when it is below n (RFC 3501 6.4.8).
        return sorted(
            uid for uid in found if uid >= first_uid and (last_uid is None or uid <= last_uid)
        )

    def fetch(self, uids: list[int]) -> list[FetchedMessage]:
        """The first PREFIX_BYTES of each message (header and start of body) in one literal.

        One literal per message is what keeps the fetch near the raw rate: every extra
        item costs a parse per message in imapclient.  INTERNALDATE, the slowest item to
        parse, is fetched only for messages without a Date header, and the header alone
        only for the rare message whose header does not fit in the prefix.
        """
        if not uids:
            return []
        with _classified(self._where(self._folder)):
            prefixes = self._fetch_prefixes(uids)
        out: list[FetchedMessage] = []
        undated: list[int] = []
        long_headers: list[int] = []
        for uid in uids:
            found = prefixes.get(uid)
            if found is None:
                continue  # expunged between SEARCH and FETCH: nothing to capture
            size, raw = found
            header_end = _header_end(raw)
            if header_end < 0 and size > len(raw):
                long_headers.append(uid)
            headers_only = size > self._max_bytes
            if headers_only and header_end >= 0:
                raw = raw[:header_end]
            if not _DATE_FIELD.search(raw, 0, header_end if header_end >= 0 else len(raw)):
                undated.append(uid)
            out.append(FetchedMessage(uid, size, None, raw, headers_only))
        if undated or long_headers:
            out = self._complete(out, undated, long_headers)
        return out

    def _fetch_prefixes(self, uids: list[int]) -> dict[int, tuple[int, bytes]]:
        """{uid: (RFC822.SIZE, first PREFIX_BYTES)}: the bulk of every backfill.

        The usual response shape is read with one regex over imaplib's output instead of
        imapclient's general-purpose tokenizer, which costs more than everything else in
        a fetch.  Anything in another shape (NIL, quoted strings, a server's odd ordering)
        is fetched again through imapclient, so only speed depends on this path.
        """
        items = f"(RFC822.SIZE BODY.PEEK[]<0.{PREFIX_BYTES}>)"
        out: dict[int, tuple[int, bytes]] = {}
        imap = getattr(self._client, "_imap", None)
        if imap is not None:
            typ, data = imap.uid("FETCH", ",".join(map(str, uids)), items)
            if typ != "OK":
                raise IMAPClientError(f"fetch failed: {data!r}"[:200])
            for item in data:
                if isinstance(item, tuple) and len(item) == 2:
                    head = _FETCH_HEAD.match(item[0])
                    if head is not None:
                        out[int(head.group("uid"))] = (int(head.group("size")), item[1])
        rest = [uid for uid in uids if uid not in out]
        if rest:
            response = self._client.fetch(rest, ["RFC822.SIZE", f"BODY.PEEK[]<0.{PREFIX_BYTES}>"])
            for uid, data in response.items():
                out[uid] = (int(data.get(b"RFC822.SIZE", 0)), data.get(_PREFIX) or b"")
        return out

    def _complete(
        self, fetched: list[FetchedMessage], undated: list[int], long_headers: list[int]
    ) -> list[FetchedMessage]:
        with _classified(self._where(self._folder)):
            dates = self._client.fetch(undated, ["INTERNALDATE"]) if undated else {}
            headers = self._client.fetch(long_headers, [_HEADER_ITEM]) if long_headers else {}
        out = []
        for item in fetched:
            when = dates.get(item.uid, {}).get(b"INTERNALDATE")
            header = headers.get(item.uid, {}).get(_HEADER_KEY)
            out.append(
                FetchedMessage(
                    item.uid,
                    item.size,
                    _aware(when),
                    header if header is not None else item.raw,
                    item.headers_only or header is not None,
                )
            )
        return out

    def fetch_message_ids(self, uids: list[int]) -> dict[int, bytes]:
        """The Message-ID header field of each UID, to re-identify messages cheaply."""
        if not uids:
            return {}
        with _classified(self._where(self._folder)):
            response = self._client.fetch(uids, [_IDS_ITEM])
        return {uid: data.get(_IDS) or b"" for uid, data in response.items()}

    # --- push (IDLE, RFC 2177): connectors/imap_idle.py reads the socket itself ---------------

    @property
    def client(self) -> imapclient.IMAPClient:
        return self._client

    def limit_bodies(self, max_bytes: int) -> None:
        """Bodies above ``max_bytes`` are fetched as headers only (a session made for
        something else, e.g. an IDLE watch, then lent to a poll)."""
        self._max_bytes = max_bytes

    # --- kept between polls ------------------------------------------------------------------

    def looks_alive(self) -> bool:
        """A local check, no round trip: between commands a server sends nothing unless it
        is going away (BYE at autologout or shutdown, then end of file), so a socket with
        something to read, or none at all, is not worth a command."""
        try:
            sock = self._client.socket()
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return False
            # poll(), not select(): a daemon with thousands of mailboxes has sockets past
            # FD_SETSIZE (1,024), which select() refuses.
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLPRI)
            events = poller.poll(0)
        except (OSError, ValueError, AttributeError):  # closed, or an imapclient that changed
            return False
        return not events  # readable, hung up, or in error: not worth a command

    def close_within(self, seconds: float) -> None:
        """LOGOUT, waiting at most ``seconds`` for the answer; then the socket goes anyway."""
        with contextlib.suppress(Exception):
            self._client.socket().settimeout(seconds)
        self.close()

    def close(self) -> None:
        try:
            self._client.logout()
        except Exception:
            with contextlib.suppress(Exception):
                self._client.shutdown()

    def __enter__(self) -> ImapSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self, folder: str | None = None) -> str:
        return f"mailbox {self._config.name}" + (f" folder {folder}" if folder else "")


def _header_end(raw: bytes) -> int:
    """Offset just past the blank line that ends the header section, or -1."""
    at = raw.find(b"\r\n\r\n")
    if at >= 0:
        return at + 4
    at = raw.find(b"\n\n")
    return at + 2 if at >= 0 else -1


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# TCP keepalives on every IMAP connection: one kept between polls, or in IDLE, is silent
# for minutes, and NAT gateways and cloud load balancers forget idle flows after 4 to 6
# minutes without telling either end.  A probe each minute keeps the flow known; a peer gone
# for good turns the socket into an error within KEEPALIVE_IDLE + INTERVAL x COUNT seconds,
# which ``looks_alive`` sees without sending a command that would wait out the timeout.
KEEPALIVE_IDLE = 60
KEEPALIVE_INTERVAL = 20
KEEPALIVE_COUNT = 3


def _keep_alive(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # a platform without them: the timeouts still bound
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE),  # Linux; macOS names it TCP_KEEPALIVE
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _connect(config: MailboxConfig, secret: Callable[[], str]) -> ImapSession:
    where = f"mailbox {config.name} ({config.host}:{config.port})"
    timeout = imapclient.SocketTimeout(connect=config.timeout, read=config.timeout)
    client: imapclient.IMAPClient | None = None
    password: str | None = None
    try:
        with _classified(where):
            # The credential before the connection: a token that must be requested (and may
            # wait for another mailbox's request, or be refused) neither keeps an
            # unauthenticated connection idling on the mail server nor opens one for nothing.
            password = secret()
            if config.security == "tls":
                client = imapclient.IMAPClient(
                    config.host,
                    config.port,
                    ssl=True,
                    ssl_context=tls_context(config.ca_file, ca_only=config.ca_only),
                    timeout=timeout,
                )
            else:
                client = imapclient.IMAPClient(config.host, config.port, ssl=False, timeout=timeout)
                if config.security == "starttls":
                    client.starttls(tls_context(config.ca_file, ca_only=config.ca_only))
            client.normalise_times = False
            _keep_alive(client.socket())
            _bound_literals(client)
            if config.auth == "xoauth2":
                client.oauth2_login(config.username, password)
            else:
                client.login(config.username, password)
            password = None
            caps = frozenset(client.capabilities())
            if b"CONDSTORE" in caps and b"ENABLE" in caps:
                client.enable("CONDSTORE")  # so EXAMINE reports HIGHESTMODSEQ
    except BaseException:
        if client is not None:
            with contextlib.suppress(Exception):  # the original error is the one to report
                client.shutdown()
        raise
    finally:
        password = None
    return ImapSession(client, config, caps)


def _folder_status(
    folder: str, info: dict[bytes, Any], *, count: bytes, selected: bool
) -> FolderStatus:
    """EXAMINE's or STATUS's answer (``count``: EXISTS or MESSAGES) as a FolderStatus."""
    modseq = info.get(b"HIGHESTMODSEQ")
    uidnext = info.get(b"UIDNEXT")
    return FolderStatus(
        name=folder,
        uidvalidity=int(info[b"UIDVALIDITY"]),
        uidnext=int(uidnext) if uidnext is not None else None,
        highestmodseq=int(modseq) if modseq is not None else None,
        exists=int(info.get(count, 0)),
        selected=selected,
    )
