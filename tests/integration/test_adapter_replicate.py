"""The Replicate adapter against the Replicate emulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.adapter_helpers import decoded_frames, poll_until_terminal, read_all, read_chunks
from tests.emulators.harness import Fault, LoopbackServer
from tests.emulators.replicate import API_KEY, ReplicateState, create_app
from vidgate.backends import replicate
from vidgate.backends.base import (
    EXPIRED_FRIENDLY,
    FAILED_FRIENDLY,
    NSFW_FRIENDLY,
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUnavailable,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

MODEL = "kwaivgi/kling-v2.1"


@pytest.fixture
def state() -> ReplicateState:
    return ReplicateState(queue_s=0.15, run_s=0.2)


@pytest.fixture
def server(state: ReplicateState) -> Iterator[LoopbackServer]:
    with LoopbackServer(create_app(state)) as running:
        yield running


def make_settings(server: LoopbackServer, **overrides: object) -> ProviderSettings:
    values: dict[str, object] = {
        "name": "replicate",
        "base_url": server.base_url,
        "api_key": API_KEY,
        "timeout_s": 2.0,
    }
    values.update(overrides)
    return ProviderSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def backend(http: httpx.AsyncClient, server: LoopbackServer) -> replicate.ReplicateBackend:
    return replicate.build(http, make_settings(server))


def request(
    prompt: str | None = "a red fox running through snow", **kw: object
) -> GenerationRequest:
    return GenerationRequest(model="kling", prompt=prompt, **kw)  # type: ignore[arg-type]


async def test_success_polls_to_completed_and_streams_a_real_mp4(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    job = await backend.submit(
        request(duration_s=5.0, aspect_ratio="9:16", image_url="https://example.com/cat.png"),
        MODEL,
        {"input": {"cfg_scale": 0.5}, "rename": {"image": "start_image"}},
    )

    updates = await poll_until_terminal(backend, job)

    final = updates[-1]
    assert final.status is Status.COMPLETED
    assert final.provider_status == "succeeded"
    assert final.progress == 100.0
    chunks = await read_chunks(backend, job, final.output_urls[0])
    assert len(chunks) >= 1
    data = b"".join(chunks)
    assert decoded_frames(data) == 8
    assert state.submits == 1
    assert state.submit_bodies == [
        {
            "input": {
                "prompt": "a red fox running through snow",
                "duration": 5,
                "aspect_ratio": "9:16",
                "start_image": "https://example.com/cat.png",
                "cfg_scale": 0.5,
            }
        }
    ]
    assert state.job(job.request_id).model == MODEL
    assert "prefer" not in state.submit_headers[0]  # async mode: never hold the request open


async def test_starting_then_processing_with_progress_from_the_logs(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    state.queue_s, state.run_s = 0.25, 0.4
    job = await backend.submit(request(), MODEL, {})

    updates = await poll_until_terminal(backend, job)

    statuses = [u.status for u in updates]
    assert statuses[0] is Status.IN_QUEUE
    assert updates[0].provider_status == "starting"
    assert Status.IN_PROGRESS in statuses
    assert statuses[-1] is Status.COMPLETED
    progress = [u.progress for u in updates if u.status is Status.IN_PROGRESS]
    assert all(p is not None and 0 <= p <= 100 for p in progress)
    assert progress == sorted(progress)  # type: ignore[type-var]
    assert max(progress) > 0  # type: ignore[type-var]


async def test_pinned_versions_and_deployments_use_their_endpoints(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    pinned = await backend.submit(request(), f"{MODEL}:5c7d5dc6dd8bf75c1acaa8565735e7986", {})
    option = await backend.submit(request(), MODEL, {"version": "abc123"})
    deployed = await backend.submit(request(), MODEL, {"deployment": "acme/kling-prod"})

    assert state.job(pinned.request_id).version == "5c7d5dc6dd8bf75c1acaa8565735e7986"
    assert state.submit_bodies[0]["version"] == "5c7d5dc6dd8bf75c1acaa8565735e7986"
    assert state.submit_bodies[1]["version"] == "abc123"
    assert state.job(option.request_id).model is None
    assert state.job(deployed.request_id).model == "acme/kling-prod"
    assert (await poll_until_terminal(backend, deployed))[-1].status is Status.COMPLETED


async def test_generic_failure_keeps_the_provider_detail(
    backend: replicate.ReplicateBackend,
) -> None:
    job = await backend.submit(request("make it explode"), MODEL, {})

    final = (await poll_until_terminal(backend, job))[-1]

    assert final.status is Status.FAILED
    assert final.provider_status == "failed"
    assert not final.is_nsfw
    assert final.error is not None and "the model exploded" in final.error
    assert final.user_friendly_error == FAILED_FRIENDLY


async def test_content_policy_refusal_is_nsfw(backend: replicate.ReplicateBackend) -> None:
    job = await backend.submit(request("something forbidden"), MODEL, {})

    final = (await poll_until_terminal(backend, job))[-1]

    assert final.status is Status.FAILED
    assert final.is_nsfw
    assert final.error is not None and "E005" in final.error
    assert final.user_friendly_error == NSFW_FRIENDLY


async def test_a_deadline_passed_before_start_is_aborted_and_failed(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    state.queue_s = 5.0
    job = await backend.submit(request(), MODEL, {"cancel_after": "0.1s"})

    final = (await poll_until_terminal(backend, job))[-1]

    assert state.submit_headers[0]["cancel-after"] == "0.1s"
    assert final.status is Status.FAILED
    assert final.provider_status == "aborted"
    assert final.user_friendly_error == replicate.ABORTED_FRIENDLY


async def test_429_with_retry_after_is_unavailable_with_the_delay(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    throttled = {"title": "Request was throttled", "detail": "Expected available in 7 seconds."}
    state.faults.push("submit", Fault(status=429, headers={"Retry-After": "7"}, body=throttled))
    with pytest.raises(ProviderUnavailable, match="throttled") as submit_error:
        await backend.submit(request(), MODEL, {})
    assert submit_error.value.retry_after_s == 7.0
    assert state.submits == 0

    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(status=429, headers={"Retry-After": "3"}))
    with pytest.raises(ProviderUnavailable) as poll_error:
        await backend.poll(job)
    assert poll_error.value.retry_after_s == 3.0


async def test_5xx_is_unavailable_and_the_next_poll_recovers(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    state.faults.push("submit", Fault(status=502))
    with pytest.raises(ProviderUnavailable):
        await backend.submit(request(), MODEL, {})
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(status=503))
    with pytest.raises(ProviderUnavailable) as error:
        await backend.poll(job)
    assert error.value.retry_after_s is None
    assert (await poll_until_terminal(backend, job))[-1].status is Status.COMPLETED


async def test_timeout_is_unavailable(
    http: httpx.AsyncClient, server: LoopbackServer, state: ReplicateState
) -> None:
    backend = replicate.build(http, make_settings(server, timeout_s=0.2))
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(kind="delay", delay_s=0.6))
    with pytest.raises(ProviderUnavailable, match="no answer within"):
        await backend.poll(job)


async def test_malformed_json_is_unavailable(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable, match="not a JSON object"):
        await backend.poll(job)
    state.faults.push("submit", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable):
        await backend.submit(request(), MODEL, {})


async def test_dropped_connection_is_unavailable(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await backend.poll(job)
    assert (await backend.poll(job)).status in (Status.IN_QUEUE, Status.IN_PROGRESS)


async def test_download_faults_are_unavailable(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    url = (await poll_until_terminal(backend, job))[-1].output_urls[0]
    state.faults.push("download", Fault(status=503, headers={"Retry-After": "2"}))
    with pytest.raises(ProviderUnavailable) as error:
        await read_all(backend, job, url)
    assert error.value.retry_after_s == 2.0
    state.faults.push("download", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await read_all(backend, job, url)
    data = await read_all(backend, job, url)
    assert decoded_frames(data) == 8


async def test_output_url_gone_after_ttl_is_generation_failed(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    state.output_ttl_s = 0.1
    job = await backend.submit(request(), MODEL, {})
    url = (await poll_until_terminal(backend, job))[-1].output_urls[0]
    await asyncio.sleep(0.2)

    with pytest.raises(GenerationFailed, match="HTTP 404") as error:
        await read_all(backend, job, url)
    assert error.value.user_friendly == EXPIRED_FRIENDLY
    late = await backend.poll(job)  # the prediction itself has lost its data by now
    assert late.status is Status.FAILED
    assert late.error is not None and "data was removed" in late.error


async def test_cancel_reaches_the_provider_and_poll_reports_cancelled(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    state.queue_s = 5.0
    job = await backend.submit(request(), MODEL, {})

    await backend.cancel(job)

    assert state.job(job.request_id).canceled_at is not None
    update = await backend.poll(job)
    assert update.status is Status.CANCELLED
    assert update.provider_status == "canceled"
    await backend.cancel(job)  # cancelling a finished prediction is fine
    assert state.counters["cancel"] == 2


async def test_cancel_of_an_unknown_prediction_is_fine_and_faults_are_unavailable(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    await backend.cancel(ProviderJob(request_id="nosuchprediction"))
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("cancel", Fault(status=500))
    with pytest.raises(ProviderUnavailable):
        await backend.cancel(job)


async def test_unknown_status_is_in_progress(
    backend: replicate.ReplicateBackend, state: ReplicateState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.status_override = "booting"
    update = await backend.poll(job)
    assert update.status is Status.IN_PROGRESS
    assert update.provider_status == "booting"


async def test_submit_rejections_are_generation_failed(
    http: httpx.AsyncClient, server: LoopbackServer, state: ReplicateState
) -> None:
    wrong = replicate.build(http, make_settings(server, api_key="r8_wrongToken987654321"))
    with pytest.raises(GenerationFailed, match="Unauthenticated") as unauthorised:
        await wrong.submit(request(), MODEL, {})
    assert "r8_wrongToken987654321" not in str(unauthorised.value)

    backend = replicate.build(http, make_settings(server))
    with pytest.raises(GenerationFailed, match="HTTP 422") as invalid:
        await backend.submit(request(prompt=None), MODEL, {})
    assert not invalid.value.is_nsfw
    assert invalid.value.user_friendly is not None
    assert "prompt is required" in invalid.value.user_friendly
    assert state.submits == 0


def test_progress_is_the_last_tqdm_percentage_in_the_logs() -> None:
    logs = "loading\n  0%|          | 0/50\n 40%|####      | 20/50\n 86%|########6 | 43/50\n"
    assert replicate.log_progress(logs) == 86.0
    assert replicate.log_progress("no bars here") is None
    assert replicate.log_progress(None) is None


def test_output_urls_come_from_strings_lists_and_dicts() -> None:
    assert replicate.output_urls("https://replicate.delivery/a.mp4") == (
        "https://replicate.delivery/a.mp4",
    )
    assert replicate.output_urls(["https://x/1", "https://x/1", "https://x/2"]) == (
        "https://x/1",
        "https://x/2",
    )
    assert replicate.output_urls({"video": "https://x/v", "seed": 3}) == ("https://x/v",)
    assert replicate.output_urls(None) == ()
