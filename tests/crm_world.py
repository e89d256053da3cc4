"""A syncd installation writing into the session's real BottleCRM: config, CLI, and records made
the way capture and `records add` store them (rows and their outbox events in one transaction).

Each test has its own syncd database and its own names in the shared CRM organisation."""

from __future__ import annotations

import itertools
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import Engine, insert, select

from syncd.cli.main import cli
from syncd.schema.tables import (
    contact_addresses,
    contacts,
    participants,
    record_customers,
    records,
)
from syncd.store import outbox
from syncd.store.database import open_database
from syncd.store.events import RECORD_CREATED, RECORD_UPDATED
from tests.servers.bottlecrm import BottleCrm

_KEYS = itertools.count(1)


class CrmWorld:
    def __init__(self, crm: BottleCrm, tmp_path: Path, db_url: str | None = None) -> None:
        self.crm = crm
        self.tmp = tmp_path
        self.tag = secrets.token_hex(3)
        self.db_url = db_url or f"sqlite:///{tmp_path / 'syncd.db'}"
        (tmp_path / "crm-token").write_text(crm.token + "\n")
        self.config_path = tmp_path / "syncd.toml"
        self.write_config()
        self.runner = CliRunner()
        self._engine: Engine | None = None

    def write_config(self, **keys: Any) -> None:
        values: dict[str, Any] = {
            "name": "bottle",
            "kind": "bottlecrm",
            "url": self.crm.url,
            "token_file": str(self.tmp / "crm-token"),
            "directory": True,
            **keys,
        }
        lines = "".join(
            f"{k} = {json.dumps(v) if not isinstance(v, str) or k != 'since' else v}\n"
            for k, v in values.items()
            if v is not None
        )
        self.config_path.write_text(
            f'[database]\nurl = "{self.db_url}"\n\n[organization]\n'
            f'internal_domains = ["example.com"]\n\n[[crm]]\n{lines}'
        )

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_database(self.db_url)
        return self._engine

    def cli(self, *args: str, expect: int | None = 0) -> Result:
        result = self.runner.invoke(
            cli, ["--config", str(self.config_path), *args], catch_exceptions=False
        )
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}: {result.output}"
        return result

    def crm_list(self) -> dict[str, Any]:
        items = json.loads(self.cli("crm", "list", "--json").stdout)
        assert len(items) == 1
        return items[0]  # type: ignore[no-any-return]

    def sync(self, expect: int | None = 0) -> dict[str, Any]:
        return json.loads(self.cli("crm", "sync", "bottle", "--json", expect=expect).stdout)  # type: ignore[no-any-return]

    # --- the CRM side -----------------------------------------------------------------------

    def name(self, base: str) -> str:
        return f"{base} {self.tag}"

    def domain(self, base: str) -> str:
        return f"{base}-{self.tag}.test"

    def account(self, name: str, domain: str) -> str:
        made = self.crm.api(
            "POST", "/api/accounts/", {"name": name, "website": f"https://www.{domain}/"}
        )
        return str(made["account_id"] if "account_id" in made else made["id"])

    def contact(self, first: str, last: str, email: str, account: str) -> str:
        made = self.crm.api(
            "POST",
            "/api/contacts/",
            {"first_name": first, "last_name": last, "email": email, "account": account},
        )
        return str(made.get("contact_id") or made.get("id") or made["data"]["id"])

    def interactions(self, home: str, home_id: str) -> list[dict[str, Any]]:
        got = self.crm.api("GET", f"/api/interactions/?{home}={home_id}&limit=100")
        return list(got["interactions"])

    # --- the syncd side ---------------------------------------------------------------------

    def customer_id(self, name: str) -> int:
        from syncd.schema.tables import customers

        with self.engine.connect() as conn:
            found = conn.scalar(select(customers.c.id).where(customers.c.name == name))
        assert found is not None, f"no customer {name!r} in syncd"
        return int(found)

    def record(
        self,
        kind: str,
        subject: str,
        *,
        customer: str,
        address: str | None = None,
        at: datetime | None = None,
        **fields: Any,
    ) -> int:
        """A record linked to ``customer`` (and the contact of ``address``), with its
        record.created event, as capture or `records add` writes one."""
        at = at or datetime.now(UTC) - timedelta(minutes=5)
        customer_id = self.customer_id(customer)
        with self.engine.begin() as conn:
            contact_id = None
            if address is not None:
                contact_id = conn.scalar(
                    select(contact_addresses.c.contact_id).where(
                        contact_addresses.c.address == address
                    )
                )
            row = {
                "key": f"logged:test-{self.tag}-{next(_KEYS)}",
                "kind": kind,
                "direction": fields.pop("direction", "outbound"),
                "subject": subject,
                "occurred_at": at,
                "created_at": datetime.now(UTC),
                **fields,
            }
            rid = int(conn.execute(insert(records).values(**row)).inserted_primary_key[0])  # type: ignore[index]
            conn.execute(
                insert(record_customers).values(
                    record_id=rid,
                    customer_id=customer_id,
                    link="contact" if contact_id else "domain",
                )
            )
            if address is not None:
                conn.execute(
                    insert(participants).values(
                        record_id=rid, address=address, name="", role="to", external=1,
                        contact_id=contact_id,
                    )
                )  # fmt: skip
            outbox.emit_records(conn, RECORD_CREATED, [rid])
        return rid

    def log(self, kind: str, subject: str, *options: str) -> int:
        """A call, visit or note logged as a rep logs one: `syncd records add`; its id."""
        added = self.cli(
            "records", "add", "--kind", kind, "--owner", "rep@example.com",
            "--subject", subject, *options, "--json",
        )  # fmt: skip
        return int(json.loads(added.stdout)["id"])

    def comments(self, home: str, home_id: str) -> list[dict[str, Any]]:
        """The comments on a contact or an account (where notes go), as its page shows them."""
        return list(self.crm.api("GET", f"/api/{home}s/{home_id}/")["comments"])

    def change(self, record_id: int, **values: Any) -> None:
        from sqlalchemy import update

        with self.engine.begin() as conn:
            conn.execute(update(records).where(records.c.id == record_id).values(**values))
            outbox.emit_records(conn, RECORD_UPDATED, [record_id])

    def add_participant(self, record_id: int, address: str) -> None:
        """The person becomes a participant matched to their contact (a reconcile, say)."""
        with self.engine.begin() as conn:
            contact_id = conn.scalar(
                select(contact_addresses.c.contact_id).where(contact_addresses.c.address == address)
            )
            conn.execute(
                insert(participants).values(
                    record_id=record_id, address=address, name="", role="cc", external=1,
                    contact_id=contact_id,
                )
            )  # fmt: skip
            outbox.emit_records(conn, RECORD_UPDATED, [record_id])

    def contact_subjects(self) -> list[str]:
        """``contact:<id>`` of every contact syncd has (their CRM ids are in the map)."""
        with self.engine.connect() as conn:
            return [f"contact:{cid}" for cid in conn.scalars(select(contacts.c.id))]

    def crm_id(self, subject: str) -> str:
        from syncd.schema.tables import crm_objects

        with self.engine.connect() as conn:
            found = conn.scalar(
                select(crm_objects.c.crm_id).where(crm_objects.c.subject == subject)
            )
        assert found is not None, f"{subject} has no CRM copy"
        return str(found)
