"""The published contract is exact: schemathesis, with every check, against the server's
own ``/openapi.json`` on a real ``vidgate serve`` (SQLite, a real API key): examples,
coverage and fuzzing of every operation, then stateful sequences along the schema's links
(submit → both status routes, cancel, webhook deliveries).

The server runs without a worker, so runs stay queued (a render would cost seconds of CPU
per generated submit), with long-polls held for 0 s, and webhook receivers and image hosts
on private addresses allowed: whether a URL resolves to a public address is a DNS question
no schema can answer (the only submit checks left out of the schema besides the moderation
policy, see :mod:`vidgate.runs.request_schema`). Finished runs' answers are checked against
the same schema by :func:`test_finished_runs_match_the_published_schema`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from tests.api_helpers import submit_ok, wait_terminal
from tests.servers import TEST_CONFIG, LiveServer, running_server
from vidgate.config import Settings
from vidgate.server.app import create_app

pytestmark = pytest.mark.timeout(170)

# A small image limit keeps the data URL pattern (its size bound is a bounded repeat) within
# what the generator follows; the schema is exact for any limit.
CONFIG = (
    TEST_CONFIG.replace("[limits]", "[limits]\nimage_max_bytes = 3072")
    + """
[server]
max_wait_s = 0

[webhooks]
allow_private_hosts = true

[models.testcard-image-video]
backend = "testcard"
text_to_video = false
image_to_video = true
options = { mode = "image", allow_private_hosts = true }
"""
)
MAX_EXAMPLES = 20
MODEL = "testcard-video"
STATEFUL_SCENARIOS = 20
# The schema this configuration serves, made as the server makes it (the test below checks
# that the server serves exactly this): pytest collects one test per operation from it.
OPENAPI = create_app(Settings.model_validate(tomllib.loads(CONFIG))).openapi()


def _config(**extra: Any) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "request-timeout": 10,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            # Only the links the schema declares (the event stream of a queued run would
            # not end, so no link leads to it).
            "phases": {"stateful": {"max-steps": 6, "inference": {"algorithms": []}}},
            **extra,
        }
    )


schema = schemathesis.openapi.from_dict(OPENAPI, config=_config())


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("contract") / "data"
    with running_server(data_dir, CONFIG, ["--no-worker"]) as server:
        yield server


def test_the_server_serves_this_schema(contract_server: LiveServer) -> None:
    served = httpx.get(f"{contract_server.base_url}/openapi.json", timeout=30).json()
    assert served == OPENAPI


@schema.parametrize()
def test_every_operation_answers_as_documented(case: Any, contract_server: LiveServer) -> None:
    case.call_and_validate(base_url=contract_server.base_url, headers=contract_server.headers())


def test_submit_status_and_cancel_sequences_answer_as_documented(
    contract_server: LiveServer,
) -> None:
    key = contract_server.api_key
    auth = {"apiKeyAuth": {"api_key": key}, "bearerAuth": {"bearer": key}}
    config = _config(**{"base-url": contract_server.base_url, "auth": {"openapi": auth}})
    stateful = schemathesis.openapi.from_dict(OPENAPI, config=config)
    reached: set[tuple[str, int]] = set()

    class Sequences(stateful.as_state_machine()):  # type: ignore[misc]
        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            reached.add((case.operation.label, response.status_code))

    Sequences.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
    # The links were followed: real runs were polled on both routes and cancelled.
    for label in (
        "GET /api/generate-video/status",
        "GET /api/video/status",
        "POST /api/generate-video/cancel",
        "GET /api/generate-video/webhooks",
    ):
        assert (label, 200) in reached, sorted(reached)


def _undeclared(value: Any, schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    """Fields of ``value`` its schema does not name (at any depth)."""
    for option in schema.get("anyOf", ()):
        if option.get("type") != "null":
            schema = {**schema, **option}
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    if not isinstance(value, dict):
        return []
    named = schema.get("properties", {})
    found = [name for name in value if name not in named]
    for name, item in value.items():
        if name in named:
            found += [f"{name}.{inner}" for inner in _undeclared(item, named[name], components)]
    return found


def test_finished_runs_match_the_published_schema(live_server: LiveServer) -> None:
    """Every outcome a run can have, as both status routes and cancel answer it: valid by
    the published schema, and every field it carries declared there."""
    served = httpx.get(f"{live_server.base_url}/openapi.json", timeout=30).json()
    published = schemathesis.openapi.from_dict(served)
    components = served["components"]["schemas"]
    runs = [submit_ok(live_server, prompt) for prompt in ("done", "sandbox:fail", "sandbox:nsfw")]
    runs.append(submit_ok(live_server, "sandbox:queue=60"))
    for run_id in runs[:3]:
        wait_terminal(live_server, run_id)
    key = live_server.headers()
    calls = [
        ("POST", "/api/generate-video/cancel", {"json": {"runId": runs[3]}}),
        *(("GET", "/api/video/status", {"params": {"requestId": r}}) for r in runs),
        *(
            ("GET", "/api/generate-video/status", {"params": {"runId": r, "modelSlug": MODEL}})
            for r in runs
        ),
    ]
    for method, path, kwargs in calls:
        response = httpx.request(method, f"{live_server.base_url}{path}", headers=key, **kwargs)
        assert response.status_code == 200, response.text
        published[path][method].validate_response(response)
        body_schema = served["paths"][path][method.lower()]["responses"]["200"]["content"]
        assert (
            _undeclared(response.json(), body_schema["application/json"]["schema"], components)
            == []
        ), (path, response.json())
