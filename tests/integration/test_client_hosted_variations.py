"""Both clients against NanoGPT's hosted API as its docs and live clients describe it
(``tests.client_helpers.HostedAPI``): ``id``-only submits, lower-case and flat statuses,
``CANCELED``, statuses no client knows, relative video URLs behind an authenticated
redirect to presigned storage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.client_helpers import (
    HOSTED_ORIGIN,
    STORAGE_ORIGIN,
    HostedAPI,
    call,
    mp4_frames,
)
from vidgate import (
    APIStatusError,
    AsyncClient,
    AuthenticationError,
    Client,
    ContentPolicyError,
    GenerationCancelled,
    GenerationFailed,
    NotFoundError,
    RunStatus,
    VideoStatus,
    WaitTimeout,
)

FAST = {"poll_interval_s": 0.01}


@pytest.fixture
def hosted() -> HostedAPI:
    return HostedAPI()


@pytest.fixture(params=["sync", "async"])
async def client(request: pytest.FixtureRequest, hosted: HostedAPI) -> AsyncIterator[Any]:
    # The docs' BASE form, with /api: the SDK must not double it.
    if request.param == "sync":
        with Client(f"{HOSTED_ORIGIN}/api", hosted.api_key, transport=hosted.transport) as sync:
            yield sync
    else:
        async with AsyncClient(
            f"{HOSTED_ORIGIN}/api", hosted.api_key, transport=hosted.transport
        ) as async_client:
            yield async_client


async def test_id_only_submit_lower_case_statuses_and_relative_url(
    client: Any, hosted: HostedAPI, tmp_path: Path
) -> None:
    run = await call(client.generate_video, "hosted-video", "a red fox", duration="5")
    assert run.id == "vid_hosted0001"  # from "id": there is no "runId"
    assert run.submission.payment_source == "XNO"
    assert run.submission.cost == 0.35
    (submit,) = hosted.seen("/api/generate-video")
    assert submit.url == f"{HOSTED_ORIGIN}/api/generate-video"

    seen: list[VideoStatus] = []
    done = await call(client.wait_for_video, run.id, timeout_s=10, on_update=seen.append, **FAST)
    assert [s.raw_status for s in seen] == ["queued", "processing", "completed"]
    assert [s.status for s in seen] == [
        RunStatus.IN_QUEUE,
        RunStatus.IN_PROGRESS,
        RunStatus.COMPLETED,
    ]
    assert done.video_url == (
        f"{HOSTED_ORIGIN}/api/generate-video/content?model=hosted-video"
        f"&runId={run.id}&variant=video"
    )
    # The hosted API ignores waitSeconds; the SDK asked anyway and fell back to polling.
    polls = hosted.seen("/api/video/status")
    assert "waitSeconds" not in polls[0].url.params  # the first poll reads the state now
    assert all("waitSeconds" in p.url.params for p in polls[1:])

    progress: list[tuple[int, int | None]] = []
    path = await call(
        client.download_video, done, tmp_path / "fox.mp4", on_progress=lambda *a: progress.append(a)
    )
    assert mp4_frames(path) > 0
    assert progress and progress[-1][0] == path.stat().st_size
    content, stored = hosted.requests[-2:]
    assert content.url.path == "/api/generate-video/content"
    assert content.headers["authorization"] == f"Bearer {hosted.api_key}"
    assert str(stored.url).startswith(STORAGE_ORIGIN)
    assert "authorization" not in stored.headers  # never sent to presigned storage
    assert "x-api-key" not in stored.headers


async def test_legacy_route_with_model_and_rebuilt_handle(client: Any, hosted: HostedAPI) -> None:
    submitted = await call(client.generate_video, "hosted-video", "a fox hosted:generating")
    rebuilt = client.run(submitted.id, "hosted-video")
    first = await call(client.get_video_status, rebuilt.id, "hosted-video")
    assert first.status is RunStatus.IN_QUEUE
    assert first.provider_request_id == f"fal-request-{rebuilt.id}"
    (legacy,) = hosted.seen("/api/generate-video/status")
    assert dict(legacy.url.params) == {"runId": rebuilt.id, "modelSlug": "hosted-video"}
    second = await call(rebuilt.status)
    assert second.raw_status == "generating"  # documented intermediate state
    assert second.status is RunStatus.IN_PROGRESS
    done = await call(rebuilt.wait, timeout_s=10, **FAST)
    assert done.is_completed


async def test_canceled_with_one_l_ends_the_wait(client: Any) -> None:
    run = await call(client.generate_video, "hosted-video", "hosted:canceled")
    with pytest.raises(GenerationCancelled) as caught:
        await call(client.wait_for_video, run.id, timeout_s=10, **FAST)
    assert caught.value.status.raw_status == "CANCELED"
    assert caught.value.status.is_cancelled


async def test_an_unknown_status_does_not_hang(client: Any, hosted: HostedAPI) -> None:
    run = await call(client.generate_video, "hosted-video", "hosted:expired")
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        await call(client.wait_for_video, run.id, timeout_s=1.0, poll_interval_s=0.1)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 1.5
    last = caught.value.last_status
    assert last is not None and last.raw_status == "expired"
    assert last.status is RunStatus.UNKNOWN
    polls = len(hosted.seen("/api/video/status"))
    assert 3 <= polls <= 15  # polled at the interval, not in a hot loop


async def test_failure_with_error_object_and_string_nsfw_flag(client: Any) -> None:
    run = await call(client.generate_video, "hosted-video", "hosted:failed")
    with pytest.raises(GenerationFailed) as caught:
        await call(client.wait_for_video, run.id, timeout_s=10, **FAST)
    assert caught.value.error == "Content policy violation"
    assert caught.value.is_nsfw is True
    assert caught.value.user_friendly_error == "Content flagged as inappropriate."


async def test_submit_error_envelopes(client: Any, hosted: HostedAPI) -> None:
    with pytest.raises(APIStatusError) as balance:
        await call(client.generate_video, "hosted-video", "hosted:balance")
    assert balance.value.status_code == 402
    assert balance.value.message == "Insufficient balance"
    with pytest.raises(ContentPolicyError, match="content moderation"):
        await call(client.generate_video, "hosted-video", "hosted:moderated")
    assert len(hosted.seen("/api/generate-video")) == 2  # submits are never re-sent blindly


async def test_unknown_run_and_bad_key(client: Any, hosted: HostedAPI) -> None:
    with pytest.raises(NotFoundError, match="Request not found"):
        await call(client.get_video_status, "vid_nope")
    hosted.api_key = "rotated"
    with pytest.raises(AuthenticationError, match="Invalid API key"):
        await call(client.list_models)


async def test_models_catalog(client: Any) -> None:
    (model,) = await call(client.list_models)
    assert model.id == "hosted-video"
    assert model.text_to_video and model.image_to_video
    assert model.input_modalities == ("text", "image")
    assert model.pricing["per_video"] == {"480p": 0.72}
    assert "resolution" in model.parameters
