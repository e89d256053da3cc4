"""The configuration's own validator (syncd/config_check.py): each kind of problem with its
key path, sections built directly, and the inputs it accepts against pydantic's lax mode,
which read the file before it (pydantic is still installed: the HTTP API uses it)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.config import Config, MailboxConfig, SyncConfig
from syncd.config_check import Invalid, Length, Range, SecretStr, convert
from syncd.config_file import parse_config
from syncd.errors import ConfigError

BOX = {"name": "a", "owner": "a@example.com", "host": "imap.example.com", "username": "a"}


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"sync": {"concurrency": "eight"}},
         "sync.concurrency: Input should be a valid integer, unable to parse string as an integer"),
        ({"sync": {"concurrency": 2.5}},
         "sync.concurrency: Input should be a valid integer, got a number with a fractional part"),
        ({"sync": {"idle": "maybe"}},
         "sync.idle: Input should be a valid boolean, unable to interpret input"),
        ({"database": {"url": 5}}, "database.url: Input should be a valid string"),
        ({"mailbox": [{**BOX, "password": "x", "folders": "INBOX"}]},
         "mailbox[0].folders: Input should be a valid list"),
        ({"sync": 5}, "sync: Input should be a valid dictionary or instance of SyncConfig"),
        ({"mailbox": [{**BOX, "password": "x", "security": "ssl"}]},
         "mailbox[0].security: Input should be 'tls', 'starttls' or 'plain'"),
        ({"mailbox": [{**BOX, "password": "x", "port": 70000}]},
         "mailbox[0].port: Input should be less than 65536"),
        ({"sync": {"jitter": -0.5}}, "sync.jitter: Input should be greater than or equal to 0"),
        ({"mailbox": [{**BOX, "password": "x", "name": ""}]},
         "mailbox[0].name: String should have at least 1 character"),
        ({"mailbox": [{**BOX, "password": "x", "name": "a b"}]},
         "mailbox[0].name: String should match pattern '^[A-Za-z0-9._@-]+$'"),
        ({"directory": {"command": []}},
         "directory.command: List should have at least 1 item after validation, not 0"),
        ({"organization": {"holidays": ["2026-12-24", "Christmas"]}},
         "organization.holidays[1]: Input should be a valid date or datetime"),
        ({"mailbox": [BOX, {**BOX, "name": "b", "password": "x", "port": "x"}]},
         "mailbox[1].port: Input should be a valid integer, unable to parse string as an integer"),
        ({"mailbox": [{**BOX, "password": "x", "pasword": "y"}]},
         "mailbox[0].pasword: unknown key (misspelt?)"),
        ({"colour": "blue"}, "colour: unknown key (misspelt?)"),
        ({"mailbox_group": [{"name": "g", "host": "h", "login_user": "%u", "password_env": "P",
                             "members": ["a@example.com", {"owner": "b@example.com", "x": 1}]}]},
         "mailbox_group[0].members[1].x: unknown key (misspelt?)"),
        ({"mailbox_group": [{"name": "g", "host": "h", "login_user": "%u", "password_env": "P",
                             "members": [5]}]},
         "mailbox_group[0].members[0]: Input should be a valid string"),
        ({"mailbox": [{"name": "a", "host": "x", "username": "a", "password": "x"}]},
         "mailbox[0].owner: Field required"),
        ({"mailbox": [{**BOX, "password": "x"}, {**BOX, "password": "x"}]},
         "(top level): mailbox name 'a' is used twice; names must be unique"),
    ],
)  # fmt: skip
def test_each_kind_of_problem_is_reported_by_its_key_path(
    data: dict[str, Any], problem: str
) -> None:
    assert problem in _problems(data)


def test_a_section_with_bad_keys_reports_them_all_and_skips_its_rules() -> None:
    problems = _problems(
        {"mailbox": [{**BOX, "port": 0, "owner": "nobody", "extra": 1}], "sync": {"idle": 3}}
    )
    assert sorted(problems) == [
        "mailbox[0].extra: unknown key (misspelt?)",
        "mailbox[0].owner: 'nobody' is not an email address",
        "mailbox[0].port: Input should be greater than 0",
        "sync.idle: Input should be a valid boolean, unable to interpret input",
    ]  # no "set exactly one of password...": the rules between keys wait for valid keys


@pytest.mark.parametrize("value", [[], [1], {}, {"seconds": 5}, date(2026, 1, 1)])
def test_a_length_of_time_of_the_wrong_kind_is_a_problem_not_a_crash(value: object) -> None:
    """seconds() reads text or a number; a list or a table once raised TypeError out of the
    validation, a traceback instead of the file's problems."""
    problems = _problems({"sync": {"interval": value}, "mailbox": [{**BOX, "timeout": value}]})
    assert "sync.interval: Input should be a valid number" in problems
    assert "mailbox[0].timeout: Input should be a valid number" in problems


def test_lax_inputs_read_as_pydantic_read_them() -> None:
    config = parse_config(
        {
            "sync": {"concurrency": "4", "idle": "off", "jitter": 1, "interval": "90"},
            "capture": {"batch_size": 100.0, "only_matched": 1},
            "organization": {"holidays": ["2026-12-24", date(2026, 12, 25)]},
        }
    )
    assert (config.sync.concurrency, config.sync.idle, config.sync.jitter) == (4, False, 1.0)
    assert config.sync.interval == 90.0 and isinstance(config.sync.jitter, float)
    assert (config.capture.batch_size, config.capture.only_matched) == (100, True)
    assert config.organization.holidays == [date(2026, 12, 24), date(2026, 12, 25)]


def test_a_section_built_directly_is_checked_and_converted_like_the_file() -> None:
    box = MailboxConfig(**BOX, password="s3cr3t", timeout="5s", port="994")  # type: ignore[arg-type]
    assert isinstance(box.password, SecretStr) and box.password.get_secret_value() == "s3cr3t"
    assert (box.timeout, box.port) == (5.0, 994)
    assert "s3cr3t" not in repr(box) and "s3cr3t" not in str(box.password)
    with pytest.raises(Invalid) as caught:
        MailboxConfig(**{**BOX, "owner": "nobody"}, password="x", port=0)
    assert caught.value.lines() == [
        "owner: 'nobody' is not an email address",
        "port: Input should be greater than 0",
    ]
    with pytest.raises(Invalid, match="set exactly one of password_file"):
        replace(box, password_env="P")  # a copy is checked like the original
    assert replace(SyncConfig(), interval="2m").interval == 120.0  # type: ignore[arg-type]
    nested = Config(sync={"interval": "1m"}, mailbox=[{**BOX, "password": "x"}])  # type: ignore[arg-type]
    assert nested.sync.interval == 60.0 and nested.mailbox[0].owner == "a@example.com"


# pydantic's lax mode, the reference: every type a field of the configuration has.
TYPES: list[Any] = [
    int,
    float,
    bool,
    str,
    date,
    Literal["tls", "starttls", "plain"],
    list[str],
    Annotated[int, Range(gt=0, lt=65536)],
    Annotated[float, Range(ge=0, le=1)],
    Annotated[str, Length(min=1, max=5, pattern=r"^[a-z.]+$")],
    Annotated[list[str], Length(min=1)],
]


def _reference(tp: Any) -> Any:
    from pydantic import Field, TypeAdapter

    origin = getattr(tp, "__metadata__", None)
    if origin is None:
        return TypeAdapter(tp)
    base, mark = tp.__origin__, tp.__metadata__[0]
    if isinstance(mark, Range):
        field = Field(gt=mark.gt, ge=mark.ge, lt=mark.lt, le=mark.le)
    else:
        field = Field(min_length=mark.min, max_length=mark.max, pattern=mark.pattern)
    return TypeAdapter(Annotated[base, field])


NUMBER_TEXT = st.from_regex(r"\A *[+-]?[0-9_]{0,4}\.?[0-9]{0,3}([eE][+-]?[0-9])? *\Z")
WORDS = st.sampled_from(
    ["true", "False", "YES", "no", "on", "off", "t", "f", "y", "n", "1", "0", "tls", "plain",
     "inf", "-inf", "nan", "NaN", "infinity", "2026-12-24", "2026-02-30", "2026-12-24T00:00",
     "2026-12-24T10:00", "2026-12-24 00:00:00Z", "86400", "0x10", "", " ", "abc", "a.b"]
)  # fmt: skip
SCALARS = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 5.0, 0.5, 86400.0, 65535.0, 1e300]),
    st.booleans(),
    NUMBER_TEXT,
    WORDS,
    st.text(alphabet="abcz.-_ 09", max_size=8),
    st.dates(),
    st.datetimes(),
)
VALUES = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(WORDS, SCALARS, max_size=2)
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None)
@given(index=st.integers(0, len(TYPES) - 1), value=VALUES)
def test_the_validator_accepts_what_pydantic_accepted(index: int, value: Any) -> None:
    from pydantic import ValidationError

    tp = TYPES[index]
    try:
        expected: tuple[str, Any] = ("ok", _reference(tp).validate_python(value))
    except ValidationError as err:
        expected = ("error", err.errors()[0]["msg"])
    try:
        got: tuple[str, Any] = ("ok", convert(tp, value))
    except Invalid as err:
        got = ("error", err.problems[0][1])
    assert got[0] == expected[0], (tp, value, got, expected)
    if got[0] == "ok":
        assert _same(got[1], expected[1]) or (isinstance(got[1], list) and got[1] == expected[1]), (
            got,
            expected,
        )
    elif tp is not date:  # a date's text problems are worded more briefly
        assert got[1] == expected[1], (tp, value)


def test_a_datetime_for_a_date_is_read_only_at_midnight() -> None:
    assert convert(date, datetime(2026, 12, 24)) == date(2026, 12, 24)
    with pytest.raises(Invalid, match="should have zero time"):
        convert(date, datetime(2026, 12, 24, 9))


_CAL = {
    "name": "c",
    "owner": "a@example.com",
    "url": "https://dav.example.com/",
    "username": "a",
    "password": "pw",
}


@pytest.mark.parametrize(
    "data",
    [
        {"mailbox": [{**BOX, "password": "pw", "name": "a\n"}]},
        {"calendar": [{**_CAL, "name": "c\n"}]},
        {"webhook": [{"name": "w\n", "url": "https://x.example/", "secret_env": "X"}]},
        {
            "crm": [
                {"name": "c\n", "kind": "bottlecrm", "url": "https://x.example/", "token_env": "X"}
            ]
        },
        {
            "mailbox_group": [
                {
                    "name": "g\n",
                    "host": "h.example.com",
                    "login_user": "%u*m",
                    "password_env": "P",
                    "members": ["b@example.com"],
                }
            ]
        },
    ],
)
def test_a_name_ending_in_a_newline_is_refused_as_pydantic_refused_it(
    data: dict[str, Any],
) -> None:
    """Python's `$` matches before a final newline too; pydantic's regex did not."""
    with pytest.raises(ConfigError, match="should match pattern"):
        parse_config(data)


def test_a_pattern_must_be_anchored_both_ends() -> None:
    with pytest.raises(ValueError, match="anchored"):
        Length(pattern="[a-z]+")


DATE_TEXTS = [
    "2024-01-01t00:00", "2024-01-01T00:00:00z", "2024-01-01T00:00:00+0000",
    "2024-01-01T00:00:00-0000", "2024-01-01T00:00:00.0000000", "2024-01-01T00:00:00,000",
    "2024-01-01T00:00:00." + "0" * 300, "2024-01-01T00:00:00.0000009",
    "2024-01-01T00:00:00.9999999", "2024-01-01T00:00:00.1", "2024-01-01_00:00",
    "2024-01-01 00:00", "2024-01-01T00:00:00,0z", "2024-01-01T00:00:00+2359",
    "2024-01-01T00:00:00+2400", "2024-01-01T00:00:00+0060", "2024-01-01T00:00:00+00",
    "2024-01-01T00:00:00+000", "2024-01-01T00:00:00+00000", "2024-01-01T00:00:00+00:0",
    "2024-01-01T00:00:00.", "2024-01-01T00:00:00,", "2024-01-01T00:00.5",
    "2024-01-01T00:00:00.0,0", "2024-01-01T00:00:00 Z", "2024-01-01T00:00:00+00:00Z",
    "2024-01-01x00:00", "2024-01-01T24:00", "2024-01-01T00:00:60", "2024-01-01T0:00",
    "2024-01-01T00:00:00.\u0660", "2024-01-01T00:00:0\u0660", "2024-01-01T00:00:00.0\n",
    # Seconds since 1970 as text: an exponent only after a ".".
    "0", "0E0", "0e0", "86400", "86400.", "8.64e4", "8.64E+04", ".864e5", "1.e5", "864e2",
    "86400e0", "+.0", "-0.0", ".", "+", "inf", "nan", "1_0", " 0", "8.64e", "1..0",
]  # fmt: skip


@pytest.mark.parametrize("text", DATE_TEXTS)
def test_a_datetime_written_as_text_is_a_date_as_pydantic_read_it(text: str) -> None:
    """speedate's forms: t/z in lower case, +HHMM, a comma or a fraction of any length."""
    from pydantic import TypeAdapter, ValidationError

    try:
        expected: object = TypeAdapter(date).validate_python(text)
    except ValidationError:
        expected = "error"
    try:
        got: object = convert(date, text)
    except Invalid:
        got = "error"
    assert got == expected


@pytest.mark.parametrize(
    "text",
    ["2024-01-01t00:00", "2024-01-01T00:00:00z", "2024-01-01T00:00:00+0000",
     "2024-01-01T00:00:00.0000000", "2024-01-01T00:00:00,000"],
)  # fmt: skip
def test_a_midnight_written_as_text_is_read_as_its_date_in_the_file(text: str) -> None:
    config = parse_config(
        {
            "organization": {"holidays": [text]},
            "webhook": [
                {"name": "w", "url": "https://x.example/", "secret_env": "X", "since": text}
            ],
        }
    )
    assert config.organization.holidays == [date(2024, 1, 1)]
    assert config.webhook[0].since == date(2024, 1, 1)


@pytest.mark.parametrize("text", ["\x1c4", "4\x1f", "\x1d4", "\x1e4.5"])
def test_separator_characters_around_a_number_are_refused_as_pydantic_refused_them(
    text: str,
) -> None:
    """str.strip() strips \\x1c-\\x1f as well; pydantic's trim did not."""
    with pytest.raises(Invalid, match="unable to parse string"):
        convert(int, text)
    with pytest.raises(Invalid, match="unable to parse string"):
        convert(float, text)
    with pytest.raises(ConfigError, match="unable to parse string"):
        parse_config({"sync": {"concurrency": text}, "capture": {"batch_size": text}})


def test_the_blanks_pydantic_stripped_around_a_number_are_still_stripped() -> None:
    for blank in "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000":
        assert convert(int, f"{blank}4{blank}") == 4
        assert convert(float, f"{blank}4.5{blank}") == 4.5
