"""The fal adapter against the fal emulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.adapter_helpers import decoded_frames, poll_until_terminal, read_all, read_chunks
from tests.emulators.fal import API_KEY, FalState, create_app
from tests.emulators.harness import Fault, LoopbackServer
from vidgate.backends import fal
from vidgate.backends.base import (
    EXPIRED_FRIENDLY,
    NSFW_FRIENDLY,
    GenerationFailed,
    ProviderSettings,
    ProviderUnavailable,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

MODEL = "fal-ai/kling-video/v2.1/standard/text-to-video"


@pytest.fixture
def state() -> FalState:
    return FalState(queue_s=0.15, run_s=0.2)


@pytest.fixture
def server(state: FalState) -> Iterator[LoopbackServer]:
    with LoopbackServer(create_app(state)) as running:
        yield running


def make_settings(server: LoopbackServer, **overrides: object) -> ProviderSettings:
    values: dict[str, object] = {
        "name": "fal",
        "base_url": server.base_url,
        "api_key": API_KEY,
        "timeout_s": 2.0,
    }
    values.update(overrides)
    return ProviderSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def backend(http: httpx.AsyncClient, server: LoopbackServer) -> fal.FalBackend:
    return fal.build(http, make_settings(server))


def request(prompt: str = "a red fox running through snow", **kw: object) -> GenerationRequest:
    return GenerationRequest(model="kling", prompt=prompt, **kw)  # type: ignore[arg-type]


async def test_success_polls_to_completed_and_streams_a_real_mp4(
    backend: fal.FalBackend, state: FalState
) -> None:
    job = await backend.submit(
        request(duration_s=5.0, aspect_ratio="16:9", seed=7, extra={"cfg_scale": 0.4}),
        MODEL,
        {"input": {"enable_safety_checker": True}},
    )

    updates = await poll_until_terminal(backend, job)

    final = updates[-1]
    assert final.status is Status.COMPLETED
    assert final.progress == 100.0
    assert len(final.output_urls) == 1
    chunks = await read_chunks(backend, job, final.output_urls[0])
    assert len(chunks) >= 1
    data = b"".join(chunks)
    assert decoded_frames(data) == 8
    assert state.submits == 1
    assert state.submit_bodies == [
        {
            "prompt": "a red fox running through snow",
            "duration": "5",
            "aspect_ratio": "16:9",
            "seed": 7,
            "cfg_scale": 0.4,
            "enable_safety_checker": True,
        }
    ]
    # The status/result/cancel URLs carry owner/app only, as fal's do.
    assert job.state["status_url"].endswith(f"/fal-ai/kling-video/requests/{job.request_id}/status")


async def test_queue_position_then_in_progress_are_reported(
    backend: fal.FalBackend, state: FalState
) -> None:
    state.queue_s, state.run_s = 0.3, 0.3
    job = await backend.submit(request(), MODEL, {})

    updates = await poll_until_terminal(backend, job)

    statuses = [u.status for u in updates]
    assert statuses[0] is Status.IN_QUEUE
    assert Status.IN_PROGRESS in statuses
    assert statuses[-1] is Status.COMPLETED
    assert statuses.index(Status.IN_PROGRESS) > statuses.index(Status.IN_QUEUE)
    positions = [u.queue_position for u in updates if u.status is Status.IN_QUEUE]
    assert all(isinstance(p, int) and 0 <= p < state.queue_depth for p in positions)
    assert {u.provider_status for u in updates} == {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}


async def test_generic_failure_keeps_the_provider_detail(backend: fal.FalBackend) -> None:
    job = await backend.submit(request("make it explode"), MODEL, {})

    final = (await poll_until_terminal(backend, job))[-1]

    assert final.status is Status.FAILED
    assert not final.is_nsfw
    assert final.error is not None and "internal_server_error" in final.error
    assert "exploded" in final.error
    assert final.user_friendly_error


async def test_content_policy_refusal_is_nsfw(backend: fal.FalBackend) -> None:
    job = await backend.submit(request("something forbidden"), MODEL, {})

    final = (await poll_until_terminal(backend, job))[-1]

    assert final.status is Status.FAILED
    assert final.is_nsfw
    assert final.error is not None and "content_policy_violation" in final.error
    assert final.user_friendly_error == NSFW_FRIENDLY


async def test_429_with_retry_after_is_unavailable_with_the_delay(
    backend: fal.FalBackend, state: FalState
) -> None:
    state.faults.push("submit", Fault(status=429, headers={"Retry-After": "7"}))
    with pytest.raises(ProviderUnavailable) as submit_error:
        await backend.submit(request(), MODEL, {})
    assert submit_error.value.retry_after_s == 7.0
    assert state.submits == 0

    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(status=429, headers={"Retry-After": "3"}))
    with pytest.raises(ProviderUnavailable) as poll_error:
        await backend.poll(job)
    assert poll_error.value.retry_after_s == 3.0


async def test_5xx_is_unavailable_and_the_next_poll_recovers(
    backend: fal.FalBackend, state: FalState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(status=503))
    with pytest.raises(ProviderUnavailable) as error:
        await backend.poll(job)
    assert error.value.retry_after_s is None
    assert (await poll_until_terminal(backend, job))[-1].status is Status.COMPLETED


async def test_a_fault_fetching_the_result_is_unavailable_not_a_failure(
    backend: fal.FalBackend, state: FalState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    await asyncio.sleep(state.queue_s + state.run_s + 0.05)
    state.faults.push("result", Fault(status=502))
    with pytest.raises(ProviderUnavailable):
        await backend.poll(job)
    assert (await backend.poll(job)).status is Status.COMPLETED


async def test_submit_5xx_is_unavailable(backend: fal.FalBackend, state: FalState) -> None:
    state.faults.push("submit", Fault(status=500))
    with pytest.raises(ProviderUnavailable):
        await backend.submit(request(), MODEL, {})


async def test_timeout_is_unavailable(
    http: httpx.AsyncClient, server: LoopbackServer, state: FalState
) -> None:
    backend = fal.build(http, make_settings(server, timeout_s=0.2))
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(kind="delay", delay_s=0.6))
    with pytest.raises(ProviderUnavailable, match="no answer within"):
        await backend.poll(job)


async def test_malformed_json_is_unavailable(backend: fal.FalBackend, state: FalState) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable, match="not a JSON object"):
        await backend.poll(job)
    state.faults.push("submit", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable):
        await backend.submit(request(), MODEL, {})


async def test_dropped_connection_is_unavailable(backend: fal.FalBackend, state: FalState) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await backend.poll(job)
    assert (await backend.poll(job)).status in (Status.IN_QUEUE, Status.IN_PROGRESS)


async def test_download_faults_are_unavailable(backend: fal.FalBackend, state: FalState) -> None:
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
    backend: fal.FalBackend, state: FalState
) -> None:
    state.output_ttl_s = 0.1
    job = await backend.submit(request(), MODEL, {})
    url = (await poll_until_terminal(backend, job))[-1].output_urls[0]
    await asyncio.sleep(0.2)
    with pytest.raises(GenerationFailed, match="HTTP 404") as error:
        await read_all(backend, job, url)
    assert error.value.user_friendly == EXPIRED_FRIENDLY


async def test_cancel_reaches_the_provider_and_poll_reports_cancelled(
    backend: fal.FalBackend, state: FalState
) -> None:
    state.queue_s = 5.0
    job = await backend.submit(request(), MODEL, {})

    await backend.cancel(job)

    assert state.job(job.request_id).cancelled_at is not None
    update = await backend.poll(job)
    assert update.status is Status.CANCELLED
    await backend.cancel(job)  # ALREADY_COMPLETED is swallowed
    assert state.counters["cancel"] == 2


async def test_cancel_after_completion_is_fine(backend: fal.FalBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    await poll_until_terminal(backend, job)
    await backend.cancel(job)
    assert (await backend.poll(job)).status is Status.COMPLETED


async def test_cancel_fault_is_unavailable(backend: fal.FalBackend, state: FalState) -> None:
    state.queue_s = 5.0
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("cancel", Fault(status=503))
    with pytest.raises(ProviderUnavailable):
        await backend.cancel(job)


async def test_unknown_status_is_in_progress(backend: fal.FalBackend, state: FalState) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.status_override = "WARMING_UP"
    update = await backend.poll(job)
    assert update.status is Status.IN_PROGRESS
    assert update.provider_status == "WARMING_UP"


async def test_submit_rejections_are_generation_failed(
    http: httpx.AsyncClient, server: LoopbackServer, state: FalState
) -> None:
    wrong = fal.build(http, make_settings(server, api_key="fal-wrong-key-987654321"))
    with pytest.raises(GenerationFailed, match="HTTP 401") as unauthorised:
        await wrong.submit(request(), MODEL, {})
    assert "fal-wrong-key-987654321" not in str(unauthorised.value)

    backend = fal.build(http, make_settings(server))
    state.faults.push(
        "submit",
        Fault(
            status=422,
            body={
                "detail": [
                    {
                        "loc": ["body", "duration"],
                        "msg": "Input should be '5' or '10'",
                        "type": "one_of",
                    }
                ]
            },
        ),
    )
    with pytest.raises(GenerationFailed) as invalid:
        await backend.submit(request(), MODEL, {})
    assert not invalid.value.is_nsfw
    assert "one_of" in str(invalid.value)
    assert invalid.value.user_friendly is not None and "'5' or '10'" in invalid.value.user_friendly

    state.faults.push(
        "submit",
        Fault(
            status=422,
            body={
                "detail": [
                    {
                        "loc": ["body", "prompt"],
                        "msg": "flagged",
                        "type": "content_policy_violation",
                    }
                ]
            },
        ),
    )
    with pytest.raises(GenerationFailed) as refused:
        await backend.submit(request(), MODEL, {})
    assert refused.value.is_nsfw
    assert state.submits == 0


def test_video_urls_are_found_in_the_usual_result_shapes() -> None:
    assert fal.find_video_urls({"video": {"url": "https://v3.fal.media/a.mp4"}}) == (
        "https://v3.fal.media/a.mp4",
    )
    assert fal.find_video_urls({"videos": [{"url": "https://x/1"}, {"url": "https://x/2"}]}) == (
        "https://x/1",
        "https://x/2",
    )
    nested = {"data": {"clip": {"url": "https://x/c", "content_type": "video/mp4"}}}
    assert fal.find_video_urls(nested) == ("https://x/c",)
    assert fal.find_video_urls({"images": [{"url": "https://x/i.png"}]}) == ()
