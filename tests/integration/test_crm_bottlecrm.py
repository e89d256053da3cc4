"""The CRM connector against a real BottleCRM (tests/servers/bottlecrm.py): nothing mocked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.crm_world import CrmWorld
from tests.servers.bottlecrm import BottleCrm


def _acme(world: CrmWorld) -> tuple[str, str, str, str]:
    """An account with one contact in the CRM, pulled into syncd; (account id, contact id,
    customer name, contact address)."""
    name = world.name("Acme")
    domain = world.domain("acme")
    account = world.account(name, domain)
    address = f"jane@{domain}"
    contact = world.contact("Jane", "Doe", address, account)
    world.sync()
    return account, contact, name, address


def test_every_record_kind_becomes_one_interaction_on_the_right_record(
    bottlecrm: BottleCrm, tmp_path: Path
) -> None:
    world = CrmWorld(bottlecrm, tmp_path)
    account, contact, name, address = _acme(world)
    now = datetime.now(UTC)
    email = world.record(
        "email", "Price list", customer=name, address=address, snippet="Prices attached"
    )
    meeting = world.record(
        "meeting", "Quarterly review", customer=name, address=address,
        at=now - timedelta(hours=2), starts_at=now - timedelta(hours=2),
        ends_at=now - timedelta(hours=1), status="scheduled",
    )  # fmt: skip
    call = world.record(
        "call", "Called about renewal", customer=name, address=address,
        duration_seconds=600, outcome="connected", body="Agreed to renew",
    )  # fmt: skip
    visit = world.record(
        "visit", "On site", customer=name, location="Berlin office", duration_seconds=3600
    )
    done = world.sync()
    assert done["pushed"] == 4, done
    on_contact = {i["subject"]: i for i in world.interactions("contact", contact)}
    assert set(on_contact) == {"Price list", "Quarterly review", "Called about renewal"}
    assert on_contact["Price list"]["kind"] == "email"
    assert on_contact["Quarterly review"]["kind"] == "meeting"
    assert on_contact["Quarterly review"]["duration_seconds"] == 3600
    assert on_contact["Called about renewal"]["kind"] == "call"
    assert on_contact["Called about renewal"]["outcome"] == "connected"
    assert on_contact["Called about renewal"]["duration_seconds"] == 600
    assert "Agreed to renew" in on_contact["Called about renewal"]["body"]
    on_account = [i for i in world.interactions("account", account) if i["home"] == "account"]
    assert [i["subject"] for i in on_account] == ["On site"]
    assert on_account[0]["kind"] == "meeting"
    assert on_account[0]["body"].startswith("Location: Berlin office")
    for rid in (email, meeting, call, visit):
        world.crm_id(f"record:{rid}")
    # Nothing more to push: a second sync changes nothing there.
    assert world.sync()["pushed"] == 0
    assert len(world.interactions("contact", contact)) == 3
    listed = world.crm_list()
    assert listed["pushed"] == 4 and listed["pending"] == 0 and listed["failed"] == 0
