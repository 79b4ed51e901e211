"""The NanoGPT adapter against the NanoGPT video API emulator, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import av
import httpx
import pytest

from tests.emulators.harness import Fault, LoopbackServer, free_port
from tests.emulators.media import sample_mp4
from tests.emulators.nanogpt import NSFW_MESSAGE, NanoGPTEmulator
from vidgate.backends.base import (
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUnavailable,
    ProviderUpdate,
    SubmitOutcomeUnknown,
)
from vidgate.backends.nanogpt import NanoGPTBackend, build
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

KEY = "sk-nano-SECRET-0123-4567-89ab"
OTHER_KEY = "sk-nano-other-account"
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


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def settings(base_url: str, *, api_key: str = KEY, timeout_s: float = 2.0) -> ProviderSettings:
    return ProviderSettings(name="nanogpt", base_url=base_url, api_key=api_key, timeout_s=timeout_s)


@pytest.fixture
def backend(
    http: httpx.AsyncClient, served: tuple[NanoGPTEmulator, str], emu: NanoGPTEmulator
) -> NanoGPTBackend:
    return build(http, settings(served[1]))


def request(prompt: str = "a fox in the snow", **fields: object) -> GenerationRequest:
    return GenerationRequest(model="nano-veo", prompt=prompt, **fields)


async def poll_until_terminal(backend: NanoGPTBackend, job: ProviderJob) -> list[ProviderUpdate]:
    updates: list[ProviderUpdate] = []
    for _ in range(200):
        update = await backend.poll(job)
        updates.append(update)
        if update.status.is_terminal:
            return updates
        await asyncio.sleep(0.02)
    raise AssertionError(f"never terminal: {updates[-1]}")


async def read_all(backend: NanoGPTBackend, job: ProviderJob, url: str) -> bytes:
    return b"".join([chunk async for chunk in backend.open_output(job, url)])


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


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


async def test_a_poll_with_a_refused_key_is_unavailable_and_names_the_key(
    emu: NanoGPTEmulator,
    backend: NanoGPTBackend,
    http: httpx.AsyncClient,
    served: tuple[NanoGPTEmulator, str],
) -> None:
    """The job is probably fine and an operator can fix the key: the worker retries."""
    job = await backend.submit(request(), MODEL, {})
    other = build(http, settings(served[1], api_key=OTHER_KEY))
    with pytest.raises(ProviderUnavailable, match="HTTP 403: the provider refused our API key"):
        await other.poll(job)
    wrong = build(http, settings(served[1], api_key="sk-nano-wrong"))
    with pytest.raises(ProviderUnavailable, match="HTTP 401: the provider refused our API key"):
        await wrong.poll(job)
    emu.faults.push("status", Fault(status=400, body={"error": 400, "message": "bad id"}))
    with pytest.raises(GenerationFailed, match="HTTP 400: bad id"):
        await backend.poll(job)


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


async def test_the_key_never_appears_in_errors(
    emu: NanoGPTEmulator, http: httpx.AsyncClient, served: tuple[NanoGPTEmulator, str]
) -> None:
    backend = build(http, settings(served[1], timeout_s=0.2))
    job = await backend.submit(request(), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    echo = {"error": {"message": f"x-api-key {KEY} refused", "type": "CONTENT_POLICY_VIOLATION"}}
    faults = [
        Fault(status=500, body=echo),
        Fault(status=429, body=echo),
        Fault(status=400, body=echo),
        Fault(status=401, body={"error": 401, "message": f"bad key {KEY}"}),
        Fault(kind="malformed", body=f"<html>{KEY}</html>"),
        Fault(kind="delay", delay_s=0.5),
        Fault(kind="drop"),
    ]
    errors: list[Exception] = []
    for fault in faults:
        for operation in ("submit", "status", "cancel", "download"):
            emu.faults.push(operation, fault)
            try:
                if operation == "submit":
                    await backend.submit(request(), MODEL, {})
                elif operation == "status":
                    await backend.poll(job)
                elif operation == "cancel":
                    await backend.cancel(job)
                else:
                    await read_all(backend, job, done.output_urls[0])
            except (GenerationFailed, ProviderUnavailable) as exc:
                errors.append(exc)
            emu.faults.clear()
    assert len(errors) > 20
    for error in errors:
        assert KEY not in str(error) and KEY not in repr(error)
        if isinstance(error, GenerationFailed):
            assert KEY not in (error.user_friendly or "")
    assert any("[redacted]" in str(error) for error in errors)
    echoed = {"data": {"status": "FAILED", "error": KEY, "userFriendlyError": f"no {KEY}"}}
    emu.faults.push("status", Fault(status=200, body=echoed))
    update = await backend.poll(job)
    assert KEY not in (update.error or "") + (update.user_friendly_error or "")


LOST_ANSWERS = [
    pytest.param(Fault(kind="drop"), id="dropped"),
    pytest.param(Fault(kind="delay", delay_s=0.6), id="timed-out"),
    pytest.param(Fault(kind="malformed", status=200), id="2xx-not-json"),
    pytest.param(Fault(status=200, body={"status": "pending", "cost": 0.35}), id="2xx-without-id"),
]


@pytest.mark.parametrize("fault", LOST_ANSWERS)
async def test_a_lost_submit_answer_is_outcome_unknown_and_one_job_exists(
    emu: NanoGPTEmulator, http: httpx.AsyncClient, served: tuple[NanoGPTEmulator, str], fault: Fault
) -> None:
    backend = build(http, settings(served[1], timeout_s=0.3))
    emu.faults.push("submit_response", fault)
    with pytest.raises(SubmitOutcomeUnknown):
        await backend.submit(request(), MODEL, {})
    assert emu.submits == 1


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503])
async def test_a_submit_answered_with_an_error_is_retryable_and_created_nothing(
    emu: NanoGPTEmulator, backend: NanoGPTBackend, status: int
) -> None:
    emu.faults.push("submit", Fault(status=status))
    with pytest.raises(ProviderUnavailable) as caught:
        await backend.submit(request(), MODEL, {})
    assert type(caught.value) is ProviderUnavailable
    assert emu.submits == 0


async def test_a_submit_that_cannot_connect_is_retryable(http: httpx.AsyncClient) -> None:
    backend = build(http, settings(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ProviderUnavailable, match="ConnectError") as caught:
        await backend.submit(request(), MODEL, {})
    assert type(caught.value) is ProviderUnavailable


async def test_repolling_from_the_json_state_alone(served: tuple[NanoGPTEmulator, str]) -> None:
    emu, base_url = served
    emu.reset()
    async with httpx.AsyncClient() as first:
        job = await build(first, settings(base_url)).submit(request(), MODEL, {})
    stored = json.dumps({"request_id": job.request_id, "state": job.state})
    async with httpx.AsyncClient() as second:
        restarted = build(second, settings(base_url))
        revived = ProviderJob(**json.loads(stored))
        done = (await poll_until_terminal(restarted, revived))[-1]
        assert done.status is Status.COMPLETED
        assert decoded_frames(await read_all(restarted, revived, done.output_urls[0])) == 8
    assert emu.submits == 1


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
