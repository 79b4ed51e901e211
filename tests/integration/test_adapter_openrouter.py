"""The OpenRouter video adapter against the OpenRouter emulator over real loopback HTTP (the
shared contract is in test_adapter_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.adapter_helpers import decoded_frames, poll_until_terminal, read_all
from tests.emulators.harness import Fault, LoopbackServer
from tests.emulators.openrouter import API_KEY, COST_USD, OpenRouterState, create_app
from vidgate.backends import openrouter
from vidgate.backends.base import (
    EXPIRED_FRIENDLY,
    NSFW_FRIENDLY,
    GenerationFailed,
    ProviderSettings,
    ProviderUnavailable,
    SubmitOutcomeUnknown,
    SubmitRefused,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

MODEL = "google/veo-3.1"


@pytest.fixture
def state() -> OpenRouterState:
    return OpenRouterState(queue_s=0.08, run_s=0.1)


@pytest.fixture
def server(state: OpenRouterState) -> Iterator[LoopbackServer]:
    with LoopbackServer(create_app(state)) as running:
        yield running


def make_backend(
    http: httpx.AsyncClient, server: LoopbackServer, **overrides: object
) -> openrouter.OpenRouterBackend:
    values: dict[str, object] = {
        "name": "openrouter",
        "base_url": f"{server.base_url}/api",
        "api_key": API_KEY,
        "timeout_s": 2.0,
    }
    values.update(overrides)
    return openrouter.build(http, ProviderSettings(**values))  # type: ignore[arg-type]


@pytest.fixture
def backend(http: httpx.AsyncClient, server: LoopbackServer) -> openrouter.OpenRouterBackend:
    return make_backend(http, server)


def request(prompt: str = "a red fox running through snow", **kw: object) -> GenerationRequest:
    return GenerationRequest(model="veo-3.1", prompt=prompt, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("absolute", "signed"),
    [(False, False), (True, True)],
    ids=["relative-polling-unsigned-url", "absolute-polling-signed-url"],
)
async def test_success_maps_the_body_polls_to_completed_and_records_the_cost(
    backend: openrouter.OpenRouterBackend, state: OpenRouterState, signed: bool, absolute: bool
) -> None:
    state.signed_urls, state.absolute_polling_url = signed, absolute
    job = await backend.submit(
        request(
            duration_s=8.0,
            resolution="720p",
            aspect_ratio="16:9",
            seed=7,
            image_url="https://example.com/first.png",
        ),
        MODEL,
        {"input": {"generate_audio": False}},
    )
    updates = await poll_until_terminal(backend, job)
    assert updates[0].provider_status == "pending"
    assert "in_progress" in [u.provider_status for u in updates]
    final = updates[-1]
    assert final.status is Status.COMPLETED and final.provider_cost_usd == COST_USD
    (url,) = final.output_urls
    assert ("/signed/" in url) is signed
    assert decoded_frames(await read_all(backend, job, url)) == 8
    (body,) = state.submit_bodies
    assert body == {
        "model": MODEL,
        "prompt": "a red fox running through snow",
        "duration": 8,
        "resolution": "720p",
        "aspect_ratio": "16:9",
        "seed": 7,
        "frame_images": [
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/first.png"},
                "frame_type": "first_frame",
            }
        ],
        "generate_audio": False,
    }


@pytest.mark.parametrize(
    ("prompt", "status", "nsfw", "friendly"),
    [
        ("explode please", "failed", False, None),
        ("something forbidden", "failed", True, NSFW_FRIENDLY),
        ("the job-expires", "expired", False, EXPIRED_FRIENDLY),
    ],
    ids=["failure", "content-policy", "expired"],
)
async def test_failures_are_failed_with_the_provider_detail(
    backend: openrouter.OpenRouterBackend,
    prompt: str,
    status: str,
    nsfw: bool,
    friendly: str | None,
) -> None:
    job = await backend.submit(request(prompt), MODEL, {})
    final = (await poll_until_terminal(backend, job))[-1]
    assert final.status is Status.FAILED and final.provider_status == status
    assert final.is_nsfw is nsfw and final.error
    if friendly is not None:
        assert final.user_friendly_error == friendly


async def test_a_job_cancelled_at_openrouter_is_cancelled(
    backend: openrouter.OpenRouterBackend, state: OpenRouterState
) -> None:
    job = await backend.submit(request("the job-cancelled"), MODEL, {})
    final = (await poll_until_terminal(backend, job))[-1]
    assert final.status is Status.CANCELLED and final.provider_status == "cancelled"
    polls = state.counters["status"]
    await backend.cancel(job)  # none is documented: nothing is asked, nothing raised
    assert state.counters["status"] == polls and state.submits == 1


async def test_submit_refusals_content_policy_credit_and_key(
    http: httpx.AsyncClient, server: LoopbackServer, state: OpenRouterState
) -> None:
    backend = make_backend(http, server)
    state.moderate_at_submit = True
    with pytest.raises(GenerationFailed) as policy:
        await backend.submit(request("something forbidden"), MODEL, {})
    assert policy.value.is_nsfw and "content policy" in str(policy.value)
    state.moderate_at_submit, state.out_of_credit = False, True
    with pytest.raises(GenerationFailed, match="HTTP 402: Insufficient credits") as credit:
        await backend.submit(request(), MODEL, {})
    assert not credit.value.is_nsfw and type(credit.value) is GenerationFailed
    with pytest.raises(SubmitRefused, match="refused our API key"):
        await make_backend(http, server, api_key="sk-or-v1-wrong").submit(request(), MODEL, {})
    assert state.submits == 0


async def test_poll_faults_are_passing_and_the_job_completes(
    backend: openrouter.OpenRouterBackend, state: OpenRouterState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    for fault in (
        Fault(status=429),
        Fault(status=502),
        Fault(kind="malformed"),
        Fault(kind="drop"),
    ):
        state.faults.push("status", fault)
        with pytest.raises(ProviderUnavailable):
            await backend.poll(job)
    assert (await poll_until_terminal(backend, job))[-1].status is Status.COMPLETED
    assert state.submits == 1


async def test_a_lost_submit_answer_is_outcome_unknown_after_the_job_was_made(
    backend: openrouter.OpenRouterBackend, state: OpenRouterState
) -> None:
    state.faults.push("submit_response", Fault(kind="drop"))
    with pytest.raises(SubmitOutcomeUnknown):
        await backend.submit(request(), MODEL, {})
    assert state.submits == 1


async def test_a_polling_url_off_the_origin_is_not_followed(
    backend: openrouter.OpenRouterBackend, state: OpenRouterState, server: LoopbackServer
) -> None:
    state.faults.push(
        "submit_response",
        Fault(status=202, body={"id": "vgen-x", "polling_url": "https://elsewhere.example/x"}),
    )
    job = await backend.submit(request(), MODEL, {})
    assert job.state["polling_url"] == f"{server.base_url}/api/v1/videos/vgen-x"
