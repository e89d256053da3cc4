"""`syncd forget` redacts display names only where the person took part: a display name is
whatever a sender wrote, and a stranger naming someone "Invoice" must not make forgetting
them redact "Invoice" from every record.  Real Dovecot, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import World
from tests.mail import make_message

pytestmark = pytest.mark.dovecot

CUSTOMERS = (
    "customer,domains,contact_name,contact_email\nAcme Corp,acme.com,Wile Coyote,wile@acme.com\n"
)
DAY = datetime(2024, 6, 3, 9, tzinfo=UTC)


def test_forget_redacts_names_only_in_the_persons_records(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS)
    world.write_config(capture="past_days = 3650")
    # A stranger names Jane "Invoice"; Wile's own mail about an invoice has nothing of her.
    world.deliver(
        "alice",
        make_message(
            sender="Wile Coyote <wile@acme.com>",
            cc='"Invoice" <jane@acme.com>',
            subject="Invoice for Jane",
            message_id="<j1@acme.com>",
            date=DAY,
        ),
    )
    world.deliver(
        "alice",
        make_message(subject="Invoice 42 is due", message_id="<w1@acme.com>", date=DAY),
    )
    world.cli("sync")
    assert sorted(r["subject"] for r in world.records()) == [
        "Invoice 42 is due",
        "Invoice for Jane",
    ]

    out = world.cli("forget", "jane@acme.com", "--yes").stdout
    assert "display names redacted in their records: 'Invoice'" in out, out
    subjects = sorted(str(r["subject"]) for r in world.records())
    # Wile's record keeps its word; Jane's record loses the name she was given.
    assert "Invoice 42 is due" in subjects, subjects
    assert not any(s.startswith("Invoice for") for s in subjects), subjects
