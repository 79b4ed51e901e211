"""The OpenAI Videos adapter against the OpenAI emulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.adapter_helpers import decoded_frames, poll_until_terminal, read_all, read_chunks
from tests.emulators.harness import Fault, LoopbackServer
from tests.emulators.openai import API_KEY, OpenAIState, create_app
from vidgate.backends import openai
from vidgate.backends.base import (
    EXPIRED_FRIENDLY,
    FAILED_FRIENDLY,
    NSFW_FRIENDLY,
    GenerationFailed,
    ProviderSettings,
    ProviderUnavailable,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

MODEL = "sora-2"


@pytest.fixture
def state() -> OpenAIState:
    return OpenAIState(queue_s=0.15, run_s=0.2)


@pytest.fixture
def server(state: OpenAIState) -> Iterator[LoopbackServer]:
    with LoopbackServer(create_app(state)) as running:
        yield running


def make_settings(server: LoopbackServer, **overrides: object) -> ProviderSettings:
    values: dict[str, object] = {
        "name": "openai",
        "base_url": server.base_url,
        "api_key": API_KEY,
        "timeout_s": 2.0,
    }
    values.update(overrides)
    return ProviderSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def backend(http: httpx.AsyncClient, server: LoopbackServer) -> openai.OpenAIVideosBackend:
    return openai.build(http, make_settings(server))


def request(
    prompt: str | None = "a red fox running through snow", **kw: object
) -> GenerationRequest:
    return GenerationRequest(model="sora", prompt=prompt, **kw)  # type: ignore[arg-type]


async def test_success_polls_to_completed_and_streams_a_real_mp4_with_the_key(
    backend: openai.OpenAIVideosBackend, state: OpenAIState, server: LoopbackServer
) -> None:
    job = await backend.submit(
        request(
            duration_s=6.0,
            aspect_ratio="16:9",
            negative_prompt="blur",
            seed=3,
            image_data_url="data:image/png;base64,iVBORw0KGgo=",
        ),
        MODEL,
        {"input": {"model": "sora-2-pro"}},
    )

    updates = await poll_until_terminal(backend, job)

    final = updates[-1]
    assert final.status is Status.COMPLETED
    assert final.output_urls == (f"{server.base_url}/v1/videos/{job.request_id}/content",)
    chunks = await read_chunks(backend, job, final.output_urls[0])
    assert len(chunks) >= 1
    data = b"".join(chunks)
    assert decoded_frames(data) == 8
    assert state.job(job.request_id).downloads == 1
    assert state.submits == 1
    assert state.submit_bodies == [
        {
            "model": "sora-2-pro",
            "prompt": "a red fox running through snow",
            "seconds": "8",
            "size": "1280x720",
            "input_reference": {"image_url": "data:image/png;base64,iVBORw0KGgo="},
        }
    ]


async def test_queued_then_in_progress_with_progress_and_a_poll_hint(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    state.queue_s, state.run_s, state.poll_after_ms = 0.25, 0.4, 1500
    job = await backend.submit(request(), MODEL, {})

    updates = await poll_until_terminal(backend, job)

    statuses = [u.status for u in updates]
    assert statuses[0] is Status.IN_QUEUE
    assert updates[0].retry_after_s == 1.5
    assert Status.IN_PROGRESS in statuses
    assert statuses[-1] is Status.COMPLETED
    progress = [u.progress for u in updates if u.status is Status.IN_PROGRESS]
    assert all(p is not None and 0 <= p < 100 for p in progress)
    assert progress == sorted(progress)  # type: ignore[type-var]
    assert max(progress) > 0  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("duration_s", "aspect_ratio", "resolution", "seconds", "size"),
    [
        (3.0, "9:16", None, "4", "720x1280"),
        (12.0, "16:9", "1080p", "12", "1792x1024"),
        (30.0, None, "1024x1792", "12", "1024x1792"),
        (None, "1:1", None, None, None),
    ],
)
def test_duration_and_size_mapping(
    duration_s: float | None,
    aspect_ratio: str | None,
    resolution: str | None,
    seconds: str | None,
    size: str | None,
) -> None:
    body = openai.build_body(
        request(duration_s=duration_s, aspect_ratio=aspect_ratio, resolution=resolution),
        MODEL,
        {},
    )
    assert body.get("seconds") == seconds
    assert body.get("size") == size


async def test_generic_failure_keeps_the_provider_detail(
    backend: openai.OpenAIVideosBackend,
) -> None:
    job = await backend.submit(request("make it explode"), MODEL, {})

    final = (await poll_until_terminal(backend, job))[-1]

    assert final.status is Status.FAILED
    assert not final.is_nsfw
    assert final.error is not None and "internal_error" in final.error
    assert "exploded" in final.error
    assert final.user_friendly_error == FAILED_FRIENDLY


async def test_moderation_refusal_while_generating_is_nsfw(
    backend: openai.OpenAIVideosBackend,
) -> None:
    job = await backend.submit(request("something forbidden"), MODEL, {})

    final = (await poll_until_terminal(backend, job))[-1]

    assert final.status is Status.FAILED
    assert final.is_nsfw
    assert final.error is not None and "moderation_blocked" in final.error
    assert final.user_friendly_error == NSFW_FRIENDLY


async def test_moderation_refusal_at_submit_is_nsfw_generation_failed(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    state.moderate_at_submit = True
    with pytest.raises(GenerationFailed) as error:
        await backend.submit(request("something forbidden"), MODEL, {})
    assert error.value.is_nsfw
    assert error.value.user_friendly == NSFW_FRIENDLY
    assert state.submits == 0


async def test_429_with_retry_after_is_unavailable_with_the_delay(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    state.faults.push("submit", Fault(status=429, headers={"Retry-After": "7"}))
    with pytest.raises(ProviderUnavailable) as submit_error:
        await backend.submit(request(), MODEL, {})
    assert submit_error.value.retry_after_s == 7.0
    assert state.submits == 0

    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(status=429, headers={"openai-poll-after-ms": "2500"}))
    with pytest.raises(ProviderUnavailable) as poll_error:
        await backend.poll(job)
    assert poll_error.value.retry_after_s == 2.5


async def test_5xx_is_unavailable_and_the_next_poll_recovers(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    state.faults.push("submit", Fault(status=500))
    with pytest.raises(ProviderUnavailable):
        await backend.submit(request(), MODEL, {})
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(status=503))
    with pytest.raises(ProviderUnavailable) as error:
        await backend.poll(job)
    assert error.value.retry_after_s is None
    assert (await poll_until_terminal(backend, job))[-1].status is Status.COMPLETED


async def test_timeout_is_unavailable(
    http: httpx.AsyncClient, server: LoopbackServer, state: OpenAIState
) -> None:
    backend = openai.build(http, make_settings(server, timeout_s=0.2))
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(kind="delay", delay_s=0.6))
    with pytest.raises(ProviderUnavailable, match="no answer within"):
        await backend.poll(job)


async def test_malformed_json_is_unavailable(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable, match="not a JSON object"):
        await backend.poll(job)
    state.faults.push("submit", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable):
        await backend.submit(request(), MODEL, {})


async def test_dropped_connection_is_unavailable(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("status", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await backend.poll(job)
    assert (await backend.poll(job)).status in (Status.IN_QUEUE, Status.IN_PROGRESS)


async def test_download_faults_are_unavailable(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
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


async def test_content_after_expiry_is_generation_failed(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    state.output_ttl_s = 0.1
    job = await backend.submit(request(), MODEL, {})
    url = (await poll_until_terminal(backend, job))[-1].output_urls[0]
    await asyncio.sleep(0.2)
    with pytest.raises(GenerationFailed, match="HTTP 404") as error:
        await read_all(backend, job, url)
    assert error.value.user_friendly == EXPIRED_FRIENDLY


async def test_cancel_deletes_the_video_and_poll_reports_cancelled(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    state.queue_s = 5.0
    job = await backend.submit(request(), MODEL, {})

    await backend.cancel(job)

    assert state.job(job.request_id).deleted_at is not None
    assert job.request_id not in state.videos
    update = await backend.poll(job)
    assert update.status is Status.CANCELLED
    await backend.cancel(job)  # already gone: fine
    assert state.counters["cancel"] == 2


async def test_cancel_fault_is_unavailable(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.faults.push("cancel", Fault(status=502))
    with pytest.raises(ProviderUnavailable):
        await backend.cancel(job)
    assert job.request_id in state.videos


async def test_unknown_status_is_in_progress(
    backend: openai.OpenAIVideosBackend, state: OpenAIState
) -> None:
    job = await backend.submit(request(), MODEL, {})
    state.status_override = "preprocessing"
    update = await backend.poll(job)
    assert update.status is Status.IN_PROGRESS
    assert update.provider_status == "preprocessing"


async def test_submit_rejections_are_generation_failed(
    http: httpx.AsyncClient, server: LoopbackServer, state: OpenAIState
) -> None:
    wrong_key = "sk-proj-wrongKey9876543210zyxw"
    wrong = openai.build(http, make_settings(server, api_key=wrong_key))
    with pytest.raises(GenerationFailed, match="invalid_api_key") as unauthorised:
        await wrong.submit(request(), MODEL, {})
    assert wrong_key not in str(unauthorised.value)

    backend = openai.build(http, make_settings(server))
    with pytest.raises(GenerationFailed, match="HTTP 400") as invalid:
        await backend.submit(request(duration_s=5.0), MODEL, {"seconds_choices": []})
    assert not invalid.value.is_nsfw
    assert invalid.value.user_friendly is not None and "'5'" in invalid.value.user_friendly
    with pytest.raises(GenerationFailed, match="missing_required_parameter"):
        await backend.submit(request(prompt=None), MODEL, {})
    assert state.submits == 0


async def test_a_path_prefix_reaches_azure_style_roots(
    http: httpx.AsyncClient, server: LoopbackServer
) -> None:
    backend = openai.build(http, make_settings(server, options={"path_prefix": "/nowhere/v1"}))
    with pytest.raises(GenerationFailed, match="HTTP 404"):
        await backend.submit(request(), MODEL, {})


def test_back_off_prefers_retry_after_ms_then_retry_after_then_the_poll_hint() -> None:
    def answer(**headers: str) -> httpx.Response:
        return httpx.Response(429, headers={k.replace("_", "-"): v for k, v in headers.items()})

    both = answer(retry_after_ms="1500", retry_after="7", openai_poll_after_ms="900")
    assert openai.back_off_s(both) == 1.5
    assert openai.back_off_s(answer(retry_after="7", openai_poll_after_ms="900")) == 7.0
    assert openai.back_off_s(answer(openai_poll_after_ms="900")) == 0.9
    assert openai.back_off_s(answer()) is None
