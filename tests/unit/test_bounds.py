"""Bounded values: whatever comes in, what goes out fits the schema and encodes as UTF-8."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.bounds import (
    ADDRESS_MAX,
    HASHED_ID_PREFIX,
    ID_MAX_BYTES,
    NAME_MAX,
    REFERENCES_MAX,
    bound_id,
    bound_name,
    bound_references,
    clean_text,
    storable_address,
)

# Any code point, lone surrogates and NUL included: what a hostile charset can decode to.
hostile = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=1500)


def _storable(value: str) -> bool:
    value.encode("utf-8")  # raises on a lone surrogate
    return "\x00" not in value


@given(hostile)
def test_any_id_fits_is_stable_and_idempotent(value: str) -> None:
    stored = bound_id(value)
    assert _storable(stored)
    assert len(stored.encode("utf-8")) <= ID_MAX_BYTES
    assert len(f"email:{stored}") <= 1100
    assert bound_id(value) == stored
    assert bound_id(stored) == stored


def test_a_fitting_id_is_kept_and_a_long_one_hashed() -> None:
    assert bound_id("CAF=abc+12@mail.example") == "CAF=abc+12@mail.example"
    assert bound_id("é" * 400) == "é" * 400  # 800 bytes: fits
    long_id = "x" * 1189 + "@acme.com"
    hashed = bound_id(long_id)
    assert hashed.startswith(HASHED_ID_PREFIX) and len(hashed) == len(HASHED_ID_PREFIX) + 64
    assert bound_id("x" * 1189 + "@acme.org") != hashed
    assert bound_id("é" * 500).startswith(HASHED_ID_PREFIX)  # 1,000 bytes: an index risk
    assert bound_id("a\x00b").startswith(HASHED_ID_PREFIX)
    assert bound_id("a\ud800b").startswith(HASHED_ID_PREFIX)


@given(hostile)
def test_clean_text_is_storable_and_keeps_clean_text(value: str) -> None:
    cleaned = clean_text(value)
    assert _storable(cleaned)
    assert clean_text(cleaned) == cleaned
    if _safe(value):
        assert cleaned is value


def _safe(value: str) -> bool:
    try:
        return _storable(value)
    except UnicodeEncodeError:
        return False


def test_clean_text_drops_nul_and_replaces_lone_surrogates() -> None:
    assert clean_text("a\x00b") == "ab"
    assert clean_text("Café\x00 \ud800!") == "Café \ufffd!"
    assert clean_text("\U0001f600") == "\U0001f600"  # a real astral character is kept


@given(hostile)
def test_names_fit_their_columns(value: str) -> None:
    name = bound_name(value)
    assert _storable(name) and len(name) <= NAME_MAX


@given(hostile)
def test_an_address_is_stored_whole_or_not_at_all(value: str) -> None:
    stored = storable_address(value)
    assert stored is None or (stored == value and _storable(stored))
    if len(value) > ADDRESS_MAX:
        assert stored is None


def test_references_keep_the_root_and_the_nearest_ancestors() -> None:
    ids = [f"r{n}@x.example" for n in range(500)]
    kept = bound_references(ids)
    assert len(kept) == REFERENCES_MAX
    assert kept[0] == "r0@x.example" and kept[-1] == "r499@x.example"
    assert kept[1] == f"r{500 - REFERENCES_MAX + 1}@x.example"
    assert bound_references(["y" * 2000]) == [bound_id("y" * 2000)]


def test_calendar_uids_keep_the_form_their_stored_keys_have() -> None:
    """Meeting record keys hold the bounded UID: the mapping must not change under stored
    data (a prefix of 221 characters, "~", and 32 hex digits of the whole UID's SHA-256)."""
    import hashlib

    from syncd.domain.bounds import UID_MAX, bound_uid

    long = "x" * 1200
    digest = hashlib.sha256(long.encode()).hexdigest()[:32]
    assert bound_uid(long) == "x" * 221 + "~" + digest and len(bound_uid(long)) <= UID_MAX
    tabbed = "a\tb\x00c" + "y" * 300
    kept = bound_uid(tabbed)
    assert kept.startswith("a\tbc") and "\x00" not in kept  # tabs stay, as they always did
    assert bound_uid("  plain-uid@example.com ") == "plain-uid@example.com"
