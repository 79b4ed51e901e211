"""vidgate in front of every provider emulator, end to end through its public HTTP API.

One ``vidgate serve`` process routes a model per provider to emulators that follow each
provider's documented protocol; each test drives runs through vidgate and checks what the
client sees and what the provider saw.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api_helpers import (
    decode_jpeg,
    decode_mp4,
    poster_size,
    status,
    unified,
    wait_for,
    wait_terminal,
)
from tests.emulators.harness import Fault
from tests.providers import (
    ProviderCase,
    all_cases,
    emulators_running,
    provider_env,
    vidgate_config,
)
from tests.servers import LiveServer

CASES = all_cases()
# Runway polls every 5 s at the fastest. OpenRouter's faults are the shared ones
# (tests/integration: the adapter contract, its own cases, routing): it runs the rest here.
FAST = [c.name for c in CASES if c.min_poll_s < 1 and c.name != "openrouter"]
CANCELLABLE = [c.name for c in CASES if c.name != "openrouter"]  # it documents no cancel


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, dict[str, ProviderCase]]]:
    with emulators_running(CASES) as cases:
        server = LiveServer(
            tmp_path_factory.mktemp("providers") / "data",
            vidgate_config(cases),
            env=provider_env(cases),
        )
        server.api_key = server.create_key("providers")
        server.start()
        try:
            yield server, {c.name: c for c in cases}
        finally:
            server.stop()


@pytest.fixture
def case(
    request: pytest.FixtureRequest, stack: tuple[LiveServer, dict[str, ProviderCase]]
) -> ProviderCase:
    chosen = stack[1][request.param]
    chosen.reset()
    chosen.state.queue_s, chosen.state.run_s = 0.2, 0.3
    chosen.baseline = {"submits": chosen.state.submits, "cancels": _cancel_calls(chosen)}
    return chosen


def new_submits(case: ProviderCase) -> int:
    """Jobs the provider created since this test started."""
    return int(case.state.submits - case.baseline["submits"])


def submit(server: LiveServer, case: ProviderCase, prompt: str, model: str | None = None) -> str:
    response = httpx.post(
        f"{server.base_url}/api/generate-video",
        headers=server.headers(),
        json={
            "model": model or case.model,
            "prompt": prompt,
            "duration": 5,
            "aspect_ratio": "16:9",
        },
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.json()["cost"] == (0.35 if model is None else 0)
    return str(response.json()["runId"])


def wait(
    server: LiveServer,
    case: ProviderCase,
    run_id: str,
    timeout: float = 60,
    model: str | None = None,
) -> dict[str, object]:
    return wait_terminal(server, run_id, timeout=timeout, model=model or case.model)


ALL = pytest.mark.parametrize("case", [c.name for c in CASES], indirect=True)
FAST_ONLY = pytest.mark.parametrize("case", FAST, indirect=True)


@ALL
def test_success_is_copied_into_our_storage(stack, case: ProviderCase) -> None:  # type: ignore[no-untyped-def]
    server = stack[0]
    # The provider's URL expires soon after completion (but after vidgate's next poll).
    ttl = 3.0 + case.min_poll_s
    case.state.output_ttl_s = ttl
    run_id = submit(server, case, "a calm lake at dawn")
    final = wait(server, case, run_id)
    assert final["status"] == "COMPLETED", final
    assert final["request_id"] != run_id  # the provider's id, as upstream reports it
    assert final["providerStatus"]
    time.sleep(ttl + 0.2)  # the provider's copy is gone now; ours is not
    video = httpx.get(final["output"]["video"]["url"])  # type: ignore[index]
    assert video.status_code == 200
    info = decode_mp4(video.content)
    assert info.codec == "h264" and info.frames > 0
    assert new_submits(case) == 1
    # The copy got a poster frame too, served by its own signed URL.
    poster = httpx.get(unified(server, run_id)["thumbnailUrl"])  # type: ignore[arg-type]
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"
    assert decode_jpeg(poster.content) == poster_size(info.width, info.height)


@ALL
def test_provider_failure_keeps_the_provider_detail(stack, case: ProviderCase) -> None:  # type: ignore[no-untyped-def]
    final = wait(stack[0], case, submit(stack[0], case, "explode please"))
    assert final["status"] == "FAILED" and final["isNSFWError"] is False, final
    assert final["error"] and final["userFriendlyError"]


@ALL
def test_content_policy_refusal_is_nsfw(stack, case: ProviderCase) -> None:  # type: ignore[no-untyped-def]
    final = wait(stack[0], case, submit(stack[0], case, "something forbidden"))
    assert final["status"] == "FAILED" and final["isNSFWError"] is True, final
    assert final["userFriendlyError"]


@FAST_ONLY
def test_slow_queue_reports_queue_then_progress(stack, case: ProviderCase) -> None:  # type: ignore[no-untyped-def]
    server = stack[0]
    case.state.queue_s, case.state.run_s = 1.5, 1.5
    run_id = submit(server, case, "slow")
    seen, positions = [], []
    deadline = time.monotonic() + 30
    while True:
        data = status(server, run_id, model=case.model)
        seen.append(data["status"])
        if "queuePosition" in data:
            positions.append(data["queuePosition"])
        if data["status"] == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert seen[-1] == "COMPLETED"
    assert "IN_PROGRESS" in seen
    if case.name in ("fal", "replicate", "openai", "nanogpt"):
        assert "IN_QUEUE" in seen, seen
    if case.name == "fal":  # fal reports its queue position; vidgate passes it on
        assert positions and all(isinstance(p, int) and p >= 0 for p in positions), positions


@FAST_ONLY
@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=429, headers={"Retry-After": "1"}),
        Fault(status=503),
        Fault(status=500),
        Fault(kind="malformed"),
        Fault(kind="drop"),
        Fault(kind="delay", delay_s=3.0),  # longer than the configured 2 s timeout
    ],
    ids=["429", "503", "500", "malformed", "drop", "timeout"],
)
def test_poll_faults_are_retried_and_never_resubmit(
    stack, case: ProviderCase, fault: Fault
) -> None:  # type: ignore[no-untyped-def]
    case.state.faults.push("status", fault, times=2)
    final = wait(stack[0], case, submit(stack[0], case, "faulty polls"))
    assert final["status"] == "COMPLETED", final
    assert new_submits(case) == 1


@FAST_ONLY
def test_submit_refused_with_503_is_retried_once_accepted(stack, case: ProviderCase) -> None:  # type: ignore[no-untyped-def]
    refused = Fault(status=503, headers={"Retry-After": "1"})  # a 503 without it may follow a job
    case.state.faults.push("submit", refused, times=1)
    final = wait(stack[0], case, submit(stack[0], case, "retry my submit"))
    assert final["status"] == "COMPLETED", final
    assert new_submits(case) == 1


@FAST_ONLY
def test_lost_submit_answer_fails_without_resubmitting(stack, case: ProviderCase) -> None:  # type: ignore[no-untyped-def]
    case.state.faults.push("submit", Fault(kind="delay", delay_s=3.0))
    final = wait(stack[0], case, submit(stack[0], case, "lost answer"))
    assert final["status"] == "FAILED", final
    assert "not submitted again" in str(final["error"])
    time.sleep(0.5)
    assert new_submits(case) <= 1  # never a second job


@FAST_ONLY
def test_output_that_is_already_gone_fails_clearly(stack, case: ProviderCase) -> None:  # type: ignore[no-untyped-def]
    case.state.output_ttl_s = 0.0
    final = wait(stack[0], case, submit(stack[0], case, "expired output"), timeout=90)
    assert final["status"] == "FAILED", final
    # vidgate's copy failed, or the provider itself reported its output removed.
    assert any(w in str(final["error"]) for w in ("could not be copied", "removed")), final


@pytest.mark.parametrize("case", CANCELLABLE, indirect=True)
def test_cancel_reaches_the_provider(stack, case: ProviderCase) -> None:  # type: ignore[no-untyped-def]
    server = stack[0]
    case.state.queue_s, case.state.run_s = 30.0, 30.0
    run_id = submit(server, case, "cancel me")
    deadline = time.monotonic() + 30
    while status(server, run_id, model=case.model)["request_id"] == run_id:
        assert time.monotonic() < deadline, "never submitted"
        time.sleep(0.1)
    response = httpx.post(
        f"{server.base_url}/api/generate-video/cancel",
        json={"runId": run_id},
        headers=server.headers(),
    )
    assert response.json()["data"]["status"] == "CANCELED"
    deadline = time.monotonic() + 30
    while _cancel_calls(case) - case.baseline["cancels"] < 1:
        assert time.monotonic() < deadline, "the provider never heard of the cancel"
        time.sleep(0.1)
    time.sleep(0.5)
    assert status(server, run_id, model=case.model)["status"] == "CANCELLED"


@FAST_ONLY
def test_unknown_provider_status_is_in_progress_until_the_deadline(
    stack, case: ProviderCase
) -> None:  # type: ignore[no-untyped-def]
    server = stack[0]
    if not hasattr(case.state, "status_override"):
        case.state.queue_s, case.state.run_s = 60.0, 60.0  # never finishes in time
    else:
        case.state.status_override = "SOMETHING_NEW"
    model = f"{case.model}-deadline"
    run_id = submit(server, case, "odd status", model=model)
    wait_for(server, run_id, {"IN_PROGRESS", "IN_QUEUE"}, model=model)
    final = wait(server, case, run_id, model=model)
    assert final["status"] == "FAILED", final
    assert "did not finish within 2 s" in str(final["error"])


def _cancel_calls(case: ProviderCase) -> int:
    state = case.state
    if hasattr(state, "counters"):
        return int(state.counters["cancel"])
    return int(state.requests["cancel"])
