"""Runs tests/scenarios/matching.toml: every matching rule, one case at a time."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.addresses import match_key, normalize_address, normalize_name
from syncd.domain.matching import Directory, match_address
from syncd.domain.suggestions import CustomerFacts, suggest

CORPUS = tomllib.loads((Path(__file__).parents[1] / "scenarios" / "matching.toml").read_text())


def _directory() -> tuple[Directory, dict[int, str]]:
    directory = Directory()
    names: dict[str, int] = {}
    for n, customer in enumerate(CORPUS["directory"]["customers"], 1):
        names[customer["name"]] = n
        for domain in customer["domains"]:
            directory.add_domain(domain, n)
    for n, contact in enumerate(CORPUS["directory"]["contacts"], 100):
        directory.add_contact(contact["address"], n, names[contact["customer"]])
    for entry in CORPUS["directory"]["exclude"]:
        directory.exclusions.add(entry)
    return directory, {v: k for k, v in names.items()}


@pytest.mark.parametrize("case", CORPUS["case"], ids=[c["address"] for c in CORPUS["case"]])
def test_scenario(case: dict[str, Any]) -> None:
    directory, names = _directory()
    address = normalize_address(case["address"])
    assert address is not None
    found = match_address(address, directory)
    assert found.reason == case["reason"]
    assert (names.get(found.customer_id) if found.customer_id else None) == case.get("customer")
    assert found.link == case.get("link")
    if "rule" in case:
        assert found.detail == case["rule"]
    if "suggestions" in case:
        assert sorted(names[c] for c in found.suggestions) == case["suggestions"]


def test_suggestions_explain_themselves() -> None:
    facts = [
        CustomerFacts(1, "Acme Corp", ("acme.com",)),
        CustomerFacts(2, "Initech", ("initech.io",)),
        CustomerFacts(3, "Globex", ("eu.globex.com",)),
    ]
    by_thread = suggest("x@nowhere.net", "", facts, thread_customers={1: 3})
    assert (
        by_thread[0].customer == "Acme Corp"
        and by_thread[0].confidence >= 0.9
        and "thread" in by_thread[0].reason
    )
    by_name = suggest("p@gmail.com", "Peter | Initech", facts)
    assert [(s.customer, s.confidence) for s in by_name] == [("Initech", 0.7)]
    by_suffix = suggest("x@acme.de", "", facts)
    assert (
        by_suffix[0].customer == "Acme Corp"
        and "acme.de looks like acme.com" in by_suffix[0].reason
    )
    by_family = suggest("x@globex.com", "", facts)
    assert by_family[0].customer == "Globex" and "domain family" in by_family[0].reason
    assert suggest("x@unrelated.org", "Someone", facts) == []
    split = suggest("x@y.com", "", facts, thread_customers={1: 1, 2: 1})
    assert {s.customer for s in split} == {"Acme Corp", "Initech"} and split[0].confidence < 0.8


_local = st.from_regex(r"[a-z][a-z0-9.]{0,12}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)


@given(
    _local,
    st.sampled_from(["acme.com", "gmail.com", "googlemail.com", "mail.acme.co.uk"]),
    st.text("abcxyz", max_size=5),
)
def test_match_key_is_stable_under_case_tags_and_gmail_dots(
    local: str, domain: str, tag: str
) -> None:
    base = normalize_address(f"{local}@{domain}")
    assert base is not None
    key = match_key(base)
    assert match_key(key) == key  # idempotent
    tagged = normalize_address(
        f"{local.upper()}+{tag}@{domain.upper()}" if tag else f"{local.upper()}@{domain}"
    )
    assert tagged is not None and match_key(tagged) == key
    if domain in ("gmail.com", "googlemail.com"):
        assert "." not in key.split("@")[0] and key.endswith("@gmail.com")
    else:
        assert key.split("@")[0] == local


@given(st.text(max_size=40))
def test_names_are_tidy(name: str) -> None:
    tidy = normalize_name(name)
    assert tidy == tidy.strip() and "  " not in tidy and normalize_name(tidy) == tidy
