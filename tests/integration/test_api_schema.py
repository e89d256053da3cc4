"""Property tests generated from the API's own OpenAPI document (schemathesis): requests
built from the schema, valid and not, never get a 5xx, and every answer matches the schema.

A modest number of examples per operation: the point is the schema and the handlers agree,
not a long fuzzing run (bench/hostile.py is where hostile input goes on for long)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from syncd.api.server import ApiServer
from syncd.config_file import load_config
from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

EXAMPLES = 8  # per operation


@pytest.fixture
def served(world: World) -> Iterator[tuple[str, str]]:
    world.rep("alice")
    world.write_config(extra='[api]\nlisten = "127.0.0.1:0"\nrate_limit = 100000')
    world.customers(CUSTOMERS_CSV)
    for n in range(3):
        world.deliver("alice", make_message(message_id=f"<s{n}@acme.com>", subject=f"Quote {n}"))
    world.cli("sync")
    token = json.loads(world.cli("tokens", "create", "fuzz", "--scope", "admin", "--json").stdout)
    server = ApiServer(load_config(world.config_path)).start()
    try:
        yield server.url, token["token"]
    finally:
        server.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_5xx_and_every_answer_matches_the_schema(served: tuple[str, str]) -> None:
    url, token = served
    document = httpx.get(url + "/api/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {token}"}
    checked = 0
    http = httpx.Client(timeout=30)
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            if case.query is not None and "wait" in case.query:
                case.query["wait"] = 0  # a long poll proves nothing more here than a short one
            # Sent with httpx: schemathesis's own transport (requests) trips over the
            # urllib3 replacement another dependency installs.
            kwargs = case.as_transport_kwargs(base_url=url, headers=headers)
            if "data" in kwargs:
                data = kwargs.pop("data")
                kwargs["content" if isinstance(data, bytes | str) else "data"] = data
            kwargs.pop("cookies", None)
            response = http.request(**kwargs)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

        check()
        checked += 1
    http.close()
    assert checked >= 20  # every operation of the contract was generated against
