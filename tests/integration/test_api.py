"""The HTTP API on a real server on a free loopback port, called with a real HTTP client,
against mail captured from the real Dovecot: every endpoint gives the CLI's JSON, scopes and
rep tokens hold, cursors stay stable while mail arrives, long polls wake within a second."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import select

from syncd.api import server as server_module
from syncd.api.server import ApiServer
from syncd.config_file import load_config
from syncd.metrics import Metrics
from syncd.schema.tables import api_tokens
from syncd.store.database import open_database
from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

BASE = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)


@dataclass
class Api:
    world: World
    server: ApiServer
    metrics: Metrics
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        return httpx.Client(base_url=self.server.url + "/api/v1", headers=headers, timeout=30)

    def token(self, name: str, *args: str) -> str:
        out = self.world.cli("tokens", "create", name, *args, "--json").stdout
        self.tokens[name] = json.loads(out)["token"]
        return self.tokens[name]

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.world.cli(*args, "--json").stdout)


def _deliver(world: World, n: int, *, start: datetime = BASE, rep: str = "alice") -> None:
    for i in range(n):
        world.deliver(
            rep,
            make_message(
                message_id=f"<m{start.timestamp():.0f}-{i}-{rep}@acme.com>",
                subject=f"Quote {i}",
                date=start + timedelta(hours=i),
                to=f"Rep <{rep}@example.com>",
                sender="Wile Coyote <wile@acme.com>"
                if i % 3
                else "Sam Stranger <sam@unknown-startup.com>",
            ),
        )


@pytest.fixture
def api(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setattr(server_module, "HEADER_SECONDS", 1.0)
    world.rep("alice")
    world.rep("bob")
    world.write_config(extra='[api]\nlisten = "127.0.0.1:0"\nrate_limit = 1000')
    world.customers(CUSTOMERS_CSV)
    _deliver(world, 6)
    _deliver(world, 2, start=BASE + timedelta(days=1), rep="bob")
    world.cli("sync")
    metrics = Metrics()
    server = ApiServer(load_config(world.config_path), metrics).start()
    found = Api(world, server, metrics)
    found.token("admin", "--scope", "admin")
    found.token("reader", "--scope", "read")
    found.token("writer", "--scope", "write")
    found.token("bob", "--scope", "write", "--rep", "bob@example.com")
    try:
        yield found
    finally:
        server.stop()


def test_every_read_endpoint_gives_the_cli_json(api: Api) -> None:
    w = api.world
    w.cli("tasks", "add", "--customer", "Acme Corp", "--owner", "alice@example.com",
          "--due", "2030-01-01", "--title", "Call back")  # fmt: skip
    acme = next(c for c in api.cli_json("customers", "list") if c["name"] == "Acme Corp")
    with api.client("reader") as http:

        def items(path: str, **params: Any) -> list[Any]:
            answer = http.get(path, params={"limit": 1000, **params})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["next_cursor"] is None
            return list(body["items"])

        records = api.cli_json("records", "list")
        assert len(records) == 8
        assert items("/records") == records
        assert items("/records", customer="Acme Corp") == api.cli_json(
            "records", "list", "--customer", "Acme Corp"
        )
        assert items("/records", contact="wile@acme.com") == api.cli_json(
            "records", "list", "--contact", "wile@acme.com"
        )
        first = records[0]["id"]
        assert http.get(f"/records/{first}").json() == records[0]
        assert http.get(f"/records/{first}/explain").json() == api.cli_json(
            "records", "explain", str(first)
        )
        assert items("/customers") == api.cli_json("customers", "list")
        assert items("/customers", sort="emails", window="30d") == api.cli_json(
            "customers", "list", "--sort", "emails", "--window", "30d"
        )
        assert http.get(f"/customers/{acme['id']}").json() == acme
        assert items(f"/customers/{acme['id']}/timeline") == api.cli_json(
            "records", "list", "--customer", str(acme["id"])
        )
        assert items(f"/customers/{acme['id']}/activity", weeks=4) == api.cli_json(
            "report", "activity", "Acme Corp", "--weeks", "4"
        )
        assert items("/contacts") == api.cli_json("contacts", "list")
        assert items("/contacts", customer="Acme Corp") == api.cli_json(
            "contacts", "list", "--customer", "Acme Corp"
        )
        assert items("/tasks") == api.cli_json("tasks", "list")
        assert items("/reconcile") == api.cli_json("reconcile", "list")
        assert items("/reports/responses", since="2024-01-01") == api.cli_json(
            "report", "responses", "--since", "2024-01-01"
        )
        events = http.get("/events", params={"limit": 1000}).json()
        assert events["items"] == api.cli_json("events", "list")
        assert events["next_cursor"] == events["items"][-1]["id"]
        status = http.get("/status").json()
        cli_status = json.loads(w.cli("status", "--json", expect=None).stdout)
        assert status == cli_status
        assert status["api"]["listen"] == "127.0.0.1:0"


def test_tokens_scopes_and_rep_tokens(api: Api) -> None:
    with httpx.Client(base_url=api.server.url + "/api/v1") as anonymous:
        answer = anonymous.get("/records")
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == 401 and answer.json()["title"] == "Unauthorized"
        bad = anonymous.get("/records", headers={"Authorization": "Bearer syncd_nope"})
        assert bad.status_code == 401
    task = {"customer": "Acme Corp", "owner": "alice@example.com", "title": "x",
            "due_at": "2030-01-01T09:00:00Z"}  # fmt: skip
    with api.client("reader") as reader:
        assert reader.get("/customers").status_code == 200
        denied = reader.post("/tasks", json=task)
        assert denied.status_code == 403 and "write" in denied.json()["detail"]
    with api.client("writer") as writer:
        assert writer.post("/tasks", json=task).status_code == 201
        assert writer.post("/customers", json={"name": "Hooli"}).status_code == 403
        assert writer.post("/reconcile/ignore", json={"entry": "@spam.com"}).status_code == 403
    with api.client("admin") as admin:
        assert admin.post("/customers", json={"name": "Hooli"}).status_code == 201
        assert admin.post("/customers", json={"name": "Hooli"}).status_code == 200
    # A rep token: only bob's records (his mailbox) and tasks.
    with api.client("bob") as bob:
        mine = bob.get("/records").json()["items"]
        assert len(mine) == 2
        assert all(s["mailbox"] == "bob" for r in mine for s in r["sources"])
        alice_record = next(
            r for r in api.cli_json("records", "list") if r["sources"][0]["mailbox"] == "alice"
        )
        assert bob.get(f"/records/{alice_record['id']}").status_code == 404
        assert bob.get("/tasks").json()["items"] == []
        assert bob.post("/tasks", json=task).status_code == 403
        own = bob.post("/tasks", json={**task, "owner": "bob@example.com"})
        assert own.status_code == 201
        assert [t["id"] for t in bob.get("/tasks").json()["items"]] == [own.json()["id"]]
        feed = bob.get("/events").json()["items"]
        assert feed and all(
            e["data"].get("owner") == "bob@example.com"
            or any(s.get("mailbox") == "bob" for s in e["data"].get("sources", []))
            for e in feed
        )
    # Revoked: refused within the cache's second.  Only a hash is stored.
    api.world.cli("tokens", "revoke", "writer")
    time.sleep(1.1)
    with api.client("writer") as writer:
        assert writer.get("/records").status_code == 401
    engine = open_database(api.world.db_url)
    with engine.connect() as conn:
        stored = [tuple(row) for row in conn.execute(select(api_tokens))]
    engine.dispose()
    assert stored and not any(secret in repr(stored) for secret in api.tokens.values())
    listed = api.world.cli("tokens", "list", "--json").stdout
    assert not any(secret in listed for secret in api.tokens.values())
    assert {t["name"]: t["revoked_at"] is not None for t in json.loads(listed)}["writer"]


def test_expired_token_and_rate_limit(api: Api) -> None:
    api.token("brief", "--scope", "read", "--expires", "1s")
    time.sleep(1.2)
    with api.client("brief") as http:
        assert http.get("/records").status_code == 401
    api.world.write_config(extra='[api]\nlisten = "127.0.0.1:0"\nrate_limit = 5')
    limited = ApiServer(load_config(api.world.config_path)).start()
    try:
        headers = {"Authorization": f"Bearer {api.tokens['reader']}"}
        with httpx.Client(base_url=limited.url + "/api/v1", headers=headers) as http:
            codes = [http.get("/status") for _ in range(20)]
        refused = [r for r in codes if r.status_code == 429]
        assert refused and int(refused[0].headers["retry-after"]) >= 1
        assert sum(r.status_code == 200 for r in codes) >= 5
    finally:
        limited.stop()


def test_writes_are_audited_with_the_token_name(api: Api) -> None:
    with api.client("admin") as http:
        customer = http.post("/customers", json={"name": "Hooli", "domains": ["hooli.xyz"]})
        assert customer.status_code == 201 and customer.json()["domains"] == ["hooli.xyz"]
        contact = http.post(
            "/contacts", json={"email": "gavin@hooli.xyz", "customer": "Hooli", "name": "Gavin"}
        )
        assert contact.status_code == 201
        assert contact.json() == next(
            c for c in api.cli_json("contacts", "list") if c["addresses"] == ["gavin@hooli.xyz"]
        )
        task = http.post("/tasks", json={"customer": "Hooli", "owner": "alice@example.com",
                                         "title": "Demo", "due_at": "2030-01-01",
                                         "type": "call", "priority": "high"})  # fmt: skip
        assert task.status_code == 201
        assert task.json()["type"] == "call" and task.json()["priority"] == "high"
        done = http.patch(f"/tasks/{task.json()['id']}", json={"status": "done"})
        assert done.json()["status"] == "done"
        snoozed = http.patch(
            f"/tasks/{task.json()['id']}", json={"snoozed_until": "2031-01-01T00:00:00Z"}
        )
        assert snoozed.json()["status"] == "snoozed"
        assert snoozed.json()["snoozed_until"].startswith("2031-01-01T00:00:00")
        assigned = http.post("/reconcile/assign",
                             json={"address": "sam@unknown-startup.com", "customer": "Initech"})  # fmt: skip
        assert assigned.status_code == 200 and assigned.json()["records_linked"] == 3
        assert http.post("/reconcile/ignore", json={"entry": "@spam.example"}).status_code == 200
        created = http.post("/reconcile/create-customer",
                            json={"address": "x@newco.example", "name": "Newco"})  # fmt: skip
        assert created.status_code == 200
    audit = api.cli_json("audit")
    by_api = {row["action"] for row in audit if row["actor"] == "api:admin"}
    assert {"customer-add", "contact-add", "task-add", "task-update", "assign", "ignore",
            "create-customer"} <= by_api  # fmt: skip


def test_problems_list_every_bad_field_and_records_writes(api: Api) -> None:
    with api.client("admin") as http:
        bad = http.post("/tasks", json={"customer": "Acme Corp", "owner": "alice@example.com",
                                        "title": "", "due_at": "someday", "priority": "urgent"})  # fmt: skip
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        fields = {e["field"] for e in bad.json()["errors"]}
        assert {"body.title", "body.due_at", "body.priority"} <= fields
        query = http.get("/records", params={"limit": 0, "kind": "fax", "since": "x"})
        assert {e["field"] for e in query.json()["errors"]} >= {
            "query.limit",
            "query.kind[0]",
            "query.since",
        }
        assert http.get("/records", params={"cursor": "garbage"}).status_code == 422
        assert http.get("/records/999999").status_code == 404
        assert http.get("/customers/Nobody").status_code == 404
        # Ids beyond the databases' integers: not found or invalid, never a crash.
        huge = "9" * 25
        assert http.get(f"/customers/{huge}").status_code == 404
        assert http.get(f"/records/{huge}").status_code == 422
        assert http.patch(f"/tasks/{huge}", json={"status": "done"}).status_code == 422
        api.world.cli("records", "list", "--customer", huge, expect=2)
        captured = api.cli_json("records", "list")[0]["id"]
        conflict = http.delete(f"/records/{captured}")
        assert conflict.status_code == 409 and conflict.json()["type"].endswith("captured-record")
        assert http.patch(f"/records/{captured}", json={"subject": "x"}).status_code == 409
        empty_query = http.get("/records", params={"q": "-quote"})
        assert empty_query.status_code == 422
        assert [e["field"] for e in empty_query.json()["errors"]] == ["query.q"]
        big = http.post("/customers", content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                        headers={"Content-Type": "application/json"})  # fmt: skip
        assert big.status_code == 413
        # Without a Content-Length (chunked), counted as it arrives.
        chunks = (b"{" + b" " * 65536 for _ in range(20))
        streamed = http.post(
            "/customers", content=chunks, headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert streamed.headers["content-type"] == "application/problem+json"


def test_cursor_pages_stay_stable_while_mail_arrives(api: Api) -> None:
    before = [r["id"] for r in api.cli_json("records", "list")]
    seen: list[int] = []
    cursor = None
    with api.client("reader") as http:
        for turn in range(20):
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            body = http.get("/records", params=params).json()
            seen.extend(r["id"] for r in body["items"])
            cursor = body["next_cursor"]
            if turn < 2:  # newer mail and older mail arrive between pages
                _deliver(api.world, 2, start=BASE + timedelta(days=30 + turn))
                _deliver(api.world, 2, start=BASE - timedelta(days=30 + turn))
                api.world.cli("sync")
            if cursor is None:
                break
    assert len(seen) == len(set(seen)), "a record was given twice"
    assert seen[: len(before)][:3] == before[:3]
    assert set(before) <= set(seen), "a record there from the start was skipped"
    older = [r["id"] for r in api.cli_json("records", "list") if r["occurred_at"] < "2024-06-01"]
    assert set(older) <= set(seen)  # added behind the cursor: reached in later pages


def test_long_poll_wakes_within_a_second_of_an_event(api: Api) -> None:
    with api.client("reader") as http:
        last = http.get("/events", params={"limit": 1000}).json()["next_cursor"]
        started = time.monotonic()
        empty = http.get("/events", params={"after": last, "wait": 1}).json()
        assert empty == {"items": [], "next_cursor": last}
        assert 0.9 < time.monotonic() - started < 3
        delays = []
        for n in range(3):
            got: dict[str, Any] = {}

            def poll(after: str, got: dict[str, Any]) -> None:
                answer = http.get("/events", params={"after": after, "wait": 30})
                got["at"] = time.monotonic()
                got["body"] = answer.json()

            waiter = threading.Thread(target=poll, args=(last, got))
            waiter.start()
            time.sleep(0.5)
            api.world.cli("tasks", "add", "--customer", "Initech", "--owner", "alice@example.com",
                          "--due", "2030-01-01", "--title", f"Poll {n}")  # fmt: skip
            written = time.monotonic()
            waiter.join(10)
            delays.append(got["at"] - written)
            items = got["body"]["items"]
            assert [e["type"] for e in items] == ["task.created"]
            last = got["body"]["next_cursor"]
        assert max(delays) < 1.0, delays


def test_a_body_trickled_past_its_deadline_is_cut_off(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.api import app as app_module

    monkeypatch.setattr(app_module, "BODY_SECONDS", 1.0)
    with socket.create_connection(("127.0.0.1", api.server.port), timeout=10) as slow:
        slow.sendall(
            b"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {api.tokens['admin']}\r\n".encode()
            + b"Content-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        answer = slow.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert time.monotonic() - started < 5


def test_bounds_idle_connections_and_metrics(api: Api) -> None:
    host, port = "127.0.0.1", api.server.port
    idle = [socket.create_connection((host, port)) for _ in range(1000)]
    try:
        trickler = socket.create_connection((host, port))
        trickler.sendall(b"GET /api/v1/status HTTP/1.1\r\n")
        with api.client("reader") as http:
            started = time.monotonic()
            for _ in range(5):
                assert http.get("/status").status_code == 200
            assert time.monotonic() - started < 5
        time.sleep(1.5)  # past HEADER_SECONDS (1 s here): the slow headers are cut off
        trickler.settimeout(2)
        assert trickler.recv(100) == b""
        trickler.close()
    finally:
        for sock in idle:
            sock.close()
    assert httpx.get(api.server.url + "/api/v1/records/1").status_code == 401
    # Every accepted connection answers without Nagle's delay (a keep-alive answer is two
    # writes; without TCP_NODELAY the second waited ~40 ms for the client's delayed ACK).
    with socket.create_connection((host, port)):
        time.sleep(0.2)
        accepted = [c.transport.get_extra_info("socket") for c in api.server.connections]
        assert accepted
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in accepted)
    text = generate_latest(api.metrics.registry).decode()
    assert 'syncd_api_requests_total{method="GET",route="/api/v1/status",status="200"}' in text
    assert 'syncd_api_request_duration_seconds_bucket{le="0.1",route="/api/v1/status"}' in text
    assert 'method="GET",route="/api/v1/records/{record_id}",status="401"' in text


def test_openapi_document_and_docs_page(api: Api) -> None:
    with httpx.Client(base_url=api.server.url) as http:
        doc = http.get("/api/openapi.json").json()
        assert doc["openapi"].startswith("3.1")
        paths = set(doc["paths"])
        for path in ("/api/v1/records", "/api/v1/records/{record_id}",
                     "/api/v1/records/{record_id}/explain", "/api/v1/customers",
                     "/api/v1/customers/{customer}", "/api/v1/customers/{customer}/timeline",
                     "/api/v1/customers/{customer}/activity", "/api/v1/contacts", "/api/v1/tasks",
                     "/api/v1/tasks/{task_id}", "/api/v1/reconcile", "/api/v1/reconcile/assign",
                     "/api/v1/reconcile/create-customer", "/api/v1/reconcile/ignore",
                     "/api/v1/reports/responses", "/api/v1/events", "/api/v1/status"):  # fmt: skip
            assert path in paths, path
        assert set(doc["paths"]["/api/v1/records"]) == {"get", "post"}
        assert set(doc["paths"]["/api/v1/records/{record_id}"]) == {"get", "patch", "delete"}
        assert "Record" in doc["components"]["schemas"]
        page = http.get("/api/docs")
        assert page.status_code == 200 and "/api/openapi.json" in page.text


CALL = {"kind": "call", "owner": "alice@example.com", "customer": "Acme Corp",
        "contacts": ["wile@acme.com"], "occurred_at": "2024-06-05T10:00:00Z", "duration": "15m",
        "direction": "in", "outcome": "connected", "subject": "Renewal call",
        "body": "Asked for the licence renewal quote"}  # fmt: skip


def _audit(api: Api, action: str) -> list[dict[str, Any]]:
    return [row for row in api.cli_json("audit") if row["action"] == action]


def test_logged_records_through_the_api_are_the_cli_s(api: Api) -> None:
    w = api.world
    by_cli = api.cli_json(
        "records", "add", "--kind", "call", "--owner", "alice@example.com",
        "--customer", "Acme Corp", "--contact", "wile@acme.com", "--at", "2024-06-05T10:00:00Z",
        "--duration", "15m", "--direction", "in", "--outcome", "connected",
        "--subject", "Renewal call", "--body", "Asked for the licence renewal quote",
    )  # fmt: skip
    with api.client("writer") as http:
        assert http.get(f"/records/{by_cli['id']}").json() == by_cli
        created = http.post("/records", json={**CALL, "external_id": "pbx-1"})
        assert created.status_code == 201, created.text
        record = created.json()
        assert record == next(r for r in w.records() if r["id"] == record["id"])
        # The same record as the CLI's, but for its id, origin and external id.
        differ = {"id", "origin", "external_id"}
        assert {k: v for k, v in record.items() if k not in differ} == {
            k: v for k, v in by_cli.items() if k not in differ
        }
        assert (record["origin"], record["external_id"]) == ("api", "pbx-1")
        assert record["duration_seconds"] == 900 and record["direction"] == "inbound"
        # A retry (the same external id): the record logged before, with 200, no second one.
        again = http.post("/records", json={**CALL, "external_id": "pbx-1", "subject": "Retry"})
        assert again.status_code == 200 and again.json() == record
        assert sum(r.get("external_id") == "pbx-1" for r in w.records()) == 1
        assert _audit(api, "log-record")[0]["actor"] == "api:writer"

        # PATCH changes the fields given, nothing else.
        patched = http.patch(f"/records/{record['id']}",
                             json={"outcome": "voicemail", "duration_seconds": 60})  # fmt: skip
        assert patched.status_code == 200, patched.text
        assert patched.json() == {**record, "outcome": "voicemail", "duration_seconds": 60}
        assert patched.json() == next(r for r in w.records() if r["id"] == record["id"])
        edits = _audit(api, "edit-record")
        assert [e["actor"] for e in edits] == ["api:writer"]
        assert "duration_seconds" in json.dumps(edits[0]) and "outcome" in json.dumps(edits[0])
        # A note takes no duration, outcome or direction: a new kind drops them as the CLI's.
        note = http.patch(f"/records/{record['id']}", json={"kind": "note", "location": None})
        assert note.status_code == 200, note.text
        assert (note.json()["kind"], note.json()["direction"]) == ("note", "internal")
        assert note.json()["duration_seconds"] is None and note.json()["outcome"] is None
        unchanged = http.patch(f"/records/{record['id']}", json={"subject": "Renewal call"})
        assert unchanged.json() == note.json()

        # DELETE: 204, gone; a captured email stays (409, tested above).
        gone = http.delete(f"/records/{record['id']}")
        assert gone.status_code == 204 and gone.content == b""
        assert http.get(f"/records/{record['id']}").status_code == 404
        assert http.delete(f"/records/{record['id']}").status_code == 404
        assert _audit(api, "delete-record")[0]["actor"] == "api:writer"
    with api.client("reader") as reader:
        assert reader.post("/records", json=CALL).status_code == 403


def test_a_logged_record_with_problems_lists_every_bad_field(api: Api) -> None:
    with api.client("writer") as http:
        bad = http.post("/records", json={
            "kind": "visit", "owner": "not an address", "customer": "Nobody Inc",
            "duration": "forever", "outcome": "connected", "subject": "  ",
        })  # fmt: skip
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        fields = {e["field"] for e in bad.json()["errors"]}
        assert fields == {"body.owner", "body.customer", "body.duration", "body.outcome",
                          "body.subject"}, bad.json()  # fmt: skip
        # What only the database can tell (a forgotten person) is listed with the rest.
        api.world.cli("forget", "road.runner@acme.com", "--yes")
        store_bad = http.post("/records", json={**CALL, "contacts": ["road.runner@acme.com"],
                                                "customer": "Nobody Inc"})  # fmt: skip
        assert store_bad.status_code == 422
        assert {e["field"] for e in store_bad.json()["errors"]} == {
            "body.contacts",
            "body.customer",
        }, store_bad.json()
        assert "forgotten" in store_bad.json()["detail"]
        both = http.post("/records", json={**CALL, "duration_seconds": 60})
        assert both.status_code == 422
        assert [e["field"] for e in both.json()["errors"]] == ["body.duration"]
        assert http.post("/records", json={**CALL, "kind": "fax"}).status_code == 422
        # PATCH checks the same way, and writes nothing when anything is bad.
        record = http.post("/records", json=CALL).json()
        patch = http.patch(f"/records/{record['id']}",
                           json={"contacts": ["nope"], "subject": "", "owner": None})  # fmt: skip
        assert patch.status_code == 422
        assert {e["field"] for e in patch.json()["errors"]} == {
            "body.contacts",
            "body.subject",
            "body.owner",
        }
        assert http.get(f"/records/{record['id']}").json() == record
        assert not any(r["action"] == "edit-record" for r in api.cli_json("audit"))


def test_search_ranks_as_the_cli_with_filters_and_rep_tokens(api: Api) -> None:
    notes = [
        ("alice@example.com", "Acme Corp", "报价 follow-up", "关于报价的电话，客户要新的报价单"),
        ("alice@example.com", "Initech", "Initech 报价", "报价"),
        ("bob@example.com", "Acme Corp", "Bob's note", "报价 for Acme from Bob"),
    ]
    with api.client("writer") as http:
        for owner, customer, subject, body in notes:
            answer = http.post("/records", json={"kind": "note", "owner": owner,
                                                 "customer": customer, "subject": subject,
                                                 "body": body})  # fmt: skip
            assert answer.status_code == 201, answer.text
    with api.client("reader") as http:

        def found(**params: Any) -> list[dict[str, Any]]:
            answer = http.get("/records", params={"limit": 1000, **params})
            assert answer.status_code == 200, answer.text
            return list(answer.json()["items"])

        everything = found(q="报价")
        assert everything == api.cli_json("records", "search", "报价", "--limit", "1000")
        assert len(everything) == 3 and all(r["highlights"] for r in everything)
        assert all("报价" in "".join(r["highlights"]) for r in everything)
        assert [r["score"] for r in everything] == sorted(
            (r["score"] for r in everything), reverse=True
        )
        acme = found(q="报价", customer="Acme Corp")
        assert acme == api.cli_json("records", "search", "报价", "--customer", "Acme Corp")
        assert {r["subject"] for r in acme} == {"报价 follow-up", "Bob's note"}
        by_owner = found(q="报价", owner="bob@example.com")
        assert [r["subject"] for r in by_owner] == ["Bob's note"]
        assert by_owner == api.cli_json("records", "search", "报价", "--owner", "bob@example.com")
        assert found(q="报价", kind="email") == []
        assert found(q="报价", since="2100-01-01T00:00:00Z") == []
        assert len(found(q="报价", until="2100-01-01T00:00:00Z", kind=["note", "call"])) == 3
        assert found(q="quote", contact="wile@acme.com") == api.cli_json(
            "records", "search", "quote", "--contact", "wile@acme.com"
        )
        # Paged over the ranking: the pages put together are the ranking.
        first = http.get("/records", params={"q": "报价", "limit": 2}).json()
        rest = http.get("/records", params={"q": "报价", "limit": 2,
                                            "cursor": first["next_cursor"]}).json()  # fmt: skip
        assert first["items"] + rest["items"] == everything and rest["next_cursor"] is None
    # A rep token finds only its rep's records: logged by bob, or from his mailbox.
    with api.client("bob") as bob:
        mine = bob.get("/records", params={"q": "报价"}).json()["items"]
        assert [r["subject"] for r in mine] == ["Bob's note"]
        quotes = bob.get("/records", params={"q": "quote", "limit": 1000}).json()["items"]
        assert len(quotes) == 2
        assert all(s["mailbox"] == "bob" for r in quotes for s in r["sources"])
        assert bob.post("/records", json={**CALL, "owner": "alice@example.com"}).status_code == 403
        alices = next(r for r in everything if r["owner"] == "alice@example.com")
        assert bob.patch(f"/records/{alices['id']}", json={"subject": "x"}).status_code == 404
        assert bob.delete(f"/records/{alices['id']}").status_code == 404


def test_tasks_filter_by_type_and_carry_type_and_priority(api: Api) -> None:
    with api.client("writer") as http:
        for kind, priority in (("call", "high"), ("visit", "low"), ("todo", "normal")):
            answer = http.post("/tasks", json={"customer": "Acme Corp", "title": kind,
                                               "owner": "alice@example.com",
                                               "due_at": "2030-01-01", "type": kind,
                                               "priority": priority})  # fmt: skip
            assert answer.status_code == 201
        calls = http.get("/tasks", params={"type": "call"}).json()["items"]
        assert calls == api.cli_json("tasks", "list", "--type", "call")
        assert [(t["type"], t["priority"]) for t in calls] == [("call", "high")]
        # The event of a task added over HTTP says its type and priority too.
        events = http.get("/events", params={"type": "task.created", "limit": 1000}).json()
        assert {(e["data"]["type"], e["data"]["priority"]) for e in events["items"]} == {
            ("call", "high"),
            ("visit", "low"),
            ("todo", "normal"),
        }
