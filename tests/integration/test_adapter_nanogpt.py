"""The NanoGPT adapter against the NanoGPT video API emulator, over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.adapter_helpers import decoded_frames, poll_until_terminal, read_all
from tests.emulators.harness import Fault, LoopbackServer
from tests.emulators.media import sample_mp4
from tests.emulators.nanogpt import NSFW_MESSAGE, NanoGPTEmulator
from tests.providers import NANOGPT_KEY as KEY
from tests.providers import NANOGPT_OTHER_KEY as OTHER_KEY
from vidgate.backends.base import (
    GenerationFailed,
    ProviderSettings,
    ProviderUnavailable,
)
from vidgate.backends.nanogpt import NanoGPTBackend, build
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

MODEL = "veo3-fast-video"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[NanoGPTEmulator, str]]:
    emulator = NanoGPTEmulator(api_key=KEY, other_keys=(OTHER_KEY,), queue_s=0.08, run_s=0.25)
    with LoopbackServer(emulator.app) as server:
        yield emulator, server.base_url


@pytest.fixture
def emu(served: tuple[NanoGPTEmulator, str]) -> NanoGPTEmulator:
    served[0].reset()
    return served[0]


def settings(base_url: str, *, api_key: str = KEY, timeout_s: float = 2.0) -> ProviderSettings:
    return ProviderSettings(name="nanogpt", base_url=base_url, api_key=api_key, timeout_s=timeout_s)


@pytest.fixture
def backend(
    http: httpx.AsyncClient, served: tuple[NanoGPTEmulator, str], emu: NanoGPTEmulator
) -> NanoGPTBackend:
    return build(http, settings(served[1]))


def request(prompt: str = "a fox in the snow", **fields: object) -> GenerationRequest:
    return GenerationRequest(model="nano-veo", prompt=prompt, **fields)


async def test_success_resolves_the_relative_url_streams_and_decodes(
    emu: NanoGPTEmulator, backend: NanoGPTBackend, served: tuple[NanoGPTEmulator, str]
) -> None:
    emu.queue_s = 0.2  # room for the first poll to see the queue, even on a busy machine
    job = await backend.submit(
        request(
            duration_s=5.0,
            aspect_ratio="16:9",
            resolution="720p",
            seed=7,
            image_data_url="data:image/png;base64,iVBORw0KGgo=",
            extra={"generateAudio": True},
        ),
        MODEL,
        {"input": {"enhancePrompt": True}},
    )
    assert job.request_id.startswith("vid_")
    assert job.state == {"run_id": job.request_id, "model": MODEL, "cost": 0.35}
    assert emu.submits == 1
    assert emu.submit_bodies[0] == {
        "model": MODEL,
        "prompt": "a fox in the snow",
        "duration": "5",
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "seed": 7,
        "imageDataUrl": "data:image/png;base64,iVBORw0KGgo=",
        "generateAudio": True,
        "enhancePrompt": True,
    }
    updates = await poll_until_terminal(backend, job)
    assert (updates[0].status, updates[0].provider_status) == (Status.IN_QUEUE, "IN_QUEUE")
    running = [u for u in updates if u.status is Status.IN_PROGRESS]
    progress = [u.progress for u in running if u.progress is not None]
    assert running and len(progress) == len(running)
    assert progress == sorted(progress) and all(0 <= p <= 100 for p in progress)
    done = updates[-1]
    assert done.status is Status.COMPLETED
    (url,) = done.output_urls
    assert url.startswith(f"{served[1]}/api/generate-video/content?")
    data = await read_all(backend, job, url)
    assert data == sample_mp4()
    assert decoded_frames(data) == 8
    assert emu.submits == 1


async def test_an_absolute_url_needs_no_resolving(
    emu: NanoGPTEmulator, backend: NanoGPTBackend, served: tuple[NanoGPTEmulator, str]
) -> None:
    emu.relative_urls = False
    job = await backend.submit(request(image_url="https://example.com/a.png"), MODEL, {})
    assert emu.submit_bodies[0]["imageUrl"] == "https://example.com/a.png"
    done = (await poll_until_terminal(backend, job))[-1]
    assert done.output_urls[0].startswith(f"{served[1]}/files/")
    assert decoded_frames(await read_all(backend, job, done.output_urls[0])) == 8


async def test_the_key_does_not_follow_a_redirect_to_another_origin(
    emu: NanoGPTEmulator, backend: NanoGPTBackend
) -> None:
    with LoopbackServer(emu.app) as storage:
        emu.files_base_url = storage.base_url
        job = await backend.submit(request(), MODEL, {})
        done = (await poll_until_terminal(backend, job))[-1]
        assert decoded_frames(await read_all(backend, job, done.output_urls[0])) == 8
    assert emu.requests["download"] == 2  # the content redirect, then the file
    assert emu.file_requests_with_key == 0


async def test_content_policy_at_submit_is_nsfw(
    emu: NanoGPTEmulator, backend: NanoGPTBackend
) -> None:
    with pytest.raises(GenerationFailed) as caught:
        await backend.submit(request("this will be blocked"), MODEL, {})
    error = caught.value
    assert error.is_nsfw
    assert error.provider_status == "CONTENT_POLICY_VIOLATION"
    assert error.user_friendly and "safety filter" in error.user_friendly
    assert emu.submits == 0


async def test_inline_moderation_blocks_are_nsfw_too(
    emu: NanoGPTEmulator, backend: NanoGPTBackend
) -> None:
    body = {
        "error": {
            "message": "Your request was blocked by content moderation.",
            "type": "invalid_request_error",
            "code": "content_policy_violation",
        }
    }
    emu.faults.push("submit", Fault(status=400, body=body))
    with pytest.raises(GenerationFailed) as caught:
        await backend.submit(request(), MODEL, {})
    assert caught.value.is_nsfw


async def test_other_submit_rejections_are_permanent(
    emu: NanoGPTEmulator,
    backend: NanoGPTBackend,
    http: httpx.AsyncClient,
    served: tuple[NanoGPTEmulator, str],
) -> None:
    emu.balance = 0.1
    with pytest.raises(GenerationFailed, match="HTTP 402: INSUFFICIENT_BALANCE") as caught:
        await backend.submit(request(), MODEL, {})
    assert not caught.value.is_nsfw
    wrong = build(http, settings(served[1], api_key="sk-nano-wrong"))
    with pytest.raises(GenerationFailed, match="HTTP 401"):
        await wrong.submit(request(), MODEL, {})
    emu.faults.push(
        "submit", Fault(status=400, body={"error": "Kling needs an image", "status": 400})
    )
    with pytest.raises(GenerationFailed, match="Kling needs an image"):
        await backend.submit(request(), MODEL, {})
    assert emu.submits == 0


async def test_generic_failure_keeps_the_provider_error(backend: NanoGPTBackend) -> None:
    job = await backend.submit(request("explode please"), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    assert (done.status, done.provider_status) == (Status.FAILED, "FAILED")
    assert done.error == "NanoGPT job failed: Provider error: the generation crashed"
    assert not done.is_nsfw and done.user_friendly_error is None


async def test_content_policy_failure_is_nsfw(backend: NanoGPTBackend) -> None:
    job = await backend.submit(request("a forbidden thing"), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    assert done.status is Status.FAILED
    assert done.is_nsfw
    assert done.user_friendly_error == NSFW_MESSAGE
    assert done.error is not None and "Content policy violation" in done.error


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": {"status": "REVIEWING"}}, Status.IN_PROGRESS),
        ({"status": "unknown"}, Status.IN_PROGRESS),
        ({"data": {}, "status": 3}, Status.IN_PROGRESS),
        ({"status": "queued"}, Status.IN_QUEUE),
        ({"data": {"status": "generating"}, "status": "processing"}, Status.IN_PROGRESS),
        ({"data": {"status": "CANCELLED"}, "status": "cancelled"}, Status.CANCELLED),
        ({"data": {"status": "IN_QUEUE", "queuePosition": 3}}, Status.IN_QUEUE),
    ],
)
async def test_status_values_map_and_unknown_ones_stay_in_progress(
    emu: NanoGPTEmulator, backend: NanoGPTBackend, body: dict[str, object], expected: Status
) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(status=200, body=body))
    update = await backend.poll(job)
    assert update.status is expected
    if body.get("data") == {"status": "IN_QUEUE", "queuePosition": 3}:
        assert update.queue_position == 3


async def test_completed_without_a_url_is_a_failure(
    emu: NanoGPTEmulator, backend: NanoGPTBackend
) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(status=200, body={"data": {"status": "COMPLETED"}}))
    update = await backend.poll(job)
    assert update.status is Status.FAILED and "without a video URL" in (update.error or "")


async def test_429_with_retry_after_is_transient_and_creates_nothing(
    emu: NanoGPTEmulator, backend: NanoGPTBackend
) -> None:
    body = {"error": {"message": "Slow down", "type": "RATE_LIMITED"}, "status": 429}
    emu.faults.push("submit", Fault(status=429, headers={"Retry-After": "12"}, body=body))
    with pytest.raises(ProviderUnavailable, match="RATE_LIMITED") as caught:
        await backend.submit(request(), MODEL, {})
    assert caught.value.retry_after_s == 12.0
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    emu.faults.push("submit", Fault(status=429, headers={"Retry-After": when}))
    with pytest.raises(ProviderUnavailable) as caught:
        await backend.submit(request(), MODEL, {})
    assert caught.value.retry_after_s is not None and 25 <= caught.value.retry_after_s <= 30
    assert emu.submits == 0


async def test_5xx_is_transient(emu: NanoGPTEmulator, backend: NanoGPTBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(status=500))
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        await backend.poll(job)
    emu.faults.push("submit", Fault(status=503))
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        await backend.submit(request(), MODEL, {})
    assert emu.submits == 1


async def test_a_slow_answer_times_out_as_transient(
    emu: NanoGPTEmulator, http: httpx.AsyncClient, served: tuple[NanoGPTEmulator, str]
) -> None:
    backend = build(http, settings(served[1], timeout_s=0.2))
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(kind="delay", delay_s=0.6))
    with pytest.raises(ProviderUnavailable, match="Timeout"):
        await backend.poll(job)


async def test_a_malformed_answer_is_transient(
    emu: NanoGPTEmulator, backend: NanoGPTBackend
) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable, match="not a JSON object"):
        await backend.poll(job)
    emu.faults.push("submit", Fault(kind="malformed", status=202, body='{"runId": '))
    with pytest.raises(ProviderUnavailable, match="not a JSON object"):
        await backend.submit(request(), MODEL, {})


async def test_a_dropped_connection_is_transient(
    emu: NanoGPTEmulator, backend: NanoGPTBackend
) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await backend.poll(job)
    done = (await poll_until_terminal(backend, job))[-1]
    emu.faults.push("download", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await read_all(backend, job, done.output_urls[0])


async def test_the_output_is_gone_after_its_ttl(
    emu: NanoGPTEmulator, backend: NanoGPTBackend
) -> None:
    emu.output_ttl_s = 0.1
    job = await backend.submit(request(), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    await asyncio.sleep(0.15)
    with pytest.raises(GenerationFailed, match=r"HTTP 404.*expired"):
        await read_all(backend, job, done.output_urls[0])


@pytest.mark.parametrize("spelling", ["CANCELED", "CANCELLED"])
async def test_cancel(emu: NanoGPTEmulator, backend: NanoGPTBackend, spelling: str) -> None:
    emu.cancel_spelling = spelling
    job = await backend.submit(request(), MODEL, {})
    await backend.cancel(job)
    update = await backend.poll(job)
    assert (update.status, update.provider_status) == (Status.CANCELLED, spelling)


async def test_cancel_without_the_route_is_best_effort(
    emu: NanoGPTEmulator, backend: NanoGPTBackend
) -> None:
    emu.cancel_supported = False
    job = await backend.submit(request(), MODEL, {})
    await backend.cancel(job)
    assert emu.requests["cancel"] == 1
    assert (await poll_until_terminal(backend, job))[-1].status is Status.COMPLETED
    emu.faults.push("cancel", Fault(status=502))
    with pytest.raises(ProviderUnavailable):
        await backend.cancel(job)


async def test_two_thousand_jobs_stay_cheap() -> None:
    """Capacity of the emulator itself, so in-process (ASGI) to keep the test quick."""
    emu = NanoGPTEmulator(api_key=KEY, queue_s=0.0, run_s=0.05)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app)) as client:
        backend = build(client, settings("http://nanogpt.test"))
        jobs = [await backend.submit(request(f"clip {i}"), MODEL, {}) for i in range(2000)]
        assert emu.submits == 2000 == len({job.request_id for job in jobs})
        await asyncio.sleep(0.06)
        updates = [await backend.poll(job) for job in jobs[::40]]
    assert {u.status for u in updates} == {Status.COMPLETED}
