"""The Runway adapter against the Runway task API emulator, over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.adapter_helpers import decoded_frames, poll_until_terminal, read_all
from tests.emulators.harness import Fault, LoopbackServer
from tests.emulators.media import sample_mp4
from tests.emulators.runway import RunwayEmulator
from tests.providers import RUNWAY_KEY as KEY
from vidgate.backends.base import (
    GenerationFailed,
    ProviderSettings,
    ProviderUnavailable,
)
from vidgate.backends.runway import RunwayBackend, build
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

MODEL = "gen4_turbo"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[RunwayEmulator, str]]:
    emulator = RunwayEmulator(api_key=KEY, queue_s=0.08, run_s=0.25)
    with LoopbackServer(emulator.app) as server:
        yield emulator, server.base_url


@pytest.fixture
def emu(served: tuple[RunwayEmulator, str]) -> RunwayEmulator:
    served[0].reset()
    return served[0]


def settings(base_url: str, *, api_key: str = KEY, timeout_s: float = 2.0) -> ProviderSettings:
    return ProviderSettings(name="runway", base_url=base_url, api_key=api_key, timeout_s=timeout_s)


@pytest.fixture
def backend(
    http: httpx.AsyncClient, served: tuple[RunwayEmulator, str], emu: RunwayEmulator
) -> RunwayBackend:
    return build(http, settings(served[1]))


def request(prompt: str = "a paper boat in the rain", **fields: object) -> GenerationRequest:
    return GenerationRequest(model="runway-gen4", prompt=prompt, **fields)


def test_the_documented_poll_floor_is_declared(
    backend: RunwayBackend, http: httpx.AsyncClient
) -> None:
    assert backend.min_poll_interval_s == 5.0
    assert backend.name == "runway"
    lower = ProviderSettings(name="runway", base_url="", options={"min_poll_interval_s": 1})
    higher = ProviderSettings(name="runway", base_url="", options={"min_poll_interval_s": 9})
    assert build(http, lower).min_poll_interval_s == 5.0
    assert build(http, higher).min_poll_interval_s == 9.0


async def test_success_with_progress_streams_and_decodes(
    emu: RunwayEmulator, backend: RunwayBackend
) -> None:
    emu.queue_s = 0.2  # room for the first poll to see the queue, even on a busy machine
    job = await backend.submit(
        request(duration_s=5.0, aspect_ratio="16:9", seed=-1, extra={"generateAudio": True}),
        MODEL,
        {},
    )
    assert emu.submits == 1
    assert emu.submit_bodies[0] == {
        "endpoint": "text_to_video",
        "model": MODEL,
        "promptText": "a paper boat in the rain",
        "duration": 5,
        "seed": 2**32 - 1,
        "ratio": "1280:720",
        "audio": True,
    }
    updates = await poll_until_terminal(backend, job)
    statuses = [u.status for u in updates]
    assert statuses[0] is Status.IN_QUEUE and updates[0].provider_status == "PENDING"
    running = [u for u in updates if u.status is Status.IN_PROGRESS]
    assert running and all(u.provider_status == "RUNNING" for u in running)
    progress = [u.progress for u in running if u.progress is not None]
    assert len(progress) == len(running) and all(0 <= p <= 100 for p in progress)
    assert progress == sorted(progress)
    done = updates[-1]
    assert done.status is Status.COMPLETED and done.provider_status == "SUCCEEDED"
    data = await read_all(backend, job, done.output_urls[0])
    assert data == sample_mp4()
    assert decoded_frames(data) == 8
    assert emu.submits == 1


async def test_throttled_is_queued(emu: RunwayEmulator, backend: RunwayBackend) -> None:
    emu.throttled_s = 10.0
    emu.queue_s = 10.0
    job = await backend.submit(request(), MODEL, {})
    update = await backend.poll(job)
    assert (update.status, update.provider_status) == (Status.IN_QUEUE, "THROTTLED")


async def test_an_image_goes_to_image_to_video_with_options(
    emu: RunwayEmulator, backend: RunwayBackend
) -> None:
    job = await backend.submit(
        request(image_url="https://example.com/cat.png", aspect_ratio="9:16", resolution="1080p"),
        "veo3.1",
        {"input": {"duration": 8, "audio": False}},
    )
    assert job.state["endpoint"] == "image_to_video"
    body = emu.submit_bodies[0]
    assert body["promptImage"] == "https://example.com/cat.png"
    assert (body["ratio"], body["duration"], body["audio"]) == ("1080:1920", 8, False)
    assert (await poll_until_terminal(backend, job))[-1].status is Status.COMPLETED


async def test_a_rejected_submit_is_permanent(emu: RunwayEmulator, backend: RunwayBackend) -> None:
    with pytest.raises(GenerationFailed, match="HTTP 400: duration"):
        await backend.submit(request(duration_s=30.0), MODEL, {})
    assert emu.submits == 0


async def test_generic_failure_keeps_the_failure_code(backend: RunwayBackend) -> None:
    job = await backend.submit(request("make it explode"), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    assert (done.status, done.provider_status) == (Status.FAILED, "FAILED")
    assert done.error is not None and "[INTERNAL.BAD_OUTPUT.CODE01]" in done.error
    assert not done.is_nsfw and done.user_friendly_error is None


async def test_content_policy_refusal_is_nsfw(backend: RunwayBackend) -> None:
    job = await backend.submit(request("a forbidden scene"), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    assert done.status is Status.FAILED
    assert done.is_nsfw
    assert done.error is not None and "SAFETY.INPUT.TEXT" in done.error
    assert done.user_friendly_error and "moderation" in done.user_friendly_error


async def test_success_without_outputs_is_a_failure(
    emu: RunwayEmulator, backend: RunwayBackend
) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(status=200, body={"id": job.request_id, "status": "SUCCEEDED"}))
    update = await backend.poll(job)
    assert update.status is Status.FAILED and "without any output" in (update.error or "")


@pytest.mark.parametrize("status", ["ARCHIVING", "pending", None, 7])
async def test_an_unknown_status_is_in_progress(
    emu: RunwayEmulator, backend: RunwayBackend, status: object
) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(status=200, body={"id": job.request_id, "status": status}))
    update = await backend.poll(job)
    assert update.status is Status.IN_PROGRESS
    assert update.progress is None


async def test_429_with_retry_after_is_transient_and_creates_nothing(
    emu: RunwayEmulator, backend: RunwayBackend
) -> None:
    emu.faults.push("submit", Fault(status=429, headers={"Retry-After": "3"}))
    with pytest.raises(ProviderUnavailable, match="HTTP 429") as caught:
        await backend.submit(request(), MODEL, {})
    assert caught.value.retry_after_s == 3.0
    assert emu.submits == 0
    assert emu.requests["submit"] == 1


async def test_5xx_is_transient(emu: RunwayEmulator, backend: RunwayBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    for status in (502, 503, 504):
        emu.faults.push("status", Fault(status=status))
        with pytest.raises(ProviderUnavailable, match=f"HTTP {status}") as caught:
            await backend.poll(job)
        assert caught.value.retry_after_s is None
    assert (await backend.poll(job)).status in (Status.IN_QUEUE, Status.IN_PROGRESS)


async def test_a_slow_answer_times_out_as_transient(
    emu: RunwayEmulator, http: httpx.AsyncClient, served: tuple[RunwayEmulator, str]
) -> None:
    backend = build(http, settings(served[1], timeout_s=0.2))
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(kind="delay", delay_s=0.6))
    with pytest.raises(ProviderUnavailable, match="Timeout"):
        await backend.poll(job)


async def test_a_malformed_answer_is_transient(emu: RunwayEmulator, backend: RunwayBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable, match="not a JSON object"):
        await backend.poll(job)
    emu.faults.push("status", Fault(kind="malformed", body="[1, 2]"))
    with pytest.raises(ProviderUnavailable, match="not a JSON object"):
        await backend.poll(job)


async def test_a_dropped_connection_is_transient(
    emu: RunwayEmulator, backend: RunwayBackend
) -> None:
    emu.faults.push("submit", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await backend.submit(request(), MODEL, {})
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await backend.poll(job)
    done = (await poll_until_terminal(backend, job))[-1]
    emu.faults.push("download", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await read_all(backend, job, done.output_urls[0])


async def test_the_output_is_gone_after_its_ttl(
    emu: RunwayEmulator, backend: RunwayBackend
) -> None:
    emu.output_ttl_s = 0.1
    job = await backend.submit(request(), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    await asyncio.sleep(0.15)
    with pytest.raises(GenerationFailed, match=r"HTTP 404.*expired"):
        await read_all(backend, job, done.output_urls[0])


async def test_cancel_a_running_task(emu: RunwayEmulator, backend: RunwayBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    await backend.cancel(job)
    update = await backend.poll(job)
    assert (update.status, update.provider_status) == (Status.CANCELLED, "CANCELLED")
    assert emu.requests["cancel"] == 1


async def test_cancel_after_the_end_deletes_and_is_not_an_error(
    emu: RunwayEmulator, backend: RunwayBackend
) -> None:
    job = await backend.submit(request(), MODEL, {})
    await poll_until_terminal(backend, job)
    await backend.cancel(job)  # deletes the finished task
    await backend.cancel(job)  # 404 now: nothing left to cancel
    with pytest.raises(GenerationFailed, match="HTTP 404"):
        await backend.poll(job)


async def test_cancel_reports_transient_faults(emu: RunwayEmulator, backend: RunwayBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("cancel", Fault(status=429, headers={"Retry-After": "1"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await backend.cancel(job)
    assert caught.value.retry_after_s == 1.0


async def test_two_thousand_tasks_stay_cheap() -> None:
    """Capacity of the emulator itself, so in-process (ASGI) to keep the test quick."""
    emu = RunwayEmulator(api_key=KEY, queue_s=0.0, run_s=0.05)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app)) as client:
        backend = build(client, settings("http://runway.test"))
        jobs = [await backend.submit(request(f"clip {i}"), MODEL, {}) for i in range(2000)]
        assert emu.submits == 2000 == len({job.request_id for job in jobs})
        await asyncio.sleep(0.06)
        updates = [await backend.poll(job) for job in jobs[::40]]
    assert {u.status for u in updates} == {Status.COMPLETED}
