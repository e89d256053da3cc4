"""[[mailbox_group]]: many reps' mailboxes from one directory, with one service credential.

A group's members (a CSV file or an inline list) each become a ``GroupMemberConfig``, a
``MailboxConfig`` like any [[mailbox]], named after its owner address, so that the daemon,
`syncd sync`, `check`, `verify` and `status` treat them as configured mailboxes.  Bad rows
are reported all at once, each with its file and line, as the customers import does; a
config with any of them is refused (at start, and on SIGHUP, where the running one is kept).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from syncd.config import (
    Config,
    GroupMemberConfig,
    GroupMemberEntry,
    MailboxGroupConfig,
    OAuth2ClientConfig,
)
from syncd.config_check import Invalid
from syncd.domain.addresses import normalize_address
from syncd.errors import ConfigError
from syncd.secret_sources import confined, credential_path

COLUMNS = ("owner", "username", "refresh_token_file")
# Bounds on a members file: a directory export of a large company fits, a runaway file does
# not fill memory, and an admin fixing a broken file sees the first problems, not 50,000.
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_MEMBERS = 100_000
MAX_PROBLEMS = 100
_UNSAFE = frozenset(chr(c) for c in range(32)) | {"\x7f"}


@dataclass(frozen=True, slots=True)
class _Row:
    where: str  # "reps.csv line 3" or "members[2]"
    entry: GroupMemberEntry
    folder: Path | None = None  # of the members file the row is in; None: inline


@dataclass(slots=True)
class _TokenFiles:
    """Where a members file's refresh_token_file may lie, and who names which already.

    A members file is a directory export, not the admin's config: a row naming /etc/shadow,
    the group's client secret or another rep's token would have syncd send that file to the
    token endpoint.  So a row's file must lie in $CREDENTIALS_DIRECTORY (where systemd puts
    credentials) or, without it, in the members file's folder, links resolved; it must be
    no secret file the config names, and no other row's."""

    secrets: dict[Path, str]  # resolved path -> who names it (the config, or a row)

    def check(self, name: str, folder: Path, where: str, problems: list[str]) -> tuple[str, str]:
        """(the file, the folder it must stay in), a problem added when it may not be read."""
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        root = Path(credentials) if credentials else folder
        path = Path(name) if Path(name).is_absolute() else root / name
        real = confined(path, str(root))
        if real is None:
            problems.append(
                f"{where}: refresh_token_file {path} is outside {root}: a members file may name "
                f"only files in {root}"
            )
        elif real in self.secrets:
            problems.append(
                f"{where}: refresh_token_file {path} is also {self.secrets[real]}; each rep's "
                "refresh token has a file of its own"
            )
        else:
            self.secrets[real] = f"the refresh_token_file of {where}"
        return str(path), str(root)


def _secret_files(config: Config) -> dict[Path, str]:
    """The secret files the config itself names, resolved."""
    named: dict[Path, str] = {}
    sources = [
        *(("password_file", f"[[mailbox]] {b.name}", b.password_file) for b in config.mailbox),
        *(("password_file", f"[[calendar]] {c.name}", c.password_file) for c in config.calendar),
        *(("secret_file", f"[[webhook]] {w.name}", w.secret_file) for w in config.webhook),
    ]
    for group in config.mailbox_group:
        sources += [
            ("password_file", f"[[mailbox_group]] {group.name}", group.password_file),
            ("client_secret_file", f"[[mailbox_group]] {group.name}", group.client_secret_file),
        ]
    for key, who, file in sources:
        if file is not None:
            named[credential_path(file).resolve()] = f"the {key} of {who}"
    return named


def expand_groups(config: Config, *, base: Path | None, source: str = "") -> Config:
    """The config with every group's members appended to ``mailbox``; ConfigError listing
    every bad row and every name taken twice."""
    problems: list[str] = []
    taken = {box.name: f"[[mailbox]] {box.name!r}" for box in config.mailbox}
    # Whose mailbox each member opens: two rows naming one login (a slip in a directory
    # export) would capture one rep's mail again under another rep's name.
    logins = {
        (box.host.lower(), box.port, box.username.casefold()): f"[[mailbox]] {box.name!r}"
        for box in config.mailbox
    }
    members: list[GroupMemberConfig] = []
    token_files = _TokenFiles(_secret_files(config))
    for index, group in enumerate(config.mailbox_group):
        label = f"mailbox_group[{index}] ({group.name})"
        rows = _rows(group, base, label, problems)
        oauth2 = group.oauth2()
        # The group's first good member: the others are made from it, their own values
        # checked (the group's were, once, in it).
        prototype: GroupMemberConfig | None = None
        for row in rows:
            member = _member(
                group, oauth2, row, f"{label} {row.where}", problems, token_files, prototype
            )
            if member is None:
                continue
            prototype = prototype or member
            where = f"{label} {row.where}"
            if member.name in taken:
                problems.append(
                    f"{where}: mailbox {member.name!r} is also {taken[member.name]}; a group's "
                    "mailboxes are named after their owners: remove one of the two"
                )
                continue
            login = row.entry.username or member.owner
            key = (group.host.lower(), group.port, login.casefold())
            if key in logins:
                problems.append(
                    f"{where}: username {login!r} is also the login of {logins[key]}; each rep "
                    "logs in to their own mailbox: correct the username column"
                )
                continue
            logins[key] = where
            taken[member.name] = where
            members.append(member)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more")
        raise ConfigError(shown, path=source or None)
    return replace(config, mailbox=[*config.mailbox, *members])


def _rows(
    group: MailboxGroupConfig, base: Path | None, label: str, problems: list[str]
) -> list[_Row]:
    if group.members is not None:
        return [
            _Row(
                f"members[{i}]",
                GroupMemberEntry(owner=item) if isinstance(item, str) else item,
            )
            for i, item in enumerate(group.members)
        ]
    assert group.members_file is not None  # the config guarantees one of the two
    path = Path(group.members_file)
    if not path.is_absolute() and base is not None:
        path = base / path  # relative to the config file, like a SQLite database
    text = _read(path, label, problems)
    return [] if text is None else _parse_csv(text, path, label, problems)


def _read(path: Path, label: str, problems: list[str]) -> str | None:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        problems.append(f"{label}: members_file {path}: cannot read ({err.strerror})")
        return None
    if len(raw) > MAX_FILE_BYTES:
        problems.append(f"{label}: members_file {path} is over {MAX_FILE_BYTES:,} bytes")
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.append(f"{label}: members_file {path} is not UTF-8 text; save it as UTF-8 CSV")
        return None


def _parse_csv(text: str, path: Path, label: str, problems: list[str]) -> list[_Row]:
    """Rows of ``owner[,username][,refresh_token_file]`` under that header line."""
    name = path.name
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as err:
        problems.append(f"{label} {name} line 1: not CSV ({err})")
        return []
    if (
        not header
        or header[0] != "owner"
        or len(set(header)) != len(header)
        or any(h not in COLUMNS for h in header)
    ):
        # The header is not quoted: a members_file pointed by mistake at a secret file
        # would print the secret into the log and the terminal.
        problems.append(
            f"{label} {name}: the first line is not a header of owner, optionally followed by "
            "username and refresh_token_file"
        )
        return []
    rows: list[_Row] = []
    try:
        for values in reader:
            where = f"{name} line {reader.line_num}"
            if not any(v.strip() for v in values):
                continue  # blank lines
            if len(rows) >= MAX_MEMBERS:
                problems.append(f"{label} {name}: more than {MAX_MEMBERS:,} members")
                break
            if len(values) > len(header):
                problems.append(
                    f"{label} {where}: {len(values)} fields, the header has {len(header)}"
                )
                continue
            cells = {k: v.strip() or None for k, v in zip(header, values, strict=False)}
            rows.append(
                _Row(
                    where,
                    GroupMemberEntry(
                        owner=cells.get("owner") or "",
                        username=cells.get("username"),
                        refresh_token_file=cells.get("refresh_token_file"),
                    ),
                    path.parent,
                )
            )
    except csv.Error as err:
        problems.append(f"{label} {name} line {reader.line_num}: not CSV ({err})")
    return rows


def _member(
    group: MailboxGroupConfig,
    oauth2: OAuth2ClientConfig | None,
    row: _Row,
    where: str,
    problems: list[str],
    token_files: _TokenFiles,
    prototype: GroupMemberConfig | None = None,
) -> GroupMemberConfig | None:
    """The mailbox of one member, or None after adding why the row is bad to ``problems``."""
    entry = row.entry
    owner = normalize_address(entry.owner) if entry.owner else None
    if owner is None or owner.count("@") != 1:  # "a@b@example.com" is no one's address
        problems.append(f"{where}: owner {entry.owner!r} is not an email address")
        return None
    username = entry.username or owner
    if any(c in _UNSAFE for c in username) or any(
        c in _UNSAFE for c in entry.refresh_token_file or ""
    ):
        problems.append(f"{where}: control characters in username or refresh_token_file")
        return None
    refresh = oauth2 is not None and oauth2.grant == "refresh_token"
    if refresh and not entry.refresh_token_file:
        problems.append(
            f'{where}: grant = "refresh_token" needs this rep\'s refresh_token_file '
            "(a column of members_file, or a key of the members entry)"
        )
        return None
    if entry.refresh_token_file and not refresh:
        problems.append(
            f'{where}: refresh_token_file is only for groups with grant = "refresh_token"'
        )
        return None
    token_file, token_dir = entry.refresh_token_file if refresh else None, None
    if token_file and row.folder is not None:
        count = len(problems)
        token_file, token_dir = token_files.check(token_file, row.folder, where, problems)
        if len(problems) > count:
            return None
    # A master user logs in as "alice*syncd"; XOAUTH2 names the rep's own mailbox.
    login = username if oauth2 else (group.login_user or "%u").replace("%u", username)
    own: dict[str, Any] = {
        "name": owner,
        "owner": owner,
        "username": login,
        "refresh_token_file": token_file,
        "refresh_token_dir": token_dir,
    }
    try:
        if prototype is not None:
            return prototype.derive(**own)
        return GroupMemberConfig(
            **own,
            group=group.name,
            host=group.host,
            port=group.port,
            security=group.security,
            allow_plaintext=group.allow_plaintext,
            ca_file=group.ca_file,
            ca_only=group.ca_only,
            timeout=group.timeout,
            folders=group.folders,
            timezone=group.timezone,
            workdays=group.workdays,
            hours=group.hours,
            auth="xoauth2" if oauth2 else "password",
            password=group.password,
            password_file=group.password_file,
            password_env=group.password_env,
            password_command=group.password_command,
            oauth2=oauth2,
        )
    except Invalid as err:
        for loc, message in err.problems:
            field = ".".join(str(part) for part in loc) or "owner"
            if field == "name":
                problems.append(
                    f"{where}: owner {owner!r} cannot name a mailbox (letters, digits and "
                    ". _ @ - only)"
                )
            else:
                problems.append(f"{where}: {field}: {message}")
        return None
