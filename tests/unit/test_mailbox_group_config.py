"""[[mailbox_group]] in the configuration: members from a CSV file or a list, each a mailbox
named after its owner; every bad row and every name taken twice reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd import config_check
from syncd.cli.example_config import EXAMPLE
from syncd.config import GroupMemberConfig, MailboxConfig
from syncd.config_file import load_config, parse_config
from syncd.errors import ConfigError
from syncd.secrets import exposed_secrets

MASTER = """
[[mailbox_group]]
name = "sales"
host = "imap.example.com"
members_file = "reps.csv"
login_user = "%u*syncd"
password_file = "master"
folders = ["INBOX"]
timezone = "Europe/London"
"""

OAUTH = """
[[mailbox_group]]
name = "m365"
host = "outlook.example.com"
members = ["Dana@Example.com", {owner = "eve@example.com", username = "eve.x@example.com"}]
token_url = "https://login.example.com/tenant/oauth2/v2.0/token"
client_id = "syncd-app"
client_secret_file = "m365-secret"
scope = "https://outlook.example.com/.default"
"""


def _load(tmp_path: Path, toml: str, csv: str | None = None) -> object:
    if csv is not None:
        (tmp_path / "reps.csv").write_text(csv)
    path = tmp_path / "syncd.toml"
    path.write_text(toml)
    return load_config(path)


def test_members_of_a_csv_become_mailboxes_named_after_their_owners(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        MASTER,
        "owner,username\nalice@example.com\nBob@Example.com,bob\n\ncarol@example.com,\n",
    )
    boxes = config.mailbox  # type: ignore[attr-defined]
    assert [b.name for b in boxes] == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert all(isinstance(b, GroupMemberConfig) and isinstance(b, MailboxConfig) for b in boxes)
    # The master-user login: %u is the member's username, which defaults to its owner.
    assert [b.username for b in boxes] == [
        "alice@example.com*syncd",
        "bob*syncd",
        "carol@example.com*syncd",
    ]
    alice = boxes[0]
    assert (alice.host, alice.port, alice.security, alice.folders) == (
        "imap.example.com", 993, "tls", ["INBOX"],
    )  # fmt: skip
    assert alice.password_file == "master" and alice.auth == "password"
    assert alice.group == "sales" and alice.oauth2 is None
    # The group's working week is its members' (a team abroad).
    assert str(config.working_week_of("bob@example.com").zone) == "Europe/London"  # type: ignore[attr-defined]


def test_inline_members_with_xoauth2_share_the_groups_token_settings(tmp_path: Path) -> None:
    config = _load(tmp_path, OAUTH)
    dana, eve = config.mailbox  # type: ignore[attr-defined]
    assert (dana.name, dana.username, dana.auth) == (
        "dana@example.com",
        "dana@example.com",
        "xoauth2",
    )
    assert (eve.name, eve.username) == ("eve@example.com", "eve.x@example.com")
    assert dana.password_file is None and dana.oauth2 == eve.oauth2
    assert dana.oauth2.client_id == "syncd-app" and dana.oauth2.grant == "client_credentials"
    # A member's config does not change when another member is added (no restart of it).
    again = _load(tmp_path, OAUTH.replace('members = ["', 'members = ["zed@example.com", "'))
    assert dana in again.mailbox  # type: ignore[attr-defined]


def test_every_bad_row_is_listed_with_its_line(tmp_path: Path) -> None:
    rows = (
        "owner,username\n"
        "alice@example.com\n"
        "not-an-address\n"  # line 3
        "bob@example.com,bob,extra\n"  # line 4
        "jo+crm@example.com\n"  # line 5: cannot name a mailbox
        "alice@example.com,again\n"  # line 6: the same owner twice
        "carol@example.com,car\x07ol\n"  # line 7
    )
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, MASTER, rows)
    problems = caught.value.problems
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    assert "reps.csv line 3: owner 'not-an-address' is not an email address" in text
    assert "reps.csv line 4: 3 fields, the header has 2" in text
    assert "reps.csv line 5: owner 'jo+crm@example.com' cannot name a mailbox" in text
    assert (
        "reps.csv line 6: mailbox 'alice@example.com' is also mailbox_group[0] (sales) reps.csv line 2"
        in text
    )
    assert "reps.csv line 7: control characters" in text
    assert all(p.startswith("mailbox_group[0] (sales) reps.csv") for p in problems)


def test_a_bad_header_or_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the first line is not a header of owner") as caught:
        _load(tmp_path, MASTER, "email,name\nalice@example.com,Alice\n")
    assert "email,name" not in caught.value.message  # a secret file's first line is the secret
    (tmp_path / "reps.csv").unlink()
    with pytest.raises(ConfigError, match=r"members_file .*reps.csv: cannot read"):
        _load(tmp_path, MASTER)


def test_a_member_named_like_a_mailbox_is_an_error_naming_both(tmp_path: Path) -> None:
    toml = (
        MASTER + '\n[[mailbox]]\nname = "alice@example.com"\nowner = "alice@example.com"\n'
        'host = "imap.example.com"\nusername = "alice"\npassword_env = "PW"\n'
    )
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, toml, "owner\nalice@example.com\n")
    (problem,) = caught.value.problems
    assert "mailbox_group[0] (sales) reps.csv line 2" in problem
    assert "[[mailbox]] 'alice@example.com'" in problem
    # Two groups naming the same owner: the second names the first.
    two = OAUTH + OAUTH.replace('"m365"', '"m365b"')
    with pytest.raises(
        ConfigError,
        match=r"members\[0\]: mailbox 'dana@example.com' is also mailbox_group\[0\] \(m365\) members\[0\]",
    ):
        _load(tmp_path, two)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('login_user = "%u*syncd"', "a group logs in one way"),  # both credentials
        ('client_id = "x"', "XOAUTH2 needs token_url"),
        ('token_url = "http://login.example.com/token"', "sends the client secret in clear"),
        ('members_file = "reps.csv"', "exactly one of members_file"),
    ],
)
def test_a_group_logs_in_one_way(tmp_path: Path, change: str, message: str) -> None:
    key = change.split(" = ")[0]
    lines = [line for line in OAUTH.splitlines() if not line.startswith(key + " ")]
    if key == "client_id":
        lines = [line for line in lines if not line.startswith("token_url")]
    toml = "\n".join(lines) + "\n" + change + "\n"
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, toml)


def test_master_user_needs_a_login_template_and_one_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set login_user"):
        _load(
            tmp_path, MASTER.replace('login_user = "%u*syncd"', 'login_user = "syncd"'), "owner\n"
        )
    with pytest.raises(
        ConfigError, match=r"for the master user \(found: password_file, password_env\)"
    ):
        _load(tmp_path, MASTER + 'password_env = "X"\n', "owner\n")
    with pytest.raises(ConfigError, match="scope and grant are for XOAUTH2"):
        _load(tmp_path, MASTER + 'grant = "refresh_token"\n', "owner\n")


def test_refresh_tokens_come_per_member(tmp_path: Path) -> None:
    toml = (
        OAUTH.replace(
            'members = ["Dana@Example.com", {owner = "eve@example.com", username = "eve.x@example.com"}]',
            'members_file = "reps.csv"',
        )
        + 'grant = "refresh_token"\n'
    )
    config = _load(tmp_path, toml, "owner,refresh_token_file\ndana@example.com,tokens/dana\n")
    (dana,) = config.mailbox  # type: ignore[attr-defined]
    # Relative to the members file (no $CREDENTIALS_DIRECTORY here), and confined to it.
    assert dana.refresh_token_file == str(tmp_path / "tokens/dana")
    assert dana.refresh_token_dir == str(tmp_path) and dana.oauth2.grant == "refresh_token"
    with pytest.raises(
        ConfigError, match=r"line 3: grant = \"refresh_token\" needs this rep's refresh_token_file"
    ):
        _load(
            tmp_path,
            toml,
            "owner,refresh_token_file\ndana@example.com,tokens/dana\neve@example.com\n",
        )
    with pytest.raises(ConfigError, match="refresh_token_file is only for groups"):
        _load(tmp_path, MASTER, "owner,refresh_token_file\ndana@example.com,tokens/dana\n")


def test_the_example_shows_a_group_commented(tmp_path: Path) -> None:
    assert "# [[mailbox_group]]" in EXAMPLE
    # Uncommented (its first level of comments), the example's group is a valid config.
    block = EXAMPLE[EXAMPLE.index("# [[mailbox_group]]") : EXAMPLE.index("# One [[calendar]]")]
    toml = "\n".join(line[2:] for line in block.splitlines() if not line.startswith("# #"))
    config = _load(tmp_path, toml, "owner,username\nbob@example.com,bob\n")
    (bob,) = config.mailbox  # type: ignore[attr-defined]
    assert (bob.name, bob.username, bob.group) == ("bob@example.com", "bob*syncd", "sales")


def test_a_groups_secret_files_are_checked_once(tmp_path: Path) -> None:
    (tmp_path / "master").write_text("pw")
    (tmp_path / "master").chmod(0o644)
    toml = MASTER.replace('password_file = "master"', f'password_file = "{tmp_path / "master"}"')
    config = _load(tmp_path, toml, "owner\nalice@example.com\nbob@example.com\n")
    problems = exposed_secrets(config, tmp_path / "syncd.toml")  # type: ignore[arg-type]
    assert problems == [
        f"mailbox_group sales: password_file {tmp_path / 'master'} is readable by group or "
        "others (mode 0644): chmod 600 it"
    ]


def test_two_members_logging_in_to_one_mailbox_are_refused(tmp_path: Path) -> None:
    # bob's row names alice's login (a slip in a directory export): bob's "mailbox" would be
    # alice's, her mail captured a second time as bob's.  The default username (the owner)
    # counts, and logins differing only by case are one on the servers syncd talks to.
    rows = (
        "owner,username\n"
        "alice@example.com\n"
        "bob@example.com,Alice@Example.com\n"  # line 3
        "carol@example.com,carol\n"
        "dave@example.com,CAROL\n"  # line 5
        "eve@bad@example.com\n"  # line 6: not an address
    )
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, MASTER, rows)
    problems = caught.value.problems
    assert len(problems) == 3, problems
    text = "\n".join(problems)
    assert (
        "reps.csv line 3: username 'Alice@Example.com' is also the login of "
        "mailbox_group[0] (sales) reps.csv line 2" in text
    )
    assert "reps.csv line 5: username 'CAROL' is also the login of" in text
    assert "reps.csv line 6: owner 'eve@bad@example.com' is not an email address" in text
    # The same username in two groups on different servers is two mailboxes: allowed.
    other = MASTER.replace('"sales"', '"support"').replace("imap.example.com", "imap2.example.com")
    (tmp_path / "reps2.csv").write_text("owner,username\nzed@example.com,alice@example.com\n")
    config = _load(
        tmp_path,
        MASTER + other.replace("reps.csv", "reps2.csv"),
        "owner\nalice@example.com\n",
    )
    assert [b.name for b in config.mailbox] == ["alice@example.com", "zed@example.com"]  # type: ignore[attr-defined]


def test_a_refresh_token_file_others_may_read_is_warned_about(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    rows = ["owner,refresh_token_file"]
    for n in range(30):
        (tokens / f"rep{n}").write_text(f"rt-{n}-secret")
        (tokens / f"rep{n}").chmod(0o600 if n == 0 else 0o640)
        rows.append(f"rep{n}@example.com,{tokens / f'rep{n}'}")
    (tmp_path / "secret").write_text("cs")
    (tmp_path / "secret").chmod(0o600)
    toml = (
        OAUTH.replace(
            'members = ["Dana@Example.com", {owner = "eve@example.com", username = "eve.x@example.com"}]',
            'members_file = "reps.csv"',
        ).replace('"m365-secret"', f'"{tmp_path / "secret"}"')
        + 'grant = "refresh_token"\n'
    )
    config = _load(tmp_path, toml, "\n".join(rows) + "\n")
    problems = exposed_secrets(config, tmp_path / "syncd.toml")  # type: ignore[arg-type]
    assert problems[0] == (
        f"mailbox rep1@example.com: refresh_token_file {tokens / 'rep1'} is readable by group "
        "or others (mode 0640): chmod 600 it"
    )
    # 29 exposed files: a few named, the rest counted, so a reload logs a handful of lines.
    assert len(problems) == 11 and problems[-1] == (
        "mailbox_group m365: 19 more refresh_token_file files are readable by group or others"
    )
    assert not any("rt-" in p for p in problems)


def test_a_member_whose_mailbox_is_also_a_configured_mailbox_is_refused(tmp_path: Path) -> None:
    # Moving reps from one [[mailbox]] each to a group: a [[mailbox]] left in place would be
    # a second source (connection, IDLE, sync) for the same server mailbox.
    toml = (
        MASTER + '\n[[mailbox]]\nname = "old-carol"\nowner = "carol@example.com"\n'
        'host = "IMAP.example.com"\nusername = "Carol"\npassword_env = "PW"\n'
    )
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, toml, "owner,username\nalice@example.com\ncarol@example.com,carol\n")
    (problem,) = caught.value.problems
    assert problem.startswith(
        "mailbox_group[0] (sales) reps.csv line 3: username 'carol' is also the login of "
        "[[mailbox]] 'old-carol'"
    )
    # Another server, or another port: another mailbox.
    config = _load(tmp_path, toml.replace("IMAP.example.com", "imap.other.example.com"))
    assert [b.name for b in config.mailbox] == [  # type: ignore[attr-defined]
        "old-carol", "alice@example.com", "carol@example.com",
    ]  # fmt: skip


def test_a_members_file_names_only_token_files_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A members file is a directory export: a row must not have syncd send /etc/passwd, the
    # group's client secret or another rep's token to the token endpoint.
    toml = (
        OAUTH.replace(
            'members = ["Dana@Example.com", {owner = "eve@example.com", username = "eve.x@example.com"}]',
            'members_file = "reps.csv"',
        ).replace('client_secret_file = "m365-secret"', f'client_secret_file = "{tmp_path}/m365"')
        + 'grant = "refresh_token"\n'
    )
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside / "token")
    rows = [
        "dana@example.com,/etc/passwd",
        "eve@example.com,../elsewhere",
        "fay@example.com,link",
        f"gil@example.com,{tmp_path}/m365",
        "hal@example.com,tokens/hal",
        "ida@example.com,./tokens/hal",
        "jon@example.com,tokens/jon",
    ]
    try:
        with pytest.raises(ConfigError) as caught:
            _load(tmp_path, toml, "owner,refresh_token_file\n" + "\n".join(rows) + "\n")
    finally:
        outside.rmdir()
    problems = "\n".join(caught.value.problems)
    assert f"line 2: refresh_token_file /etc/passwd is outside {tmp_path}" in problems
    assert "line 3: refresh_token_file" in problems and "line 4: refresh_token_file" in problems
    assert "line 5: refresh_token_file" in problems and "is also the client_secret_file" in problems
    assert (
        "line 7: refresh_token_file" in problems and "is also the refresh_token_file of" in problems
    )
    assert "line 6: " not in problems and "line 8: " not in problems
    # Under systemd, the credentials folder is where every secret file lies.
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    config = _load(tmp_path, toml, "owner,refresh_token_file\ndana@example.com,dana.rt\n")
    (dana,) = config.mailbox  # type: ignore[attr-defined]
    assert dana.refresh_token_file == str(tmp_path / "creds" / "dana.rt")
    with pytest.raises(ConfigError, match="is outside"):
        _load(tmp_path, toml, f"owner,refresh_token_file\ndana@example.com,{tmp_path}/x.rt\n")


@pytest.mark.parametrize(
    ("toml", "csv"),
    [
        (MASTER, "owner,username\ndana@example.com,\neve@example.com,eve.x\nfay@example.com,f\n"),
        (
            OAUTH.replace(
                'members = ["Dana@Example.com", {owner = "eve@example.com", username = "eve.x@example.com"}]',
                'members_file = "reps.csv"',
            )
            + 'grant = "refresh_token"\n',
            "owner,username,refresh_token_file\ndana@example.com,,tokens/dana\n"
            "eve@example.com,eve.x@example.com,tokens/eve\nfay@example.com,,t/fay\n",
        ),
    ],
)
def test_each_member_is_the_mailbox_a_group_of_it_alone_makes(
    tmp_path: Path, toml: str, csv: str
) -> None:
    """Members after the first are made from the first, only their own values checked: each
    must still be what building it in full gives (a group of one member)."""
    header, *rows = csv.splitlines()
    members = _load(tmp_path, toml, csv).mailbox  # type: ignore[attr-defined]
    assert [m.owner for m in members] == [r.split(",")[0] for r in rows]
    for row, member in zip(rows, members, strict=True):
        (alone,) = _load(tmp_path, toml, f"{header}\n{row}\n").mailbox  # type: ignore[attr-defined]
        assert member == alone and type(member) is GroupMemberConfig


def test_a_bad_member_after_a_good_one_is_still_reported() -> None:
    group = {"name": "g", "host": "h.example.com", "login_user": "%u*m", "password_env": "P"}
    with pytest.raises(ConfigError, match=r"members\[1\]: owner 'b\*c@example.com' cannot name"):
        parse_config(
            {"mailbox_group": [{**group, "members": ["a@example.com", "b*c@example.com"]}]}
        )


def test_a_members_build_checks_only_its_own_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 members took twice main's time when each checked its group's values again."""
    real, calls = config_check.convert, [0]

    def counting(tp: object, value: object) -> object:
        calls[0] += 1
        return real(tp, value)

    monkeypatch.setattr(config_check, "convert", counting)
    group = {"name": "g", "host": "h.example.com", "login_user": "%u*m", "password_env": "P"}
    members = [f"u{i}@example.com" for i in range(1000)]
    config = parse_config({"mailbox_group": [{**group, "members": members}]})
    assert len(config.mailbox) == 1000
    # The member's list item, its entry, and its own five values: 13 a member, not 34.
    assert calls[0] < 20 * len(members)
