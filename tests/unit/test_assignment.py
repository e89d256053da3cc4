"""Rendezvous assignment: every daemon computes the same owner, shares are even, and a
daemon joining or leaving moves only its own share."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.domain.assignment import assign, owner, share, source_key

daemon_ids = st.lists(st.uuids().map(lambda u: u.hex), min_size=1, max_size=6, unique=True)
# Names as a fleet has them (rep addresses); the bound on shares needs thousands of keys.
KEYS = [source_key("mailbox", f"rep{n}@example.com") for n in range(2000)]


@given(daemon_ids)
@settings(max_examples=40, deadline=None)
def test_every_source_has_exactly_one_owner_whatever_the_order(daemons: list[str]) -> None:
    shares = assign(KEYS[:300], daemons)
    assert sorted(k for keys in shares.values() for k in keys) == sorted(KEYS[:300])
    for key in KEYS[:50]:
        assert owner(key, daemons) == owner(key, list(reversed(daemons)))
        # What a daemon computes for itself agrees with the global answer.
        assert {d for d in daemons if key in share([key], daemons, d)} == {owner(key, daemons)}


@given(st.lists(st.uuids().map(lambda u: u.hex), min_size=2, max_size=4, unique=True))
@settings(max_examples=25, deadline=None)
def test_shares_are_even(daemons: list[str]) -> None:
    k = len(daemons)
    counts = [len(keys) for keys in assign(KEYS, daemons).values()]
    assert sum(counts) == len(KEYS)
    # Each count is binomial(2000, 1/k): 10 % of N off the mean is > 6 standard deviations.
    for count in counts:
        assert abs(count / len(KEYS) - 1 / k) < 0.10, counts
    if k == 4:
        assert max(counts) / len(KEYS) <= 0.35


@given(daemon_ids, st.uuids().map(lambda u: u.hex))
@settings(max_examples=30, deadline=None)
def test_a_daemon_that_joins_takes_only_from_the_others_and_leaving_gives_back(
    daemons: list[str], newcomer: str
) -> None:
    keys = KEYS[:500]
    before = {key: owner(key, daemons) for key in keys}
    after = {key: owner(key, [*daemons, newcomer]) for key in keys}
    moved = {key for key in keys if before[key] != after[key]}
    # Only the newcomer's share moves, and nothing moves between the others.
    assert all(after[key] == newcomer for key in moved)
    assert moved == {key for key in keys if after[key] == newcomer}
    # When it leaves again, exactly those keys go back to where they were.
    assert {key: owner(key, daemons) for key in keys} == before


def test_forty_mailboxes_over_two_daemons_split_about_evenly() -> None:
    keys = KEYS[:40]
    for seed in range(20):
        daemons = [uuid.UUID(int=seed * 7919 + n).hex for n in range(2)]
        counts = sorted(len(v) for v in assign(keys, daemons).values())
        assert counts[0] >= 8 and sum(counts) == 40, counts


def test_nobody_live_owns_nothing_and_a_lone_daemon_owns_everything() -> None:
    assert owner(KEYS[0], []) is None
    assert share(KEYS[:100], [], "solo") == set(KEYS[:100])
