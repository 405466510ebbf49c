"""The push API against its own OpenAPI document: schemathesis generates valid and invalid requests
(bodies, headers, content types) for every operation of a real ingest process on the real broker;
no answer may be a 5xx, undocumented, or off its documented schema, and invalid input must be refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env

pytestmark = pytest.mark.integration
API_KEY = "schemathesis-key"


@pytest.fixture(scope="module")
def ingest_process(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    port = free_port()
    env = {**base_env, "EARFUL_INGEST_API_KEYS": f"fuzz:{API_KEY}", "EARFUL_INGEST_MAX_BATCH": "20"}
    svc = ServiceProcess("ingest", port, service_env(env, "ingest", port), tmp_path_factory.mktemp("logs") / "ingest.log")
    svc.start()
    svc.wait_ready(60)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_push_api_conforms_to_its_openapi_document(ingest_process: ServiceProcess, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(ingest_process.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert "POST /v1/mentions" in {op.label for op in operations}
    if mode == GenerationMode.NEGATIVE:  # only the push operation takes input that can be invalid
        operations = [op for op in operations if op.label == "POST /v1/mentions"]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=40 if operation.method.upper() == "POST" else 5, deadline=None,
                  suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            # Schema-valid mentions may still be refused by limits that depend on settings and the clock
            # (batch size, text length, a created_at in the future), so "valid must be accepted" is not checked.
            case.call_and_validate(headers={"X-API-Key": API_KEY}, excluded_checks=[positive_data_acceptance])

        check()
