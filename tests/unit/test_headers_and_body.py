from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from syncd.domain.body import body_text
from syncd.domain.headers import decode_words, parse_addresses, parse_date, split_header_section
from syncd.domain.message import UnparseableMessage, parse_message
from tests.mail import make_message


def test_encoded_words_and_broken_charsets() -> None:
    assert decode_words("=?utf-8?q?Caf=C3=A9?= au lait") == "Café au lait"
    assert decode_words("=?iso-8859-1?B?Q2Fm6Q==?=") == "Café"
    assert decode_words("=?x-unknown?Q?Caf=E9?=") == "Café"  # falls back to Latin-1
    assert decode_words("=?utf-8?B?not base64!!?=") != ""  # degraded, never raises


def test_addresses_are_split_before_names_are_decoded() -> None:
    pairs = parse_addresses(['"=?utf-8?q?Coyote=2C_Wile?=" <wile@acme.com>, road@acme.com'])
    assert pairs == [("Coyote, Wile", "wile@acme.com"), ("", "road@acme.com")]


def test_raw_utf8_and_latin1_headers() -> None:
    raw = "Subject: Grüße\r\nFrom: Jörg <j@acme.de>\r\n\r\n".encode()
    fields = split_header_section(raw)
    assert fields["subject"] == ["Grüße"]
    assert split_header_section(b"Subject: Gr\xfc\xdfe\r\n\r\n")["subject"] == ["Grüße"]


def test_folded_and_repeated_headers() -> None:
    fields = split_header_section(
        b"To: a@x.com,\r\n b@x.com\r\nReferences: <1@x>\r\nReferences: <2@x>\r\n\r\nbody"
    )
    assert fields["to"] == ["a@x.com, b@x.com"]
    assert fields["references"] == ["<1@x>", "<2@x>"]


def test_dates() -> None:
    assert parse_date("Mon, 03 Jun 2024 11:00:00 +0200") == datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    assert parse_date("Mon, 03 Jun 2024 09:00:00 -0000") == datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    assert parse_date("yesterday-ish") is None
    assert parse_date(None) is None


def test_message_without_id_or_date() -> None:
    internal = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    raw = make_message(message_id=None, date=None)
    first = parse_message(raw, internal_date=internal)
    assert first.occurred_at == internal
    assert first.message_id_generated and first.message_id.endswith("@generated.invalid")
    # The same headers seen in another mailbox give the same id.
    assert parse_message(raw, internal_date=internal).message_id == first.message_id


def test_unparseable_message() -> None:
    try:
        parse_message(b"\x00\x01garbage\r\n\r\n", internal_date=None)
    except UnparseableMessage as err:
        assert "no From" in str(err)
    else:
        raise AssertionError("garbage was accepted")


def test_multipart_prefers_plain_and_skips_attachments() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
        b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>HTML</b></p>\r\n"
        b"--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=FC=DFe\r\n--b2--\r\n"
        b"--b1\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=x.txt\r\n\r\nnot this\r\n--b1--\r\n"
    )
    assert body_text(raw, 'multipart/mixed; boundary="b1"', "").strip() == "Grüße"


def test_html_only_drops_quoted_history() -> None:
    html = (
        "<html><style>p{}</style><p>New text &amp; more</p><blockquote>old text</blockquote></html>"
    )
    raw = b"Content-Type: text/html\r\n\r\n" + html.encode()
    text = body_text(raw, "text/html; charset=utf-8", "")
    assert "New text & more" in text and "old text" not in text and "p{}" not in text


def test_truncated_base64_still_gives_text() -> None:
    import base64

    encoded = base64.encodebytes(("Hello there " * 50).encode()).decode()
    cut = encoded[:101]  # mid-line, mid-quantum: what a partial fetch returns
    raw = b"Content-Type: text/plain\r\n\r\n" + cut.encode()
    assert body_text(raw, "text/plain", "base64").startswith("Hello there Hello there")


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_quarantine(data: bytes) -> None:
    try:
        msg = parse_message(b"From: a@acme.com\r\n" + data, internal_date=None)
    except UnparseableMessage:
        return
    assert msg.snippet is not None and len(msg.snippet) <= 500


_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC .'-", max_size=20)
_addr = st.from_regex(
    r"[a-z0-9][a-z0-9._+-]{0,10}@[a-z0-9-]{1,10}\.(com|co\.uk|de)", fullmatch=True
)


@given(st.lists(st.tuples(_name, _addr), min_size=1, max_size=4), st.booleans())
@example([("A  A", "0@0.com")], True)  # white space inside an unquoted name collapses
def test_fast_address_path_agrees_with_the_stdlib(
    people: list[tuple[str, str]], angle: bool
) -> None:
    import email.utils

    value = ", ".join(f"{n} <{a}>" if angle or n.strip() else a for n, a in people)
    expected = [(n.strip(), a) for n, a in email.utils.getaddresses([value]) if a]
    assert parse_addresses([value]) == expected


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)),
    st.integers(-720, 840),
)
def test_fast_date_path_agrees_with_the_stdlib(when: datetime, offset_minutes: int) -> None:
    import email.utils
    from datetime import timedelta, timezone

    zone = timezone(timedelta(minutes=offset_minutes))
    text = email.utils.format_datetime(when.replace(microsecond=0, tzinfo=zone))
    assert parse_date(text) == email.utils.parsedate_to_datetime(text).astimezone(UTC)
