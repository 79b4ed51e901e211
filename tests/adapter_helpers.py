"""What the adapter tests share: polling to the end, reading outputs, and how the cross-provider
contract tests (tests/integration/test_adapter_contract.py) drive one provider's adapter."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import av
import av.container
import httpx

from tests.emulators.harness import Fault, Faults
from vidgate.backends.base import (
    BackendError,
    ProviderJob,
    ProviderSettings,
    ProviderUnavailable,
    ProviderUpdate,
    RemoteBackend,
)


async def poll_until_terminal(
    backend: RemoteBackend, job: ProviderJob, timeout_s: float = 5.0
) -> list[ProviderUpdate]:
    """Every update until the job ends (fails the test after ``timeout_s``)."""
    updates: list[ProviderUpdate] = []
    deadline = time.monotonic() + timeout_s
    while True:
        update = await backend.poll(job)
        updates.append(update)
        if update.status.is_terminal:
            return updates
        assert time.monotonic() < deadline, f"never terminal: {updates[-3:]}"
        await asyncio.sleep(0.02)


async def read_chunks(backend: RemoteBackend, job: ProviderJob, url: str) -> list[bytes]:
    return [chunk async for chunk in backend.open_output(job, url)]


async def read_all(backend: RemoteBackend, job: ProviderJob, url: str) -> bytes:
    return b"".join(await read_chunks(backend, job, url))


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        assert isinstance(container, av.container.InputContainer)
        return len(list(container.decode(video=0)))


class Emulator(Protocol):
    """What every provider emulator offers the tests."""

    faults: Faults

    @property
    def submits(self) -> int:
        """How many submit requests created a job."""
        ...


def _never(operation: str, fault: Fault) -> bool:
    return False


def _any_count(count: int) -> bool:
    return True


@dataclass(frozen=True)
class KeyLeak:
    """Push each fault before each operation in turn; no error raised may show the API key.

    An operation is ``"submit"``, ``"download"``, ``"cancel"``, or any other (``"status"``,
    ``"result"``) for a poll, each against a job that already completed.
    """

    id: str
    faults: tuple[Fault, ...]
    operations: tuple[str, ...]
    timeout_s: float = 2.0
    # Which attempts may end without an error (by default every one must raise).
    may_succeed: Callable[[str, Fault], bool] = _never
    # Whether the number of errors raised (with the wrong-key one below) is as expected.
    error_count_ok: Callable[[int], bool] = _any_count
    # If set, a submit with the key reversed must fail with this (matched) message.
    wrong_key_submit: str | None = None
    # Whether at least one error must show "[redacted]" where the key was.
    redacted: bool = False
    # If set, a FAILED status answer quoting the key, built from (job id, key).
    echoed_failure: Callable[[str, str], dict[str, Any]] | None = None


def single_key_leaks(
    api_key: str, leaky_body: dict[str, Any], operations: tuple[str, ...]
) -> tuple[KeyLeak, ...]:
    """One case per operation and fault (401 or 500 quoting the key, or a non-JSON body)."""
    faults = (
        ("401", Fault(status=401, body=leaky_body)),
        ("500", Fault(status=500, body=leaky_body)),
        ("malformed", Fault(kind="malformed", body=f"<html>{api_key}</html>")),
    )
    return tuple(
        KeyLeak(f"{operation}-{label}", (fault,), (operation,))
        for operation in operations
        for label, fault in faults
        if not (operation == "download" and label == "malformed")  # downloads are not parsed
    )


@dataclass(frozen=True)
class KeyPoll:
    """One poll of a submitted job, with another key or after a scripted status fault.

    ``raises`` ``None`` means the poll must succeed and find the job still running.
    """

    api_key: str | None = None  # None: the right key
    fault: Fault | None = None
    raises: type[BackendError] | None = ProviderUnavailable
    match: str = ""


def refused(status: int, *, api_key: str | None = None, fault: Fault | None = None) -> KeyPoll:
    """A poll the provider refuses for the key: unavailable (the job is fine), naming the key."""
    return KeyPoll(
        api_key, fault, ProviderUnavailable, f"HTTP {status}: the provider refused our API key"
    )


@dataclass(frozen=True)
class AdapterContract:
    """How the contract tests drive one provider's adapter against its emulator."""

    build: Callable[[httpx.AsyncClient, ProviderSettings], RemoteBackend]
    emulator: Callable[[], tuple[Any, Emulator]]  # -> (asgi app, emulator)
    api_key: str
    model: str  # the provider model submitted to
    request_model: str  # the vidgate model named in the request
    prompt: str
    submit_without_id: dict[str, Any]  # a 2xx submit answer that lacks the job's id
    key_leaks: tuple[KeyLeak, ...]
    refused_key_polls: tuple[KeyPoll, ...]
    base_path: str = ""  # what follows the emulator's origin in the provider's base_url
