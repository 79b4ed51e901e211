"""The Veo adapter against the Gemini API emulator, over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.adapter_helpers import decoded_frames, poll_until_terminal, read_all
from tests.emulators.harness import Fault, LoopbackServer
from tests.emulators.media import sample_mp4
from tests.emulators.veo import VeoEmulator
from tests.providers import VEO_KEY as KEY
from vidgate.backends.base import (
    GenerationFailed,
    ProviderSettings,
    ProviderUnavailable,
)
from vidgate.backends.veo import VeoBackend, build
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

MODEL = "veo-3.0-generate-001"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[VeoEmulator, str]]:
    emulator = VeoEmulator(api_key=KEY, queue_s=0.05, run_s=0.25)
    with LoopbackServer(emulator.app) as server:
        yield emulator, server.base_url


@pytest.fixture
def emu(served: tuple[VeoEmulator, str]) -> VeoEmulator:
    served[0].reset()
    return served[0]


def settings(base_url: str, *, api_key: str = KEY, timeout_s: float = 2.0) -> ProviderSettings:
    return ProviderSettings(name="veo", base_url=base_url, api_key=api_key, timeout_s=timeout_s)


@pytest.fixture
def backend(
    http: httpx.AsyncClient, served: tuple[VeoEmulator, str], emu: VeoEmulator
) -> VeoBackend:
    return build(http, settings(served[1]))


def request(prompt: str = "a lighthouse at dusk", **fields: object) -> GenerationRequest:
    return GenerationRequest(model="veo3-video", prompt=prompt, **fields)


async def test_success_maps_the_request_streams_and_decodes(
    emu: VeoEmulator, backend: VeoBackend
) -> None:
    job = await backend.submit(
        request(
            negative_prompt="rain",
            duration_s=6.0,
            aspect_ratio="9:16",
            resolution="1280x720",
            seed=42,
            extra={"personGeneration": "allow_adult", "unrelated": 1},
        ),
        MODEL,
        {},
    )
    assert job.request_id.startswith(f"models/{MODEL}/operations/")
    assert emu.submits == 1
    assert emu.submit_bodies[0] == {
        "instances": [{"prompt": "a lighthouse at dusk"}],
        "parameters": {
            "aspectRatio": "9:16",
            "durationSeconds": 6,
            "negativePrompt": "rain",
            "resolution": "720p",
            "personGeneration": "allow_adult",
        },
    }
    updates = await poll_until_terminal(backend, job)
    assert updates[0].status is Status.IN_PROGRESS
    assert updates[0].provider_status == "done=false"
    done = updates[-1]
    assert done.status is Status.COMPLETED
    assert len(done.output_urls) == 1
    assert done.output_urls[0].startswith("http://127.0.0.1:")
    data = await read_all(backend, job, done.output_urls[0])
    assert data == sample_mp4()
    assert decoded_frames(data) == 8
    assert emu.submits == 1


async def test_image_input_fixed_options_and_several_samples(
    emu: VeoEmulator, backend: VeoBackend
) -> None:
    job = await backend.submit(
        request(image_data_url="data:image/jpeg;base64,/9j/AAAA"),
        MODEL,
        {"parameters": {"sampleCount": 2, "durationSeconds": 8}},
    )
    body = emu.submit_bodies[0]
    assert body["instances"][0]["image"] == {
        "bytesBase64Encoded": "/9j/AAAA",
        "mimeType": "image/jpeg",
    }
    assert body["parameters"] == {"sampleCount": 2, "durationSeconds": 8}
    done = (await poll_until_terminal(backend, job))[-1]
    assert done.status is Status.COMPLETED
    assert len(done.output_urls) == 2


async def test_an_image_url_is_refused_before_any_request(
    emu: VeoEmulator, backend: VeoBackend
) -> None:
    with pytest.raises(GenerationFailed, match="inline"):
        await backend.submit(request(image_url="https://example.com/cat.png"), MODEL, {})
    assert emu.requests["submit"] == 0


async def test_a_rejected_submit_is_permanent(emu: VeoEmulator, backend: VeoBackend) -> None:
    with pytest.raises(GenerationFailed, match="INVALID_ARGUMENT: Aspect ratio 1:1"):
        await backend.submit(request(aspect_ratio="1:1"), MODEL, {})
    assert emu.submits == 0


async def test_generic_failure_keeps_the_provider_detail(backend: VeoBackend) -> None:
    job = await backend.submit(request("the engine will explode"), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    assert done.status is Status.FAILED
    assert done.error is not None and "code 13" in done.error and "internal error" in done.error
    assert not done.is_nsfw


async def test_content_policy_refusal_is_nsfw(backend: VeoBackend) -> None:
    job = await backend.submit(request("something forbidden"), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    assert done.status is Status.FAILED
    assert done.is_nsfw
    assert done.user_friendly_error and "safety" in done.user_friendly_error
    assert done.error is not None and "usage guidelines" in done.error


async def test_done_without_samples_or_error_is_a_clear_failure(
    emu: VeoEmulator, backend: VeoBackend
) -> None:
    job = await backend.submit(request(), MODEL, {})
    body = {"name": job.request_id, "done": True, "response": {"generateVideoResponse": {}}}
    emu.faults.push("status", Fault(status=200, body=body))
    update = await backend.poll(job)
    assert update.status is Status.FAILED
    assert update.error == "Veo finished the operation with no video and no error"


@pytest.mark.parametrize("done", ["SOMETHING_NEW", None, 1])
async def test_an_unknown_done_value_is_in_progress(
    emu: VeoEmulator, backend: VeoBackend, done: object
) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(status=200, body={"name": job.request_id, "done": done}))
    assert (await backend.poll(job)).status is Status.IN_PROGRESS


async def test_429_with_retry_after_is_transient_and_creates_nothing(
    emu: VeoEmulator, backend: VeoBackend
) -> None:
    emu.faults.push("submit", Fault(status=429, headers={"Retry-After": "7"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await backend.submit(request(), MODEL, {})
    assert caught.value.retry_after_s == 7.0
    assert emu.submits == 0


async def test_429_retry_info_in_the_body_is_honoured(
    emu: VeoEmulator, backend: VeoBackend
) -> None:
    job = await backend.submit(request(), MODEL, {})
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "Resource has been exhausted (e.g. check quota).",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}
            ],
        }
    }
    emu.faults.push("status", Fault(status=429, body=body))
    with pytest.raises(ProviderUnavailable, match="RESOURCE_EXHAUSTED") as caught:
        await backend.poll(job)
    assert caught.value.retry_after_s == 2.5


async def test_5xx_is_transient(emu: VeoEmulator, backend: VeoBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(status=503))
    with pytest.raises(ProviderUnavailable, match="HTTP 503") as caught:
        await backend.poll(job)
    assert caught.value.retry_after_s is None
    assert (await backend.poll(job)).status is Status.IN_PROGRESS


async def test_a_slow_answer_times_out_as_transient(
    emu: VeoEmulator, http: httpx.AsyncClient, served: tuple[VeoEmulator, str]
) -> None:
    backend = build(http, settings(served[1], timeout_s=0.2))
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(kind="delay", delay_s=0.6))
    with pytest.raises(ProviderUnavailable, match="Timeout"):
        await backend.poll(job)


async def test_a_malformed_answer_is_transient(emu: VeoEmulator, backend: VeoBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable, match="not a JSON object"):
        await backend.poll(job)
    emu.faults.push("submit", Fault(kind="malformed"))
    with pytest.raises(ProviderUnavailable):
        await backend.submit(request(), MODEL, {})


async def test_a_dropped_connection_is_transient(emu: VeoEmulator, backend: VeoBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("status", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await backend.poll(job)
    done = (await poll_until_terminal(backend, job))[-1]
    emu.faults.push("download", Fault(kind="drop"))
    with pytest.raises(ProviderUnavailable):
        await read_all(backend, job, done.output_urls[0])
    emu.faults.push("download", Fault(status=502))
    with pytest.raises(ProviderUnavailable, match="HTTP 502"):
        await read_all(backend, job, done.output_urls[0])


async def test_the_output_is_gone_after_its_ttl(emu: VeoEmulator, backend: VeoBackend) -> None:
    emu.output_ttl_s = 0.1
    job = await backend.submit(request(), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    await asyncio.sleep(0.15)
    with pytest.raises(GenerationFailed, match=r"HTTP 404.*gone"):
        await read_all(backend, job, done.output_urls[0])


async def test_the_file_uri_needs_the_key(
    emu: VeoEmulator, backend: VeoBackend, http: httpx.AsyncClient
) -> None:
    job = await backend.submit(request(), MODEL, {})
    done = (await poll_until_terminal(backend, job))[-1]
    assert (await http.get(done.output_urls[0])).status_code == 403
    assert len(await read_all(backend, job, done.output_urls[0])) == len(sample_mp4())


async def test_cancel_is_best_effort_when_unsupported(
    emu: VeoEmulator, backend: VeoBackend
) -> None:
    job = await backend.submit(request(), MODEL, {})
    await backend.cancel(job)
    assert emu.requests["cancel"] == 1
    assert (await poll_until_terminal(backend, job))[-1].status is Status.COMPLETED


async def test_cancel_when_supported_ends_cancelled(emu: VeoEmulator, backend: VeoBackend) -> None:
    emu.cancel_supported = True
    job = await backend.submit(request(), MODEL, {})
    await backend.cancel(job)
    update = await backend.poll(job)
    assert update.status is Status.CANCELLED


async def test_cancel_reports_transient_faults(emu: VeoEmulator, backend: VeoBackend) -> None:
    job = await backend.submit(request(), MODEL, {})
    emu.faults.push("cancel", Fault(status=503))
    with pytest.raises(ProviderUnavailable):
        await backend.cancel(job)


async def test_two_thousand_operations_stay_cheap() -> None:
    """Capacity of the emulator itself, so in-process (ASGI) to keep the test quick."""
    emu = VeoEmulator(api_key=KEY, queue_s=0.0, run_s=0.05)
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(transport=transport) as client:
        backend = build(client, settings("http://veo.test"))
        jobs = [await backend.submit(request(f"clip {i}"), MODEL, {}) for i in range(2000)]
        assert emu.submits == 2000 == len({job.request_id for job in jobs})
        await asyncio.sleep(0.06)
        updates = [await backend.poll(job) for job in jobs[::40]]
    assert {u.status for u in updates} == {Status.COMPLETED}
