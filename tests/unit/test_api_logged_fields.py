"""Every problem the domain finds in a logged record's draft is answered on the field it is
about (syncd/api/logged.py maps the sentences): a wording change there must show here."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.api.logged import field_of
from syncd.domain.logged import BadDraft, RawFields, draft_from

WHEN = datetime(2024, 6, 5, 10, tzinfo=UTC)
GOOD = {"kind": "call", "owner": "alice@example.com", "subject": "Called",
        "occurred_at": WHEN, "contacts": ("wile@acme.com",)}  # fmt: skip

CASES = [
    ({"kind": "fax"}, "body.kind"),
    ({"owner": "not an address"}, "body.owner"),
    ({"subject": " "}, "body.subject"),
    ({"subject": "x" * 5000}, "body.subject"),
    ({"subject": "a\x07b"}, "body.subject"),
    ({"contacts": ("nope", "wile@acme.com")}, "body.contacts"),
    ({"contacts": tuple(f"p{i}@acme.com" for i in range(60))}, "body.contacts"),
    ({"contacts": ()}, "body.customer"),
    ({"direction": "sideways"}, "body.direction"),
    ({"kind": "note", "direction": "in"}, "body.direction"),
    ({"duration": "forever"}, "body.duration"),
    ({"duration": "30d"}, "body.duration"),
    ({"kind": "note", "duration": "5m"}, "body.duration"),
    ({"outcome": "maybe"}, "body.outcome"),
    ({"kind": "visit", "outcome": "connected"}, "body.outcome"),
    ({"location": "HQ"}, "body.location"),
    ({"kind": "visit", "location": "x" * 600}, "body.location"),
    ({"body": "x" * 70000}, "body.body"),
    ({"body": "a\x07b"}, "body.body"),
    ({"external_id": "x" * 400}, "body.external_id"),
]


def _problems(**changes: object) -> list[str]:
    raw = RawFields(**{**GOOD, **changes})  # type: ignore[arg-type]
    with pytest.raises(BadDraft) as err:
        draft_from(raw)
    return err.value.problems


@pytest.mark.parametrize(("changes", "field"), CASES)
def test_each_draft_problem_lands_on_its_field(changes: dict[str, object], field: str) -> None:
    problems = _problems(**changes)
    assert [field_of(p) for p in problems] == [field] * len(problems), problems


def test_store_problems_land_on_their_fields() -> None:
    # The sentences of logged_records._Lookups.people.
    assert field_of("no customer 7") == "body.customer"
    assert field_of("customer 7 is archived (the directory file no longer lists it)") == (
        "body.customer"
    )
    assert field_of("contact x@acme.com was forgotten (syncd forget): never stored again") == (
        "body.contacts"
    )
    assert field_of("contact a@example.com is one of our own addresses: give it as the owner") == (
        "body.contacts"
    )
    assert field_of("'2 weeks' is not a duration", duration_field="duration_seconds") == (
        "body.duration_seconds"
    )


@given(st.text(max_size=200))
def test_any_sentence_maps_to_a_body_field(text: str) -> None:
    assert field_of(text).startswith("body.")
