"""The configuration's shape: one dataclass per table of the TOML file, validated all at once.

Reading the file (paths anchored to it, mailbox groups expanded) is syncd/config_file.py;
how a field's type and markers are checked is syncd/config_check.py (no pydantic: it cost
every command, ``syncd status`` included, 0.1 s to import).  Every problem is reported
with its key path (``mailbox[1].port``) in one error, so an admin fixes the file in one go.
Secrets stay in ``SecretStr`` and are never written back anywhere.
"""

from __future__ import annotations

import ipaddress
from dataclasses import field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from syncd.config_check import After, Before, Length, Range, SecretStr, Section
from syncd.domain.addresses import normalize_address, normalize_domain
from syncd.domain.business_time import Span, WorkingWeek, parse_hours, parse_workdays
from syncd.domain.durations import parse_duration, seconds
from syncd.domain.urls import shown_url
from syncd.errors import ConfigError

if TYPE_CHECKING:
    from syncd.domain.quiet import QuietRule

DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024


def _seconds(value: object) -> object:
    """A length of time or a number of seconds; any other value is left to the float check
    (which names what it should be)."""
    if isinstance(value, str | int | float):
        return seconds(value)
    return value


# Intervals and timeouts: a length of time ("60s", "5m", "1d"; domain/durations.py), or
# the old form still read, a bare number of seconds (60).
Seconds = Annotated[float, Before(_seconds)]


def _empty() -> list[Any]:
    return []


class DatabaseConfig(Section):
    url: str = "sqlite:///syncd.db"


def _known_zone(value: str) -> str:
    # zoneinfo (0.005 s with the sysconfig it reads) only for a configured zone: `syncd
    # status` of the default one never names a zone.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return value


def _days(value: list[str]) -> list[str]:
    parse_workdays(value)
    return value


def _hours(value: str) -> str:
    parse_hours(value)
    return value


Zone = Annotated[str, After(_known_zone)]
Workdays = Annotated[list[str], After(_days)]
Hours = Annotated[str, After(_hours)]


class _WorkingWeekConfig(Section):
    """Working days and hours: for the organization, and overridable per mailbox (per rep)."""

    timezone: Zone | None = None
    workdays: Workdays | None = None  # ["mon", "tue", "wed", "thu", "fri"]
    hours: Hours | None = None  # "09:00-17:00"


def _domains(value: list[str]) -> list[str]:
    return [normalize_domain(d.lstrip("@")) for d in value]


class OrganizationConfig(_WorkingWeekConfig):
    internal_domains: Annotated[list[str], After(_domains)] = field(default_factory=_empty)
    # The zone of floating times and all-day events, and of working hours.
    timezone: Zone = "UTC"
    workdays: Workdays = field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    hours: Hours = "09:00-17:00"
    holidays: list[date] = field(default_factory=_empty)

    def working_week(self, override: _WorkingWeekConfig | None = None) -> WorkingWeek:
        """The working week of a rep: the organization's, with the rep's own settings on top."""
        from zoneinfo import ZoneInfo

        zone = (override and override.timezone) or self.timezone
        opens, closes = parse_hours((override and override.hours) or self.hours)
        return WorkingWeek(
            zone=ZoneInfo(zone),
            workdays=parse_workdays((override and override.workdays) or self.workdays),
            opens=opens,
            closes=closes,
            holidays=frozenset(self.holidays),
        )


def _exclusions(value: list[str]) -> list[str]:
    out = []
    for entry in value:
        if entry.startswith("@"):
            domain = normalize_domain(entry[1:])
            if "." not in domain:
                raise ValueError(f"{entry!r} is not an @domain")
            out.append("@" + domain)
        else:
            address = normalize_address(entry)
            if address is None:
                raise ValueError(f"{entry!r} is neither an address nor an @domain")
            out.append(address)
    return out


class CaptureConfig(Section):
    max_message_bytes: Annotated[int, Range(gt=0)] = DEFAULT_MAX_MESSAGE_BYTES
    batch_size: Annotated[int, Range(gt=0, le=5000)] = 500
    # What of a message body is kept: nothing, a snippet of the new text, or the text body.
    store: Literal["metadata", "snippet", "full"] = "snippet"
    # Keep no record of mail with no customer link; its unknown addresses are still queued.
    only_matched: bool = False
    # jo+crm@acme.com is jo@acme.com.
    plus_addressing: bool = True
    # Addresses and @domains (subdomains included) never linked, queued, or captured alone.
    exclude: Annotated[list[str], After(_exclusions)] = field(default_factory=_empty)
    # The window of meeting occurrences kept, around now.
    past_days: Annotated[int, Range(ge=0, le=3650)] = 90
    future_days: Annotated[int, Range(ge=0, le=3650)] = 30


FollowupRule = Literal["unanswered_inbound", "no_response", "after_meeting", "gone_quiet"]
DEFAULT_AFTER: dict[str, str] = {
    "unanswered_inbound": "1 business day",
    "no_response": "3 business days",
    "after_meeting": "1 business day",
    "gone_quiet": "30 days",
}


def _span(value: str) -> str:
    Span.parse(value)
    return value


def _lookback(value: str) -> str:
    if Span.parse(value).business:
        raise ValueError(f"{value!r}: the lookback counts calendar days, e.g. '90 days'")
    return value


class FollowupConfig(Section):
    """One [[followup]] entry: switches a rule off or tunes it; unlisted rules keep defaults."""

    rule: FollowupRule
    enabled: bool = True
    after: Annotated[str, After(_span)] | None = None  # default per rule, see DEFAULT_AFTER
    # gone_quiet only: how busy the customer was before going quiet (see domain/quiet.py).
    min_records: Annotated[int, Range(ge=1, le=10000)] | None = None
    lookback: Annotated[str, After(_lookback)] | None = None  # "N days"

    def _check(self) -> None:
        super()._check()
        if self.rule != "gone_quiet" and (self.min_records is not None or self.lookback):
            raise ValueError('min_records and lookback apply to rule = "gone_quiet" only')

    @property
    def span(self) -> Span:
        return Span.parse(self.after or DEFAULT_AFTER[self.rule])


class TasksConfig(Section):
    # Rules look at records of the last N days only: a first backfill of years of mail must
    # not bury reps under stale tasks.
    lookback_days: Annotated[int, Range(ge=1, le=365)] = 14
    # How often the daemon evaluates the rules between syncs.
    interval: Annotated[Seconds, Range(ge=10, le=86400)] = 300.0


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, After(_duration)]


class EventsConfig(Section):
    """The outbox's feed (README, Events): how long events stay for pull consumers."""

    keep: Duration | None = None  # "90d": the daemon prunes older events; default: keep all
    # contact.forgotten names the address: kept this long when no [[webhook]] delivers it.
    keep_forgotten: Duration = "7d"


class SyncConfig(Section):
    """How `syncd run` schedules sources."""

    # Between polls of each mailbox and calendar; IDLE delivers INBOX mail sooner.
    interval: Annotated[Seconds, Range(ge=1, le=86400)] = 60.0
    # Each poll is moved by up to this fraction of the interval, so 200 mailboxes configured
    # at once do not all hit the server in the same second.
    jitter: Annotated[float, Range(ge=0, le=1)] = 0.1
    # Sources synced at the same time; the rest wait their turn.
    concurrency: Annotated[int, Range(ge=1, le=64)] = 8
    idle: bool = True  # IMAP IDLE on INBOX where the server offers it
    # IMAP NOTIFY on the IDLE connection for the other folders (Sent) where the server
    # offers it.  Off: polls ask each folder's STATUS, so mail written into Sent past the
    # server (direct Maildir delivery, a sync tool) is found within one interval, not at
    # the watch's next renewal.
    notify: bool = True
    # Backoff after transient failures: doubling from `interval`, capped here.
    max_backoff: Annotated[Seconds, Range(ge=1, le=86400)] = 1800.0
    # Between `syncd verify` runs of each source in the daemon (0: never).  Cheap on
    # unchanged folders: one EXAMINE each; a listing only where something changed.
    verify_interval: Annotated[Seconds, Range(ge=0, le=30 * 86400)] = 86400.0
    # IMAP sessions kept open between polls (one per mailbox, least recently used closed
    # beyond this; 0: log in for every poll), and how long an unused one stays open: under
    # the servers' 30-minute autologout.
    keep_connections: Annotated[int, Range(ge=0, le=100_000)] = 1000
    connection_idle_timeout: Annotated[Seconds, Range(ge=1, le=1500)] = 600.0
    # `syncd sync` waits this long for pending webhook deliveries before exiting.
    deliver_timeout: Annotated[Seconds, Range(ge=0, le=3600)] = 30.0


def _metrics_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'{value!r} is not host:port (e.g. "127.0.0.1:9464")')
    return value


class MetricsConfig(Section):
    # host:port of the Prometheus endpoint (/metrics, /healthz); off when unset.
    listen: Annotated[str, After(_metrics_listen)] | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self.listen is not None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


def _host_port(value: str, example: str, *, any_port: bool = False) -> str:
    """``host:port``; port 0 (any free one, told in the log) only where ``any_port``."""
    host, sep, port = value.rpartition(":")
    lowest = 0 if any_port else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise ValueError(f'{value!r} is not host:port (e.g. "{example}")')
    return value


def _api_listen(value: str) -> str:
    return _host_port(value, "127.0.0.1:8780", any_port=True)


MAX_API_WORKERS = 16  # each holds POOL_SIZE // workers database connections, at least 4


class ApiConfig(Section):
    """[api]: the HTTP API (syncd/api/), served by `syncd run` and by `syncd serve`."""

    listen: Annotated[str, After(_api_listen)] = "127.0.0.1:8780"
    tls_cert: str | None = None
    tls_key: str | None = None
    # Plain HTTP off loopback: only behind a proxy that terminates TLS.
    allow_plaintext: bool = False
    # Requests a second per token; beyond it, 429 with Retry-After.
    rate_limit: Annotated[int, Range(ge=1, le=100_000)] = 50
    # Processes serving the API on its one listener (syncd/api/processes.py), `syncd serve`
    # only (`syncd run` refuses more than 1).  Each enforces rate_limit / workers per token.
    workers: Annotated[int, Range(ge=1, le=MAX_API_WORKERS)] = 1

    def _check(self) -> None:
        super()._check()
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        if self.tls_cert is None and not self.allow_plaintext:
            host = self.address[0]
            if not is_loopback_host(host):
                raise ValueError(
                    f"listen {self.listen!r} is not loopback: bearer tokens would travel in "
                    "clear; set tls_cert and tls_key, or allow_plaintext = true behind a "
                    "TLS-terminating proxy"
                )

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class SecretSourceConfig(Section):
    """Where a secret comes from; exactly one of the four must be set."""

    password: SecretStr | None = None
    password_file: str | None = None
    password_env: str | None = None
    password_command: str | None = None

    def _check(self) -> None:
        super()._check()
        self._one_secret()

    def _one_secret(self) -> None:
        given = [
            k
            for k in ("password", "password_file", "password_env", "password_command")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            which = ", ".join(given) if given else "none"
            raise ValueError(
                "set exactly one of password_file, password_env, password_command, password "
                f"(found: {which})"
            )


def check_http_url(url: str, allow_plaintext: bool, *, sends: str, key: str = "url") -> None:
    """An http(s) URL, and https unless it stays on this machine or plaintext is allowed."""
    shown = shown_url(url)  # an error quotes no token or password the URL carries
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(f"{key} {shown!r} is not an http(s) URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{key} {shown!r} is not an http(s) URL")
    if parsed.scheme == "http" and not (allow_plaintext or is_loopback_host(parsed.hostname)):
        raise ValueError(
            f"{key} {shown!r} sends {sends} in clear; use https, or set allow_plaintext = true"
        )


def is_loopback_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _owner_is_address(value: str) -> str:
    normalized = normalize_address(value)
    if normalized is None:
        raise ValueError(f"{value!r} is not an email address")
    return normalized


class _SourceConfig(SecretSourceConfig, _WorkingWeekConfig):
    """What every mailbox and calendar has: a name, the rep who owns it, a way in."""

    name: Annotated[str, Length(min=1, pattern=r"^[A-Za-z0-9._@-]+$")]
    owner: Annotated[str, After(_owner_is_address)]
    username: str
    allow_plaintext: bool = False
    # A private CA trusted in addition to the system's; ca_only = true trusts it alone
    # (a server whose certificate must come from that CA and no other).
    ca_file: str | None = None
    ca_only: bool = False
    timeout: Annotated[Seconds, Range(gt=0, le=600)] = 30.0

    def _check(self) -> None:
        super()._check()
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file {self.ca_file} does not exist")
        if self.ca_only and self.ca_file is None:
            raise ValueError("ca_only = true needs ca_file (the only CA to trust)")


class MailboxConfig(_SourceConfig):
    host: str
    port: Annotated[int, Range(gt=0, lt=65536)] = 993
    security: Literal["tls", "starttls", "plain"] = "tls"
    auth: Literal["password", "xoauth2"] = "password"
    folders: list[str] | None = None

    def _check(self) -> None:
        super()._check()
        if self.security == "plain" and not (self.allow_plaintext or is_loopback_host(self.host)):
            raise ValueError(
                f'security = "plain" sends the password in clear to {self.host}; use "tls" or '
                '"starttls", or set allow_plaintext = true if you really mean it'
            )


class CalendarConfig(_SourceConfig):
    url: str
    calendars: list[str] | None = None  # display names; default: every event calendar
    # A CalDAV task list (created when missing) that receives the owner's follow-up tasks
    # as VTODOs; completing or deleting one there is read back as done or dismissed.
    tasks_calendar: str | None = None

    def _check(self) -> None:
        super()._check()
        check_http_url(self.url, self.allow_plaintext, sends="the password")


class GroupMemberEntry(Section):
    """One rep of a [[mailbox_group]]: an inline table, or a row of its members_file."""

    owner: str
    username: str | None = None  # the rep's login name; default: the owner address
    refresh_token_file: str | None = None  # grant = "refresh_token": this rep's refresh token


class OAuth2ClientConfig(Section):
    """How a group's XOAUTH2 access tokens are obtained (connectors/oauth2.py): made from a
    [[mailbox_group]]'s keys, shared by its members."""

    group: str
    token_url: str
    client_id: str
    client_secret_file: str | None = None
    client_secret_env: str | None = None
    client_secret_command: str | None = None
    scope: str | None = None
    grant: Literal["client_credentials", "refresh_token"] = "client_credentials"
    ca_file: str | None = None  # trusted besides the system's CAs
    timeout: Annotated[Seconds, Range(gt=0, le=600)] = 30.0


class MailboxGroupConfig(_WorkingWeekConfig):
    """Many reps' mailboxes on one server with one service credential: a Dovecot-style
    master user, or XOAUTH2 tokens syncd obtains itself.  Each member becomes a mailbox
    named after its owner (syncd/groups.py)."""

    name: Annotated[str, Length(min=1, pattern=r"^[A-Za-z0-9._@-]+$")]
    host: str
    port: Annotated[int, Range(gt=0, lt=65536)] = 993
    security: Literal["tls", "starttls", "plain"] = "tls"
    allow_plaintext: bool = False
    ca_file: str | None = None
    ca_only: bool = False
    timeout: Annotated[Seconds, Range(gt=0, le=600)] = 30.0
    folders: list[str] | None = None
    members_file: str | None = None  # CSV: owner[,username][,refresh_token_file]
    members: list[str | GroupMemberEntry] | None = None
    # A master user: the login for each member, %u standing for its username.
    login_user: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    password_env: str | None = None
    password_command: str | None = None
    # XOAUTH2 with tokens from an OAuth2 token endpoint.
    token_url: str | None = None
    client_id: str | None = None
    client_secret_file: str | None = None
    client_secret_env: str | None = None
    client_secret_command: str | None = None
    scope: str | None = None
    grant: Literal["client_credentials", "refresh_token"] = "client_credentials"

    def _check(self) -> None:
        super()._check()
        if (self.members_file is None) == (self.members is None):
            raise ValueError("set exactly one of members_file (a CSV file) and members (a list)")
        passwords = [
            k
            for k in ("password", "password_file", "password_env", "password_command")
            if getattr(self, k) is not None
        ]
        secrets = [
            k
            for k in ("client_secret_file", "client_secret_env", "client_secret_command")
            if getattr(self, k) is not None
        ]
        oauth = self.token_url is not None or self.client_id is not None or bool(secrets)
        if oauth and (passwords or self.login_user is not None):
            raise ValueError(
                "a group logs in one way: login_user with a password_* (a master user), or "
                "token_url, client_id and a client_secret_* (XOAUTH2), not both"
            )
        if oauth:
            if self.token_url is None or self.client_id is None or len(secrets) != 1:
                raise ValueError(
                    "XOAUTH2 needs token_url, client_id and exactly one of client_secret_file, "
                    f"client_secret_env, client_secret_command (found: {', '.join(secrets) or 'none'})"
                )
            check_http_url(
                self.token_url, self.allow_plaintext, sends="the client secret", key="token_url"
            )
        else:
            if self.scope is not None or self.grant != "client_credentials":
                raise ValueError(
                    "scope and grant are for XOAUTH2: set token_url, client_id and a client_secret_*"
                )
            if self.login_user is None or "%u" not in self.login_user:
                raise ValueError(
                    "set login_user, the master-user login with %u for each rep's username "
                    '(Dovecot: "%u*syncd"), or token_url, client_id and a client_secret_* for XOAUTH2'
                )
            if len(passwords) != 1:
                raise ValueError(
                    "set exactly one of password_file, password_env, password_command, password "
                    f"for the master user (found: {', '.join(passwords) or 'none'})"
                )
        if self.security == "plain" and not (self.allow_plaintext or is_loopback_host(self.host)):
            raise ValueError(
                f'security = "plain" sends the credential in clear to {self.host}; use "tls" or '
                '"starttls", or set allow_plaintext = true if you really mean it'
            )
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file {self.ca_file} does not exist")
        if self.ca_only and self.ca_file is None:
            raise ValueError("ca_only = true needs ca_file (the only CA to trust)")

    def oauth2(self) -> OAuth2ClientConfig | None:
        """The token endpoint settings, when the group logs in with XOAUTH2."""
        if self.token_url is None or self.client_id is None:
            return None
        return OAuth2ClientConfig(
            group=self.name,
            token_url=self.token_url,
            client_id=self.client_id,
            client_secret_file=self.client_secret_file,
            client_secret_env=self.client_secret_env,
            client_secret_command=self.client_secret_command,
            scope=self.scope,
            grant=self.grant,
            ca_file=self.ca_file,
            timeout=self.timeout,
        )


class GroupMemberConfig(MailboxConfig):
    """A mailbox made from a [[mailbox_group]] member: a [[mailbox]] in every respect, with
    its group's credential (a master-user login and password, or XOAUTH2 tokens)."""

    group: str
    oauth2: OAuth2ClientConfig | None = None
    refresh_token_file: str | None = None
    # Named in a members_file: the folder refresh_token_file must lie in (syncd/groups.py).
    refresh_token_dir: str | None = None

    def _one_secret(self) -> None:  # replaces the password rule: tokens need none
        if self.oauth2 is None:
            super()._one_secret()


class DirectoryConfig(Section):
    """Where the customer directory comes from: a CSV file the CRM exports, or a command
    printing it; the daemon and `syncd sync` mirror it (see engine/directory_sync.py)."""

    file: str | None = None  # relative to the config file
    command: Annotated[list[str], Length(min=1)] | None = None  # run without a shell
    interval: Annotated[Seconds, Range(ge=1, le=86400)] = 60.0  # between checks
    timeout: Annotated[Seconds, Range(gt=0, le=3600)] = 60.0  # how long the command may take
    # A file listing no customer, no contact or no domain (while the directory has some)
    # changes nothing unless this is set: that is far more often a failed export.
    allow_empty: bool = False
    # Rows written per transaction when a file is applied: each holds the write lock that
    # briefly, so other writers (a sync, `syncd tasks add`) never wait on a large file.
    batch: Annotated[int, Range(ge=1, le=100_000)] = 2000

    def _check(self) -> None:
        super()._check()
        if (self.file is None) == (self.command is None):
            raise ValueError("set exactly one of file and command")


def _retry_for(value: str) -> str:
    retry_seconds(value)
    return value


class WebhookConfig(Section):
    """One [[webhook]]: an HTTP endpoint receiving signed events (syncd/webhooks/)."""

    name: Annotated[str, Length(min=1, max=100, pattern=r"^[A-Za-z0-9._@-]+$")]
    url: str
    # The Standard Webhooks secret "whsec_<base64>": exactly one source, as for passwords.
    secret: SecretStr | None = None
    secret_file: str | None = None
    secret_env: str | None = None
    secret_command: str | None = None
    events: list[str] | None = None  # event types sent; default every type
    since: date | None = None  # skip events about records that occurred before this day
    ca_file: str | None = None  # a private CA trusted besides the system's
    timeout: Annotated[Seconds, Range(gt=0, le=300)] = 10.0
    allow_plaintext: bool = False
    # How long a delivery is retried before it is marked failed: "24h", "90m", "3600s", "2d".
    retry_for: Annotated[str, After(_retry_for)] = "24h"

    def _check(self) -> None:
        super()._check()
        given = [
            k
            for k in ("secret", "secret_file", "secret_env", "secret_command")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of secret_file, secret_env, secret_command, secret "
                f"(found: {', '.join(given) or 'none'})"
            )
        if self.secret is not None and not self.secret.get_secret_value().startswith("whsec_"):
            raise ValueError('secret must be a Standard Webhooks secret "whsec_<base64>"')
        check_http_url(self.url, self.allow_plaintext, sends="events")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file {self.ca_file} does not exist")

    def secret_source(self) -> SecretSourceConfig:
        """The secret's source in the shape syncd/secrets.py reads."""
        return SecretSourceConfig(
            password=self.secret,
            password_file=self.secret_file,
            password_env=self.secret_env,
            password_command=self.secret_command,
        )

    @property
    def retry_seconds(self) -> float:
        return retry_seconds(self.retry_for)


_BOTH: list[Literal["records", "tasks"]] = ["records", "tasks"]


class CrmConfig(Section):
    """One [[crm]]: a CRM syncd writes its records and tasks into through the CRM's REST API,
    and whose accounts and contacts may be syncd's customer directory (syncd/crm/)."""

    name: Annotated[str, Length(min=1, max=100, pattern=r"^[A-Za-z0-9._@-]+$")]
    kind: Literal["bottlecrm"]
    url: str
    # A personal access token: exactly one source, as for passwords.
    token_file: str | None = None
    token_env: str | None = None
    token_command: str | None = None
    push: list[Literal["records", "tasks"]] = field(default_factory=lambda: list(_BOTH))
    directory: bool = False  # the CRM's accounts and contacts are syncd's customer directory
    since: date | None = None  # records that occurred earlier are not pushed
    interval: Annotated[Seconds, Range(ge=1, le=86400)] = 300.0  # between pulls
    timeout: Annotated[Seconds, Range(gt=0, le=300)] = 10.0  # per socket operation
    ca_file: str | None = None  # a private CA trusted besides the system's
    allow_plaintext: bool = False

    def _check(self) -> None:
        super()._check()
        given = [
            k for k in ("token_file", "token_env", "token_command") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of token_file, token_env, token_command "
                f"(found: {', '.join(given) or 'none'})"
            )
        check_http_url(self.url, self.allow_plaintext, sends="records and a token")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file {self.ca_file} does not exist")


def retry_seconds(value: str) -> float:
    """A webhook's retry horizon in seconds: a length of time from one second to 30 days."""
    seconds = parse_duration(value).total_seconds()
    if not 1 <= seconds <= 30 * 86400:
        raise ValueError(f"{value!r} must be between 1 second and 30 days")
    return seconds


class Config(Section):
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    organization: OrganizationConfig = field(default_factory=OrganizationConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    api: ApiConfig | None = None  # the HTTP API: off unless the section is there
    tasks: TasksConfig = field(default_factory=TasksConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    followup: list[FollowupConfig] = field(default_factory=_empty)
    mailbox: list[MailboxConfig] = field(default_factory=_empty)
    # Expanded into `mailbox` by config_file.parse_config: one GroupMemberConfig per member.
    mailbox_group: list[MailboxGroupConfig] = field(default_factory=_empty)
    calendar: list[CalendarConfig] = field(default_factory=_empty)
    directory: DirectoryConfig | None = None
    webhook: list[WebhookConfig] = field(default_factory=_empty)
    crm: list[CrmConfig] = field(default_factory=_empty)

    def _check(self) -> None:
        super()._check()
        items: (
            list[MailboxConfig]
            | list[CalendarConfig]
            | list[MailboxGroupConfig]
            | list[WebhookConfig]
            | list[CrmConfig]
        )
        for kind, items in (
            ("mailbox", self.mailbox),
            ("calendar", self.calendar),
            ("mailbox_group", self.mailbox_group),
            ("webhook", self.webhook),
            ("crm", self.crm),
        ):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise ValueError(
                        f"{kind} name {item.name!r} is used twice; names must be unique"
                    )
                seen.add(item.name)

    def followup_rules(self) -> dict[str, Span]:
        """The enabled rules and their delays: the three defaults, as [[followup]] tunes them."""
        rules = {name: Span.parse(after) for name, after in DEFAULT_AFTER.items()}
        for entry in self.followup:
            if entry.enabled:
                rules[entry.rule] = entry.span
            else:
                rules.pop(entry.rule, None)
        return rules

    def gone_quiet(self) -> QuietRule | None:
        """The gone_quiet rule's settings, or None when it is switched off."""
        # The rule's module, and the follow-up rules it builds on, are left to the commands
        # that evaluate rules: `syncd status` reads the configuration and never asks.
        from syncd.domain.quiet import QUIET_LOOKBACK, QUIET_MIN_RECORDS, QuietRule

        span = self.followup_rules().get("gone_quiet")
        if span is None:
            return None
        entry = next((e for e in self.followup if e.rule == "gone_quiet"), None)
        lookback = Span.parse((entry and entry.lookback) or QUIET_LOOKBACK)
        return QuietRule(
            after=span,
            min_records=(entry and entry.min_records) or QUIET_MIN_RECORDS,
            lookback=timedelta(hours=lookback.amount * (24 if lookback.unit == "day" else 1)),
        )

    def working_week_of(self, owner: str) -> WorkingWeek:
        """A rep's working week: the first mailbox (or calendar) they own may override it."""
        for source in [*self.mailbox, *self.calendar]:
            if source.owner == owner:
                return self.organization.working_week(source)
        return self.organization.working_week()

    @property
    def internal_domains(self) -> frozenset[str]:
        return frozenset(self.organization.internal_domains)

    def mailbox_named(self, name: str) -> MailboxConfig:
        for box in self.mailbox:
            if box.name == name:
                return box
        raise ConfigError([f"no [[mailbox]] named {name!r}"])
