"""Schemathesis fuzzes the published OpenAPI schema against a real server: no 5xx, no schema violations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(Path(tmp_path_factory.mktemp("fuzz")) / "state")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ServerProcess):  # noqa: ANN201
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_every_request_without_5xx_or_schema_violations(case, fuzz_server):  # noqa: ANN001
    case.call_and_validate(headers=fuzz_server.auth)  # as a client of this home (its local token)
