"""What every provider adapter promises, checked against each provider's emulator over real
loopback HTTP. How each provider is driven (and where they differ) is ``ProviderCase.adapter``
in tests/providers.py; the provider-specific tests are in test_adapter_<provider>.py."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.adapter_helpers import (
    Emulator,
    KeyLeak,
    decoded_frames,
    poll_until_terminal,
    read_all,
)
from tests.emulators.harness import Fault, LoopbackServer, free_port
from tests.providers import ProviderCase, all_cases
from vidgate.backends.base import (
    GenerationFailed,
    ProviderJob,
    ProviderSettings,
    ProviderUnavailable,
    RemoteBackend,
    SubmitOutcomeUnknown,
)
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status

CASES = all_cases()
BY_PROVIDER = [pytest.param(case, id=case.name) for case in CASES]


@pytest.fixture
def served(case: ProviderCase) -> Iterator[tuple[Emulator, str]]:
    """A fresh emulator for ``case``, on loopback: (emulator, base URL)."""
    app, emulator = case.adapter.emulator()
    with LoopbackServer(app) as server:
        yield emulator, server.base_url


@pytest.fixture
def emu(served: tuple[Emulator, str]) -> Emulator:
    return served[0]


def settings(
    case: ProviderCase, base_url: str, *, api_key: str | None = None, timeout_s: float = 2.0
) -> ProviderSettings:
    key = case.adapter.api_key if api_key is None else api_key
    return ProviderSettings(
        name=case.name,
        base_url=base_url + case.adapter.base_path,
        api_key=key,
        timeout_s=timeout_s,
    )


def connect(
    case: ProviderCase,
    http: httpx.AsyncClient,
    served: tuple[Emulator, str],
    *,
    api_key: str | None = None,
    timeout_s: float = 2.0,
) -> RemoteBackend:
    return case.adapter.build(http, settings(case, served[1], api_key=api_key, timeout_s=timeout_s))


@pytest.fixture
def backend(
    case: ProviderCase, http: httpx.AsyncClient, served: tuple[Emulator, str]
) -> RemoteBackend:
    return connect(case, http, served)


def request(case: ProviderCase) -> GenerationRequest:
    return GenerationRequest(model=case.adapter.request_model, prompt=case.adapter.prompt)


async def submit(case: ProviderCase, backend: RemoteBackend) -> ProviderJob:
    return await backend.submit(request(case), case.adapter.model, {})


KEY_LEAKS = [
    pytest.param(case, leak, id=f"{case.name}-{leak.id}")
    for case in CASES
    for leak in case.adapter.key_leaks
]


@pytest.mark.parametrize(("case", "leak"), KEY_LEAKS)
async def test_the_key_never_appears_in_errors(
    case: ProviderCase,
    leak: KeyLeak,
    emu: Emulator,
    http: httpx.AsyncClient,
    served: tuple[Emulator, str],
) -> None:
    key = case.adapter.api_key
    backend = connect(case, http, served, timeout_s=leak.timeout_s)
    job = await submit(case, backend)
    url = (await poll_until_terminal(backend, job))[-1].output_urls[0]
    errors: list[Exception] = []
    for fault in leak.faults:
        for operation in leak.operations:
            emu.faults.push(operation, fault)
            try:
                if operation == "submit":
                    await submit(case, backend)
                elif operation == "download":
                    await read_all(backend, job, url)
                elif operation == "cancel":
                    await backend.cancel(job)
                else:
                    await backend.poll(job)
            except (GenerationFailed, ProviderUnavailable) as exc:
                errors.append(exc)
            else:
                assert leak.may_succeed(operation, fault), f"{operation} {fault} raised nothing"
            emu.faults.clear()
    if leak.wrong_key_submit is not None:
        wrong = connect(case, http, served, api_key=key[::-1])
        with pytest.raises(GenerationFailed, match=leak.wrong_key_submit) as caught:
            await submit(case, wrong)
        errors.append(caught.value)
    assert leak.error_count_ok(len(errors)), len(errors)
    for error in errors:
        assert key not in str(error)
        assert key not in repr(error) and key not in repr(error.args)
        assert key not in str(getattr(error, "user_friendly", ""))
        assert key[::-1] not in str(error)
    if leak.redacted:
        assert any("[redacted]" in str(error) for error in errors)
    if leak.echoed_failure is not None:
        body = leak.echoed_failure(job.request_id, key)
        emu.faults.push("status", Fault(status=200, body=body))
        update = await backend.poll(job)
        assert update.error is not None and key not in update.error
        assert key not in (update.user_friendly_error or "")


@pytest.mark.parametrize("case", BY_PROVIDER)
async def test_repolling_after_a_restart_needs_only_the_saved_state(
    case: ProviderCase, emu: Emulator, served: tuple[Emulator, str]
) -> None:
    async with httpx.AsyncClient() as first_http:
        job = await submit(case, connect(case, first_http, served))
    saved = json.dumps(dataclasses.asdict(job))

    async with httpx.AsyncClient() as second_http:
        second = connect(case, second_http, served)
        revived = ProviderJob(**json.loads(saved))
        final = (await poll_until_terminal(second, revived))[-1]
        assert final.status is Status.COMPLETED
        data = await read_all(second, revived, final.output_urls[0])
    assert decoded_frames(data) == 8
    assert emu.submits == 1


LOST_ANSWERS = (
    ("dropped", Fault(kind="drop")),
    ("reset", Fault(kind="reset")),
    ("truncated", Fault(kind="truncated")),
    ("timed-out", Fault(kind="delay", delay_s=0.6)),
    ("2xx-not-json", Fault(kind="malformed", status=200)),
    ("502-after-creating", Fault(status=502)),
    ("504-after-creating", Fault(status=504)),
)
"""Answers lost or unclear after the provider created the job (``submit_response``)."""
REFUSALS = (
    Fault(status=409),
    Fault(status=425),
    Fault(status=429),
    Fault(status=503, headers={"Retry-After": "1"}),
)
"""Answers that say nothing was created."""
UNCLEAR_STATUSES = (408, 500, 503)
"""Error answers that could as well have come after the job was created."""


async def raises_unknown(case: ProviderCase, backend: RemoteBackend, label: str) -> None:
    try:
        await submit(case, backend)
    except SubmitOutcomeUnknown:
        return
    pytest.fail(f"{label}: the submit did not raise SubmitOutcomeUnknown")


@pytest.mark.parametrize("case", BY_PROVIDER)
async def test_a_lost_or_unclear_submit_answer_is_outcome_unknown_and_one_job_exists(
    case: ProviderCase, emu: Emulator, http: httpx.AsyncClient, served: tuple[Emulator, str]
) -> None:
    backend = connect(case, http, served, timeout_s=0.3)
    no_id = ("2xx-without-id", Fault(status=200, body=case.adapter.submit_without_id))
    for created, (label, fault) in enumerate((*LOST_ANSWERS, no_id), 1):
        emu.faults.push("submit_response", fault)
        await raises_unknown(case, backend, label)
        assert emu.submits == created, label


@pytest.mark.parametrize("case", BY_PROVIDER)
async def test_a_submit_clearly_refused_is_retryable_and_created_nothing(
    case: ProviderCase, emu: Emulator, backend: RemoteBackend
) -> None:
    for fault in REFUSALS:
        emu.faults.push("submit", fault)
        with pytest.raises(ProviderUnavailable) as error:
            await submit(case, backend)
        assert type(error.value) is ProviderUnavailable, fault
    assert emu.submits == 0


@pytest.mark.parametrize("case", BY_PROVIDER)
async def test_a_submit_error_that_may_follow_creation_is_outcome_unknown(
    case: ProviderCase, emu: Emulator, backend: RemoteBackend
) -> None:
    """From the client's side, a 500 before the job was created looks the same as one after
    it (see the lost answers above): neither may be taken as "nothing was created"."""
    for status in UNCLEAR_STATUSES:
        emu.faults.push("submit", Fault(status=status))
        await raises_unknown(case, backend, f"HTTP {status}")
    assert emu.submits == 0


@pytest.mark.parametrize("case", BY_PROVIDER)
async def test_a_submit_that_cannot_connect_is_retryable(
    case: ProviderCase, http: httpx.AsyncClient
) -> None:
    closed = case.adapter.build(http, settings(case, f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ProviderUnavailable, match="ConnectError") as error:
        await submit(case, closed)
    assert type(error.value) is ProviderUnavailable


@pytest.mark.parametrize("case", BY_PROVIDER)
async def test_a_poll_with_a_refused_key_is_unavailable_and_names_the_key(
    case: ProviderCase,
    emu: Emulator,
    http: httpx.AsyncClient,
    served: tuple[Emulator, str],
    backend: RemoteBackend,
) -> None:
    """The job is probably fine and an operator can fix the key: the worker retries."""
    job = await submit(case, backend)
    for step in case.adapter.refused_key_polls:
        poller = (
            backend if step.api_key is None else connect(case, http, served, api_key=step.api_key)
        )
        if step.fault is not None:
            emu.faults.push("status", step.fault)
        if step.raises is None:
            assert (await poller.poll(job)).status in (Status.IN_QUEUE, Status.IN_PROGRESS)
            continue
        with pytest.raises(step.raises, match=step.match):
            await poller.poll(job)
