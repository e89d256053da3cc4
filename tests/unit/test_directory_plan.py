"""The directory file against the stored directory: parsing, the plan, and its application
(in memory and on SQLite), with Hypothesis: applying a plan and planning again changes nothing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, select
from sqlalchemy.pool import StaticPool

from syncd.domain.directory_file import BadDirectoryFile, DirectoryFile, parse_directory
from syncd.domain.directory_plan import Known, KnownContact, KnownCustomer, applied, plan
from syncd.errors import UserError
from syncd.schema.tables import (
    audit_log,
    contact_addresses,
    contacts,
    customer_domains,
    customers,
    metadata,
    record_customers,
    records,
)
from syncd.store.directory_mirror import EmptyDirectory, import_directory, load_known
from syncd.store.events import read as events_read

HEADER = "customer,domains,contact_name,contact_email\n"
NAMES = ["Acme", "acme", "ACME", "Globex", "Initech", "Ini  tech", "ini\u00a0tech"]
DOMAINS = ["acme.com", "globex.io", "initech.io", "x.org"]
PEOPLE = ["", "Wile", "Road"]
ADDRESSES = ["a@acme.com", "b@acme.com", "c@x.org", "d@gmail.com", "e@globex.io", "f@x.org"]


def _file(text: str) -> DirectoryFile:
    return parse_directory(HEADER + text)


# --- parsing ------------------------------------------------------------------------------


def test_rows_group_into_customers_and_contacts() -> None:
    parsed = _file(
        "Acme,acme.com,Wile,wile@acme.com\n"
        "acme,acme-corp.de,Wile,W.Coyote@Gmail.com\n"
        "Acme,,,anon@acme.com\n"
        "Initech,initech.io,,\n"
    )
    assert list(parsed.customers) == ["acme", "initech"]
    assert parsed.customers["acme"].name == "Acme"
    assert parsed.customers["acme"].domains == ("acme-corp.de", "acme.com")
    assert [(c.name, c.addresses) for c in parsed.contacts] == [
        ("Wile", ("wile@acme.com", "w.coyote@gmail.com")),
        ("", ("anon@acme.com",)),
    ]
    assert parsed.rows == 4


def test_every_bad_row_is_reported_with_its_line() -> None:
    with pytest.raises(BadDirectoryFile) as caught:
        _file(
            "X,co.uk,,\n"  # a public suffix
            ",x.com,,\n"  # no customer
            "Y,y.com,Y,not-an-address\n"
            "Z,z.com,Zed,zed@z.com\n"
            "W,w.com,Zed,zed@z.com\n"  # the same address for another customer
            f"{'N' * 301},n.com,,\n"  # too long for the column
            "C,c.com,Bad\x01Name,b@c.com\n"  # a control character
            "Good,good.com,,\n"
        )
    lines = [p.split(":")[0] for p in caught.value.problems]
    assert lines == ["line 2", "line 3", "line 4", "line 6", "line 7", "line 8"]
    assert "nothing imported, 6 bad row(s)" in caught.value.message


def test_a_wrong_header_is_refused_without_quoting_the_file() -> None:
    # A [directory] file pointed by mistake at a secret file: its first line is the secret.
    with pytest.raises(
        UserError, match="the first line is not the directory file's header"
    ) as caught:
        parse_directory("hunter2-Secret-Value,email\nAcme,a@acme.com\n")
    assert "hunter2" not in caught.value.message + (caught.value.hint or "")


def test_a_header_only_file_is_empty() -> None:
    assert parse_directory(HEADER).empty


# --- the plan -----------------------------------------------------------------------------

KNOWN = Known(
    (
        KnownCustomer(1, "Acme", frozenset({"acme.com", "old.acme"})),
        KnownCustomer(2, "Globex", frozenset({"globex.io"})),
        KnownCustomer(3, "Initech", frozenset({"initech.io"}), archived=True),
    ),
    (
        KnownContact(10, 1, "Wile", frozenset({"wile@acme.com", "w@gmail.com"})),
        KnownContact(11, 2, "Hank", frozenset({"hank@globex.io"})),
        KnownContact(12, 3, "Bill", frozenset({"bill@initech.io"}), archived=True),
    ),
)


def test_mirror_archives_what_the_file_drops_and_restores_what_comes_back() -> None:
    steps = plan(
        _file("Acme,acme.com,Wile,wile@acme.com\nInitech,initech.io,Bill,bill@initech.io\n"),
        KNOWN,
        mirror=True,
    )
    assert steps.archive_customers == (2,) and steps.archive_contacts == (11,)
    assert steps.counts() == {
        "customers": {"added": 0, "updated": 1, "archived": 1, "restored": 1, "unchanged": 0},
        "contacts": {"added": 0, "updated": 1, "archived": 1, "restored": 1, "unchanged": 0},
    }
    acme = next(s for s in steps.customers if s.id == 1)
    assert acme.remove_domains == ("old.acme",)  # a domain the CRM no longer gives it
    wile = next(s for s in steps.contacts if s.id == 10)
    assert wile.remove_addresses == ("w@gmail.com",)


def test_names_differing_in_spacing_or_composition_are_the_same_customer() -> None:
    # A CRM export spells a stored customer with a doubled or no-break space, or in
    # decomposed Unicode (as macOS writes it): the same customer, not a new twin with the
    # stored one archived (its history and links left behind).
    known = Known(
        (
            KnownCustomer(1, "Acme Corp", frozenset({"acme.com"})),
            KnownCustomer(2, "Café Noir", frozenset({"noir.fr"})),
        ),
        (),
    )
    parsed = _file("Acme  Corp,acme.com,,\nACME\u00a0CORP,acme.com,,\nCafe\u0301 Noir,noir.fr,,\n")
    assert [c.name for c in parsed.customers.values()] == ["Acme Corp", "Café Noir"]
    steps = plan(parsed, known, mirror=True)
    assert steps.empty, steps


def test_a_line_break_in_a_quoted_name_is_still_refused() -> None:
    with pytest.raises(BadDirectoryFile, match="control characters"):
        _file('"Acme\nCorp",acme.com,,\n')


def test_without_mirror_nothing_is_archived_or_removed() -> None:
    steps = plan(_file("Acme,new.acme,,new@acme.com\n"), KNOWN, mirror=False)
    assert not steps.archive_customers and not steps.archive_contacts
    assert all(not s.remove_domains for s in steps.customers)
    assert steps.counts()["contacts"]["added"] == 1


def test_a_new_address_under_a_known_name_joins_that_contact() -> None:
    steps = plan(
        _file("Acme,acme.com;old.acme,Wile,wile@acme.com\nAcme,,Wile,coyote@acme.com\n"),
        KNOWN,
        mirror=False,
    )
    (wile,) = steps.contacts
    assert wile.id == 10 and wile.add_addresses == ("coyote@acme.com",)


def test_an_address_moves_to_the_contact_the_file_gives_it() -> None:
    steps = plan(
        _file("Acme,acme.com;old.acme,Wile,wile@acme.com\nGlobex,,Hank,w@gmail.com\n"),
        KNOWN,
        mirror=True,
    )
    by_id = {s.id: s for s in steps.contacts}
    assert by_id[11].add_addresses == ("w@gmail.com",)
    assert 10 not in by_id  # the address moves away by 11's step, not removed by its own
    after = applied(KNOWN, steps)
    holders = {a: c.id for c in after.contacts for a in c.addresses}
    assert holders["w@gmail.com"] == 11 and holders["wile@acme.com"] == 10


# --- Hypothesis: the plan reaches the file, and a second plan is empty ---------------------


@st.composite
def knowns(draw: st.DrawFn) -> Known:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    found = tuple(
        KnownCustomer(
            i + 1,
            name,
            frozenset(draw(st.sets(st.sampled_from(DOMAINS), max_size=2))),
            draw(st.booleans()),
        )
        for i, name in enumerate(names)
    )
    count = draw(st.integers(0, 4))
    holders = [draw(st.one_of(st.none(), st.integers(0, max(0, count - 1)))) for _ in ADDRESSES]
    people = tuple(
        KnownContact(
            100 + i,
            draw(
                st.one_of(st.none(), st.sampled_from([c.id for c in found]) if found else st.none())
            ),
            draw(st.sampled_from(PEOPLE)),
            frozenset(a for a, h in zip(ADDRESSES, holders, strict=True) if h == i),
            draw(st.booleans()),
        )
        for i in range(count)
    )
    return Known(found, people)


@st.composite
def files(draw: st.DrawFn) -> DirectoryFile:
    rows: list[str] = []
    for address in draw(st.lists(st.sampled_from(ADDRESSES), unique=True, max_size=5)):
        domains = ";".join(draw(st.sets(st.sampled_from(DOMAINS), max_size=2)))
        rows.append(
            f"{draw(st.sampled_from(NAMES))},{domains},{draw(st.sampled_from(PEOPLE))},{address}"
        )
    for _ in range(draw(st.integers(0, 2))):
        rows.append(f"{draw(st.sampled_from(NAMES))},{draw(st.sampled_from(DOMAINS))},,")
    return _file("".join(r + "\n" for r in draw(st.permutations(rows))))


def _check_equal_to_file(after: Known, file: DirectoryFile) -> None:
    active = [c for c in after.customers if not c.archived]
    assert sorted(c.name.lower() for c in active) == sorted(file.customers)
    for customer in active:
        assert customer.domains == set(file.customers[customer.name.lower()].domains)
    names = {c.id: c.name.lower() for c in after.customers}
    got = Counter(
        (names.get(c.customer_id or 0), frozenset(c.addresses))
        for c in after.contacts
        if not c.archived
    )
    want = Counter((c.customer, frozenset(c.addresses)) for c in file.contacts)
    assert got == want
    listed = {a for c in file.contacts for a in c.addresses}
    assert not any(c.addresses & listed for c in after.contacts if c.archived)


@given(knowns(), files(), st.booleans())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_applying_a_plan_then_planning_again_gives_an_empty_plan(
    known: Known, file: DirectoryFile, mirror: bool
) -> None:
    steps = plan(file, known, mirror=mirror)
    after = applied(known, steps)
    again = plan(file, after, mirror=mirror)
    assert again.empty, again
    # Nothing is ever deleted: every customer and contact is still there.
    assert {c.id for c in known.customers} <= {c.id for c in after.customers}
    assert {c.id for c in known.contacts} <= {c.id for c in after.contacts}
    if mirror:
        _check_equal_to_file(after, file)
    else:
        assert not steps.archive_customers and not steps.archive_contacts


# --- the same on SQLite: the store writes what the model says --------------------------------


def _engine() -> Any:
    engine = create_engine("sqlite://", poolclass=StaticPool)
    metadata.create_all(engine)
    return engine


def _seed(conn: Any, known: Known) -> None:
    now = datetime.now(UTC)
    for c in known.customers:
        conn.execute(
            customers.insert().values(
                id=c.id, name=c.name, created_at=now, archived_at=now if c.archived else None
            )
        )
        for d in c.domains:
            conn.execute(customer_domains.insert().values(customer_id=c.id, domain=d))
    for p in known.contacts:
        conn.execute(
            contacts.insert().values(
                id=p.id,
                customer_id=p.customer_id,
                name=p.name,
                created_at=now,
                archived_at=now if p.archived else None,
            )
        )
        for a in p.addresses:
            conn.execute(contact_addresses.insert().values(contact_id=p.id, address=a))


def _shape(known: Known) -> Counter[tuple[Any, ...]]:
    """The directory without its new rows' ids: what the model and the store must agree on."""
    names = {c.id: c.name for c in known.customers}
    return Counter(
        [("customer", c.name, c.domains, c.archived) for c in known.customers]
        + [
            ("contact", names.get(p.customer_id or 0), p.name, p.addresses, p.archived)
            for p in known.contacts
        ]
    )


@given(knowns(), files(), st.booleans())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_store_applies_what_the_model_says(
    known: Known, file: DirectoryFile, mirror: bool
) -> None:
    # The store plans in SQL (store/directory_stage.py): it must reach what the model's
    # plan reaches, with the same counts.
    engine = _engine()
    with engine.begin() as conn:
        _seed(conn, known)
        done = import_directory(conn, file, mirror=mirror, source="test", allow_empty=True)
        stored = load_known(conn)
        again = import_directory(conn, file, mirror=mirror, source="test", allow_empty=True)
        archives = conn.scalar(
            select(audit_log.c.id).where(audit_log.c.action == "archive").limit(1)
        )
    model = plan(file, known, mirror=mirror)
    assert done.counts == model.counts()
    assert _shape(stored) == _shape(applied(known, model))
    assert again.empty
    assert (archives is not None) == bool(model.archive_customers or model.archive_contacts)


def test_an_empty_mirror_archives_nobody_without_allow_empty() -> None:
    engine = _engine()
    with engine.begin() as conn:
        _seed(conn, KNOWN)
        with pytest.raises(EmptyDirectory, match="would archive all 2 customers"):
            import_directory(conn, parse_directory(HEADER), mirror=True, source="f.csv")
        assert not any(c.archived for c in load_known(conn).customers if c.id != 3)
        done = import_directory(
            conn, parse_directory(HEADER), mirror=True, source="f.csv", allow_empty=True
        )
    assert done.counts["customers"]["archived"] == 2


# --- matching: archived entries link nothing, and explain why ------------------------------


def test_an_archived_entry_links_nothing_but_explains_the_miss() -> None:
    from syncd.domain.matching import Directory, match_address

    directory = Directory()
    directory.add_domain("acme.com", 1)
    directory.archived_contacts.update({"old@acme.com", "hank@globex.io", "w@gmail.com"})
    directory.archived_domains.add("globex.io")
    assert match_address("old@acme.com", directory).reason == "domain"  # Acme still owns it
    hank = match_address("hank@globex.io", directory)
    assert (hank.reason, hank.customer_id, hank.queued) == ("archived", None, True)
    assert match_address("x@eu.globex.io", directory).detail == "@globex.io"
    assert match_address("w@gmail.com", directory).reason == "archived"
    assert match_address("x@gmail.com", directory).reason == "free-mail"
    assert match_address("x@other.io", directory).reason == "no-match"


def test_quotes_cannot_swallow_rows_and_domains_are_domains() -> None:
    with pytest.raises(BadDirectoryFile) as caught:
        _file(
            'A,a.com,"Two\nLines",x@a.com\nB,"b.com,c.com",,\nC,a b.com,,\nD,"open,,\nE,e.com,,\n'
        )
    assert caught.value.problems == [
        "line 2: contact_name holds control characters",
        "line 4: domains: one is not a domain",
        "line 5: domains: one is not a domain",
        "line 6: unexpected end of data",
    ]


def test_a_file_of_garbage_is_counted_whole_but_kept_bounded() -> None:
    with pytest.raises(BadDirectoryFile) as caught:
        _file(",x.com,,\n" * 5000)
    assert len(caught.value.problems) == 1000
    assert "nothing imported, 5000 bad row(s)" in caught.value.message
    assert caught.value.message.endswith("... and 4800 more")


def test_archiving_and_restoring_many_costs_a_few_statements_not_one_per_row() -> None:
    # On PostgreSQL every statement is a round trip: a CRM dropping a thousand customers
    # must not cost thousands (the audit rows and the restores were written one by one).
    engine = _engine()
    rows = [f"C{i},c{i}.com,P{i},p{i}@c{i}.com\n" for i in range(300)]
    full = "".join(rows)
    with engine.begin() as conn:
        import_directory(conn, _file(full), mirror=True, source="test")
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    for text, what in (("".join(rows[:30]), "archived"), (full, "restored")):
        statements.clear()
        with engine.begin() as conn:
            done = import_directory(conn, _file(text), mirror=True, source="test")
        assert done.counts["customers"][what] >= 270
        assert len(statements) < 40, (what, Counter(s.split()[0] for s in statements))
    with engine.connect() as conn:
        actions = Counter(r.action for r in conn.execute(select(audit_log.c.action)))
    assert actions["archive"] == actions["restore"] == 2 * 270


def test_a_customer_named_beyond_ascii_is_found_by_its_name_in_any_case() -> None:
    # SQLite's lower() folds ASCII only: "Ørsted", as the CRM export spells it, was not
    # found by `contacts add --customer Ørsted`, and `customers add Ørsted` again failed on
    # the unique name with a traceback.
    from syncd.store.directory import ensure_customer, find_customer

    engine = _engine()
    with engine.begin() as conn:
        import_directory(conn, _file("Ørsted,orsted.com,,\n"), mirror=True, source="test")
        found = find_customer(conn, "Ørsted")
        assert (found.name, found.archived) == ("Ørsted", False)
        assert find_customer(conn, "ØRSTED").id == find_customer(conn, "ørsted").id == found.id
        assert find_customer(conn, "Ørsted  ").id == found.id
        assert ensure_customer(conn, "ØRSTED", ["orsted.dk"]) == (found.id, True)
        assert ensure_customer(conn, "Ørsted", []) == (found.id, False)


def test_a_customer_the_crm_spells_otherwise_but_for_case_is_renamed_on_record() -> None:
    engine = _engine()
    when = datetime(2026, 3, 2, 9, tzinfo=UTC)
    with engine.begin() as conn:
        import_directory(conn, _file("Acme,acme.com,,\n"), mirror=True, source="test")
        conn.execute(records.insert().values(
            id=7, key="email:<a@acme.com>", kind="email", direction="inbound", subject="Hi",
            occurred_at=when, created_at=when,
        ))  # fmt: skip
        conn.execute(record_customers.insert().values(record_id=7, customer_id=1, link="domain"))
        done = import_directory(conn, _file("ACME,acme.com,,\n"), mirror=True, source="test")
        # The name every linked record shows changed: the CRM hears of it.
        (updated,) = events_read(conn, types=["record.updated"])
        assert updated.subject == "record:7"
        assert [c["name"] for c in updated.data["customers"]] == ["ACME"]
        assert done.counts["customers"] == {
            "added": 0, "updated": 1, "archived": 0, "restored": 0, "unchanged": 0,
        }  # fmt: skip
        assert [(c.id, c.name, c.archived) for c in load_known(conn).customers] == [
            (1, "ACME", False)
        ]
        trail = [(r.action, r.target) for r in conn.execute(select(audit_log))]
    assert ("rename", "customer Acme -> ACME") in trail


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # The CRM renamed its domain column: every row still names its customer and contact.
        ("Acme,,Wile,wile@acme.com\nInitech,,Bill,bill@initech.io\n", "gives no customer a domain"),
        # The contacts' columns came out empty: only the customers are left.
        ("Acme,acme.com,,\nInitech,initech.io,,\n", "would archive all 2 contacts"),
    ],
)
def test_a_mirror_emptying_a_column_changes_nothing_without_allow_empty(
    text: str, problem: str
) -> None:
    engine = _engine()
    full = "Acme,acme.com,Wile,wile@acme.com\nInitech,initech.io,Bill,bill@initech.io\n"
    with engine.begin() as conn:
        import_directory(conn, _file(full), mirror=True, source="test")
        before = load_known(conn)
        with pytest.raises(EmptyDirectory, match=problem):
            import_directory(conn, _file(text), mirror=True, source="crm.csv")
        assert load_known(conn) == before
        import_directory(conn, _file(text), mirror=True, source="crm.csv", allow_empty=True)
        after = load_known(conn)
    assert after != before  # allowed, it applies


# --- the row reader's fast path gives what the general one gives ------------------------

_FIELD = st.text(
    alphabet=st.sampled_from("aZ9 .-_+@;<>\"'\t\u00a0é\u0301xn-ACME.co.uk"), max_size=30
)


_CUSTOMERS = st.one_of(
    _FIELD,
    st.sampled_from(["Acme", "Acme  Corp", " Acme ", "Caf\u00e9", "Cafe\u0301", "A\tB", "N" * 301]),
)
_DOMAINS = st.one_of(
    _FIELD,
    st.sampled_from(
        ["acme.com", " ACME.com ", "co.uk", "xn--caf-dma.com", "a.com;b.io", "@acme.com", ""]
    ),
)
_PEOPLE = st.one_of(_FIELD, st.sampled_from(["Wile", "", "Wile  E", " Wile ", "W\u00e9"]))
_ADDRESSES = st.one_of(
    _FIELD,
    st.sampled_from(
        ["Wile@ACME.com", "<w@acme.com>", "w@xn--caf-dma.com", "a.b+c@x.org", "w@acme",
         "w @acme.com", "w@acme.com.", "x" * 330 + "@a.com", " w@a.io ", "w@@a.io", "\u00e9@a.io"]
    ),
)  # fmt: skip


@given(st.lists(st.tuples(_CUSTOMERS, _DOMAINS, _PEOPLE, _ADDRESSES), min_size=1, max_size=5))
@settings(max_examples=300, deadline=None)
def test_the_row_reader_reads_each_row_as_the_general_rules_say(
    rows: list[tuple[str, str, str, str]],
) -> None:
    # Plain rows take a shortcut (most of a million-row export): it must not change a
    # single value, nor let a bad row through.
    import csv
    import io

    from syncd.domain.directory_file import RowReader, _text, clean_address, clean_domain

    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["customer", "domains", "contact_name", "contact_email"])
    writer.writerows(rows)
    reader = RowReader(io.StringIO(out.getvalue(), newline=""))
    got = {row.line: row for row in reader}
    for line, (customer, domains, contact, address) in enumerate(rows, start=2):
        if not any(f.strip() for f in (customer, domains, contact, address)):
            assert line not in got
            continue
        try:
            name = _text(customer, "customer")
            assert name
            want = (
                name,
                tuple(clean_domain(d) for d in domains.split(";") if d.strip()),
                _text(contact, "contact_name"),
                clean_address(address) if address.strip() else None,
            )
        except (ValueError, AssertionError):
            assert line not in got
            continue
        row = got[line]
        assert (row.customer, row.domains, row.contact_name, row.address) == want


@given(
    st.one_of(
        st.text(alphabet="abZ09-._@ é", max_size=20),
        st.builds(lambda n: "a" * n + ".com", st.integers(60, 66)),
        st.builds(lambda n: ("ab." * n) + "com", st.integers(80, 90)),
    )
)
@settings(max_examples=500, deadline=None)
def test_a_plain_domain_is_checked_as_every_domain_is(domain: str) -> None:
    # ASCII domains take one match (a customer a row): it must refuse what the label rule
    # refuses, and nothing else.
    from syncd.domain.addresses import normalize_domain
    from syncd.domain.directory_file import clean_domain

    value = normalize_domain(domain.strip().lstrip("@"))
    labels = value.split(".")
    ruled = bool(
        value
        and len(value) <= 255
        and all(0 < len(label) <= 63 for label in labels)
        and all(c.isalnum() or c == "-" for label in labels for c in label)
    )
    try:
        clean_domain(domain)
    except ValueError as err:
        assert not ruled or "not a domain a customer can own" in str(err)
    else:
        assert ruled


def test_a_file_that_is_not_utf8_is_refused_whole() -> None:
    # Decoded as it is read: a bad byte anywhere, even far past the header, refuses it.
    from syncd.domain.directory_file import RowReader, text_stream

    rows = "".join(f"C{i},c{i}.com,P{i},p{i}@c{i}.com\n" for i in range(5000))
    data = (HEADER + rows).encode() + b"Caf\xe9,cafe.fr,,\n"
    with pytest.raises(UserError, match="not UTF-8 text"):
        list(RowReader(text_stream(data), "crm.csv"))
    with pytest.raises(UserError, match="not UTF-8 text"):
        RowReader(text_stream(b"\xff\xfe" + HEADER.encode()), "crm.csv")
