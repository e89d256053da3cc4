"""Redaction of a secret in the spellings it travels in: pure, checked on open-ended input."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st

from syncd.redaction import REDACTED, redact

secrets_ = st.text(min_size=8, max_size=60).filter(lambda s: s.strip() == s and s.isprintable())
around = st.text(max_size=40)


@given(secrets_, around, around)
def test_a_secret_is_cut_from_its_literal_form_and_url_encodings(
    secret: str, before: str, after: str
) -> None:
    for spelled in (secret, quote_plus(secret), quote(secret, safe=""), json.dumps(secret)[1:-1]):
        redacted = redact(before + spelled + after, [secret])
        assert spelled not in redacted.replace(REDACTED, "\0")


@given(secrets_, st.binary(max_size=20), st.binary(max_size=20))
def test_a_secret_inside_base64_at_any_offset_decodes_no_more(
    secret: str, before: bytes, after: bytes
) -> None:
    # user:secret in a Basic header, or a whole request body encoded: whatever precedes it.
    raw = secret.encode()
    for alphabet in (base64.b64encode, base64.urlsafe_b64encode):
        text = alphabet(before + raw + after).decode()
        redacted = redact(text, [secret])
        assert REDACTED in redacted
        for part in redacted.split(REDACTED):
            # Only the alphabet's letters, whole quanta: what a decoder can make of the rest
            # (a "]" or "=" left beside the marker would only fail the padding check).
            letters = re.sub(r"[^A-Za-z0-9+/_-]", "", part)
            decoded = base64.b64decode(letters[: len(letters) // 4 * 4], altchars=b"-_")
            assert raw not in decoded


def test_a_form_echoed_whole_shows_neither_secret() -> None:
    form = urlencode({"client_secret": "cs/Sec+ret=42 x", "refresh_token": "rt-A&B=C"})
    redacted = redact(f"cannot parse {form}", ["cs/Sec+ret=42 x", "rt-A&B=C"])
    assert redacted == "cannot parse client_secret=[redacted]&refresh_token=[redacted]"


def test_short_or_missing_secrets_are_not_looked_for() -> None:
    assert redact("a cab", ["ab", None, ""]) == "a cab"
