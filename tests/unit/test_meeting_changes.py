"""The change one calendar batch makes, computed without a database (domain/meeting_changes).

Examples pin each rule; Hypothesis checks the invariants over random batches: a replayed
batch changes nothing, nothing is both created and updated, only records that lost their
last resource are cancelled, and the first organizer of a UID keeps its record.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.items import MeetingItem
from syncd.domain.meeting_changes import (
    BatchChange,
    Known,
    StoredMeeting,
    organizer_key,
    plan_batch,
)

WINDOW_START = datetime(2024, 6, 1, tzinfo=UTC)
WINDOW_END = datetime(2024, 7, 1, tzinfo=UTC)
INSIDE = datetime(2024, 6, 10, 9, tzinfo=UTC)
OUTSIDE = datetime(2024, 5, 1, 9, tzinfo=UTC)


def item(
    key: str,
    *,
    fingerprint: str = "f1",
    sequence: int = 0,
    organizer: str | None = "rep@example.com",
    starts_at: datetime = INSIDE,
    status: str = "scheduled",
) -> MeetingItem:
    return MeetingItem(
        key=key,
        uid=key.split(":", 1)[-1].split("|")[0],
        recurrence_id="",
        summary="Call",
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=1),
        status=status,
        sequence=sequence,
        organizer=organizer,
        direction="outbound",
        fingerprint=fingerprint,
        participants=[],
    )


def stored(i: MeetingItem, record_id: int = 1, **changes: object) -> StoredMeeting:
    values: dict[str, object] = {
        "record_id": record_id,
        "key": i.key,
        "organizer": i.organizer,
        "fingerprint": i.fingerprint,
        "sequence": i.sequence,
        "starts_at": i.starts_at,
        "status": i.status,
    }
    values.update(changes)
    return StoredMeeting(**values)  # type: ignore[arg-type]


def plan(
    objects: dict[str, list[MeetingItem]],
    known: Known | None = None,
    deleted: tuple[str, ...] = (),
) -> BatchChange:
    return plan_batch(
        objects,
        deleted,
        known or Known({}, {}, {}),
        window_start=WINDOW_START,
        window_end=WINDOW_END,
    )


def test_a_new_occurrence_is_created_and_linked() -> None:
    change = plan({"a.ics": [item("meeting:a|")]})
    assert list(change.create) == ["meeting:a|"] and not change.update and not change.cancel
    assert change.link == [("a.ics", "meeting:a|")]


def test_a_new_stamp_alone_is_no_change_but_content_or_a_raised_sequence_is() -> None:
    old = item("meeting:a|")
    known = Known({old.key: stored(old)}, {"a.ics": frozenset({old.key})}, {})
    assert list(plan({"a.ics": [item("meeting:a|")]}, known).unchanged) == [old.key]
    renamed = plan({"a.ics": [item("meeting:a|", fingerprint="f2")]}, known)
    assert list(renamed.update) == [old.key]
    bumped = plan({"a.ics": [item("meeting:a|", sequence=2)]}, known)
    assert list(bumped.update) == [old.key]
    stale = Known({old.key: stored(old, sequence=5)}, {"a.ics": frozenset({old.key})}, {})
    assert not plan({"a.ics": [item("meeting:a|", sequence=3)]}, stale).update


def test_status_cancelled_is_an_update_of_the_record() -> None:
    old = item("meeting:a|")
    known = Known({old.key: stored(old)}, {"a.ics": frozenset({old.key})}, {})
    change = plan(
        {"a.ics": [item("meeting:a|", fingerprint="f-cancelled", status="cancelled")]}, known
    )
    assert change.update[old.key].status == "cancelled" and not change.cancel


def test_an_occurrence_that_vanished_inside_the_window_is_cancelled() -> None:
    """An added EXDATE: the series' resource no longer yields that occurrence."""
    keep, gone = item("meeting:s|1"), item("meeting:s|2")
    known = Known(
        {keep.key: stored(keep, 1), gone.key: stored(gone, 2)},
        {"s.ics": frozenset({keep.key, gone.key})},
        {},
    )
    change = plan({"s.ics": [keep]}, known)
    assert change.unlink == [("s.ics", gone.key)] and change.cancel == [gone.key]


def test_an_occurrence_that_left_the_window_is_only_unlinked() -> None:
    keep, old = item("meeting:s|1"), item("meeting:s|0", starts_at=OUTSIDE)
    known = Known(
        {keep.key: stored(keep, 1), old.key: stored(old, 2)},
        {"s.ics": frozenset({keep.key, old.key})},
        {},
    )
    change = plan({"s.ics": [keep]}, known)
    assert change.unlink == [("s.ics", old.key)] and not change.cancel


def test_a_deleted_resource_cancels_what_nothing_else_shows() -> None:
    mine, shared = item("meeting:a|"), item("meeting:b|", starts_at=OUTSIDE)
    known = Known(
        {mine.key: stored(mine, 1), shared.key: stored(shared, 2)},
        {"a.ics": frozenset({mine.key}), "b.ics": frozenset({shared.key})},
        {shared.key: 1},  # the same meeting in another rep's calendar
    )
    change = plan({}, known, deleted=("a.ics", "b.ics"))
    assert change.cancel == [mine.key]  # deleted: cancelled wherever it starts
    assert sorted(change.unlink) == [("a.ics", mine.key), ("b.ics", shared.key)]


def test_a_meeting_moved_to_another_resource_is_not_cancelled() -> None:
    moved = item("meeting:a|")
    known = Known({moved.key: stored(moved)}, {"old.ics": frozenset({moved.key})}, {})
    change = plan({"new.ics": [moved]}, known, deleted=("old.ics",))
    assert not change.cancel and ("new.ics", moved.key) in change.link


def test_an_already_cancelled_record_is_not_cancelled_again() -> None:
    gone = item("meeting:a|")
    known = Known(
        {gone.key: stored(gone, status="cancelled")}, {"a.ics": frozenset({gone.key})}, {}
    )
    assert not plan({}, known, deleted=("a.ics",)).cancel


def test_the_first_organizer_owns_a_uid() -> None:
    owner = item("meeting:u|", organizer="rep@example.com")
    known = Known({owner.key: stored(owner)}, {}, {})
    spoof = item("meeting:u|", organizer="mallory@evil.example", fingerprint="evil")
    change = plan({"x.ics": [spoof]}, known)
    own_key = organizer_key(owner.key, "mallory@evil.example")
    assert list(change.create) == [own_key] and not change.update
    assert change.objects["x.ics"][0].key == own_key


def test_a_record_without_organizer_is_claimed_by_the_first_that_names_one() -> None:
    nobody = item("meeting:u|", organizer=None)
    known = Known({nobody.key: stored(nobody)}, {}, {})
    first = item("meeting:u|", organizer="rep@example.com", fingerprint="f2")
    second = item("meeting:u|", organizer="other@example.com", fingerprint="f3")
    change = plan({"a.ics": [first], "b.ics": [second]}, known)
    assert list(change.update) == [nobody.key]
    assert list(change.create) == [organizer_key(nobody.key, "other@example.com")]


ORGANIZERS = st.sampled_from([None, "rep@example.com", "other@example.com"])
ITEMS = st.builds(
    item,
    st.sampled_from([f"meeting:{u}|" for u in "abcdef"]),
    fingerprint=st.sampled_from(["f1", "f2"]),
    sequence=st.integers(0, 3),
    organizer=ORGANIZERS,
    starts_at=st.sampled_from([INSIDE, OUTSIDE]),
)
BATCHES = st.dictionaries(
    st.sampled_from(["a.ics", "b.ics", "c.ics"]),
    st.lists(ITEMS, max_size=3, unique_by=lambda i: i.key),
    max_size=3,
)


State = tuple[dict[str, StoredMeeting], dict[str, set[str]]]  # records, href -> keys


def plan_on(
    state: State, objects: dict[str, list[MeetingItem]], deleted: tuple[str, ...] = ()
) -> BatchChange:
    """``plan`` with what the store would load: touched resources' keys, and how many
    other resources show each of those records."""
    records, sources = state
    touched = {*objects, *deleted}
    elsewhere: dict[str, int] = {}
    for href, keys in sources.items():
        if href not in touched:
            for key in keys:
                elsewhere[key] = elsewhere.get(key, 0) + 1
    known = Known(
        records,
        {h: frozenset(k) for h, k in sources.items() if h in touched},
        elsewhere,
    )
    return plan(objects, known, deleted)


def applied(change: BatchChange, state: State) -> State:
    """The state once the store applied ``change`` (as the store does)."""
    records = dict(state[0])
    for n, i in enumerate(change.items, start=len(records) + 1):
        if i.key in change.create or i.key in change.update:
            old = records.get(i.key)
            records[i.key] = stored(i, old.record_id if old else n)
    for key in change.cancel:
        records[key] = replace(records[key], status="cancelled")
    sources = {h: set(k) for h, k in state[1].items()}
    for href, key in change.unlink:
        sources[href].discard(key)
    for href, key in change.link:
        sources.setdefault(href, set()).add(key)
    return records, sources


@given(BATCHES, BATCHES, st.lists(st.sampled_from(["a.ics", "b.ics", "c.ics"]), max_size=2))
def test_invariants_over_random_batches(
    first: dict[str, list[MeetingItem]],
    second: dict[str, list[MeetingItem]],
    deleted: list[str],
) -> None:
    empty: State = ({}, {})
    one = plan_on(empty, first)
    assert not one.update and not one.cancel  # nothing known: only creations
    state = applied(one, empty)
    # A replayed batch changes nothing.
    replay = plan_on(state, first)
    assert not replay.create and not replay.update and not replay.cancel and not replay.unlink
    # The next batch: nothing both created and updated; cancellations are of records that
    # existed, were not cancelled, and that no resource shows after the batch.
    deleted_now = tuple(h for h in deleted if h not in second)
    two = plan_on(state, second, deleted_now)
    assert not set(two.create) & set(two.update)
    after = applied(two, state)
    shown = {key for keys in after[1].values() for key in keys}
    for key in two.cancel:
        assert state[0][key].status != "cancelled" and key not in shown
    # Every record that lost its last resource by deletion is cancelled (or was already).
    for href in deleted_now:
        for key in state[1].get(href, set()) - shown:
            assert key in two.cancel or state[0][key].status == "cancelled"
    # The first organizer of a key keeps it: no item under its key names another organizer.
    for i in two.items:
        owner = state[0].get(i.key)
        if owner is not None and owner.organizer is not None:
            assert i.organizer == owner.organizer
