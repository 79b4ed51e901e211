"""The seven provider emulators behind one description, and a vidgate config routing to them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.adapter_helpers import AdapterContract, KeyLeak, KeyPoll, refused, single_key_leaks
from tests.emulators import fal, nanogpt, openai, openrouter, replicate, runway, veo
from tests.emulators.harness import Fault, LoopbackServer
from vidgate.backends import fal as fal_adapter
from vidgate.backends import nanogpt as nanogpt_adapter
from vidgate.backends import openai as openai_adapter
from vidgate.backends import openrouter as openrouter_adapter
from vidgate.backends import replicate as replicate_adapter
from vidgate.backends import runway as runway_adapter
from vidgate.backends import veo as veo_adapter
from vidgate.backends.base import GenerationFailed


@dataclass
class ProviderCase:
    name: str
    provider_model: str
    env_var: str
    make: Callable[[], tuple[Any, Any]]  # -> (asgi app, state with the knobs)
    api_key: str
    min_poll_s: float = 0.1  # what the adapter may be configured down to
    state: Any = None
    server: LoopbackServer | None = None
    extra_options: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, int] = field(default_factory=dict)
    # How the adapter contract tests (tests/integration) drive this provider's adapter.
    adapter: AdapterContract = field(kw_only=True)

    @property
    def model(self) -> str:
        return f"{self.name}-video"

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url + self.adapter.base_path

    def reset(self) -> None:
        state = self.state
        if hasattr(state, "reset"):
            state.reset()
        else:
            fresh = type(state)()
            for name in ("queue_s", "run_s", "output_ttl_s", "status_override"):
                setattr(state, name, getattr(fresh, name))
            state.faults.clear()


def _dataclass_emulator(module: Any, state_cls: Any, **knobs: Any) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        state = state_cls(**knobs)
        return module.create_app(state), state

    return make


def _class_emulator(cls: Any, **knobs: Any) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        emulator = cls(**knobs)
        return emulator.app, emulator

    return make


# The keys the adapter tests' emulators accept (the fal, Replicate and OpenAI ones use the
# emulators' own API_KEY).
NANOGPT_KEY = "sk-nano-SECRET-0123-4567-89ab"
NANOGPT_OTHER_KEY = "sk-nano-other-account"  # a valid key of another account
RUNWAY_KEY = "key_runway_SECRET_0123456789abcdef"
VEO_KEY = "AIzaSy-veo-SECRET-key-0123456789"

FAL_ADAPTER = AdapterContract(
    build=fal_adapter.build,
    emulator=_dataclass_emulator(fal, fal.FalState, queue_s=0.15, run_s=0.2),
    api_key=fal.API_KEY,
    model="fal-ai/kling-video/v2.1/standard/text-to-video",
    request_model="kling",
    prompt="a red fox running through snow",
    submit_without_id={"status": "IN_QUEUE"},
    key_leaks=single_key_leaks(
        fal.API_KEY,
        {"detail": f"bad credentials: Key {fal.API_KEY}", "error": fal.API_KEY},
        ("submit", "status", "result", "download"),
    ),
    refused_key_polls=(
        refused(401, api_key="fal-wrong-key-987654321"),
        refused(403, fault=Fault(status=403)),
    ),
)

REPLICATE_ADAPTER = AdapterContract(
    build=replicate_adapter.build,
    emulator=_dataclass_emulator(replicate, replicate.ReplicateState, queue_s=0.15, run_s=0.2),
    api_key=replicate.API_KEY,
    model="kwaivgi/kling-v2.1",
    request_model="kling",
    prompt="a red fox running through snow",
    submit_without_id={"status": "starting"},
    key_leaks=single_key_leaks(
        replicate.API_KEY,
        {
            "title": "Oops",
            "detail": f"token {replicate.API_KEY} is not allowed",
            "error": replicate.API_KEY,
        },
        ("submit", "status", "download"),
    ),
    refused_key_polls=(
        refused(401, api_key="wrong-key-987654321"),
        refused(403, fault=Fault(status=403)),
    ),
)

OPENAI_ADAPTER = AdapterContract(
    build=openai_adapter.build,
    emulator=_dataclass_emulator(openai, openai.OpenAIState, queue_s=0.15, run_s=0.2),
    api_key=openai.API_KEY,
    model="sora-2",
    request_model="sora",
    prompt="a red fox running through snow",
    submit_without_id={"object": "video", "status": "queued"},
    key_leaks=single_key_leaks(
        openai.API_KEY,
        {
            "error": {
                "message": f"key {openai.API_KEY} is revoked",
                "type": "x",
                "code": openai.API_KEY,
            }
        },
        ("submit", "status", "download"),
    ),
    refused_key_polls=(
        refused(401, api_key="wrong-key-987654321"),
        refused(403, fault=Fault(status=403)),
    ),
)

OPENROUTER_ADAPTER = AdapterContract(
    build=openrouter_adapter.build,
    emulator=_dataclass_emulator(openrouter, openrouter.OpenRouterState, queue_s=0.1, run_s=0.15),
    api_key=openrouter.API_KEY,
    model="google/veo-3.1",
    request_model="veo-3.1",
    prompt="a red fox running through snow",
    submit_without_id={"status": "pending", "polling_url": "/api/v1/videos/"},
    key_leaks=single_key_leaks(
        openrouter.API_KEY,
        {"error": {"code": 401, "message": f"key {openrouter.API_KEY} is not valid"}},
        ("submit", "status", "download"),
    ),
    refused_key_polls=(
        refused(401, api_key="sk-or-v1-wrong-987654321"),
        refused(403, fault=Fault(status=403)),
    ),
    base_path="/api",
)

_NANOGPT_ECHO = {
    "error": {"message": f"x-api-key {NANOGPT_KEY} refused", "type": "CONTENT_POLICY_VIOLATION"}
}
NANOGPT_ADAPTER = AdapterContract(
    build=nanogpt_adapter.build,
    emulator=_class_emulator(
        nanogpt.NanoGPTEmulator,
        api_key=NANOGPT_KEY,
        other_keys=(NANOGPT_OTHER_KEY,),
        queue_s=0.08,
        run_s=0.25,
    ),
    api_key=NANOGPT_KEY,
    model="veo3-fast-video",
    request_model="nano-veo",
    prompt="a fox in the snow",
    submit_without_id={"status": "pending", "cost": 0.35},
    key_leaks=(
        KeyLeak(
            "every-fault-and-operation",
            (
                Fault(status=500, body=_NANOGPT_ECHO),
                Fault(status=429, body=_NANOGPT_ECHO),
                Fault(status=400, body=_NANOGPT_ECHO),
                Fault(status=401, body={"error": 401, "message": f"bad key {NANOGPT_KEY}"}),
                Fault(kind="malformed", body=f"<html>{NANOGPT_KEY}</html>"),
                Fault(kind="delay", delay_s=0.5),
                Fault(kind="drop"),
            ),
            ("submit", "status", "cancel", "download"),
            timeout_s=0.2,
            may_succeed=lambda operation, fault: True,
            error_count_ok=lambda count: count > 20,
            redacted=True,
            echoed_failure=lambda job_id, key: {
                "data": {"status": "FAILED", "error": key, "userFriendlyError": f"no {key}"}
            },
        ),
    ),
    refused_key_polls=(
        refused(403, api_key=NANOGPT_OTHER_KEY),
        refused(401, api_key="sk-nano-wrong"),
        KeyPoll(
            fault=Fault(status=400, body={"error": 400, "message": "bad id"}),
            raises=GenerationFailed,
            match="HTTP 400: bad id",
        ),
    ),
)

_RUNWAY_ECHO = {"error": f"Bearer {RUNWAY_KEY} was refused"}
RUNWAY_ADAPTER = AdapterContract(
    build=runway_adapter.build,
    emulator=_class_emulator(runway.RunwayEmulator, api_key=RUNWAY_KEY, queue_s=0.08, run_s=0.25),
    api_key=RUNWAY_KEY,
    model="gen4_turbo",
    request_model="runway-gen4",
    prompt="a paper boat in the rain",
    submit_without_id={"status": "PENDING"},
    key_leaks=(
        KeyLeak(
            "every-fault-and-operation",
            (
                Fault(status=500, body=_RUNWAY_ECHO),
                Fault(status=429, body=_RUNWAY_ECHO),
                Fault(status=400, body=_RUNWAY_ECHO),
                Fault(kind="malformed", body=f"<html>{RUNWAY_KEY}</html>"),
                Fault(kind="delay", delay_s=0.5),
                Fault(kind="drop"),
            ),
            ("submit", "status", "cancel", "download"),
            timeout_s=0.2,
            may_succeed=lambda operation, fault: True,
            error_count_ok=lambda count: count > 15,
            wrong_key_submit="HTTP 401",
            redacted=True,
            echoed_failure=lambda job_id, key: {
                "id": job_id,
                "status": "FAILED",
                "failure": f"bad {key}",
            },
        ),
    ),
    refused_key_polls=(
        refused(401, api_key=RUNWAY_KEY[::-1]),
        refused(403, fault=Fault(status=403, body={"error": "Forbidden"})),
        KeyPoll(raises=None),  # and the job is still there, running
    ),
)

_VEO_ECHO = {"error": {"code": 500, "status": "INTERNAL", "message": f"key {VEO_KEY} broke"}}
_VEO_LEAK_FAULTS = (
    Fault(status=500, body=_VEO_ECHO),
    Fault(status=429, body=_VEO_ECHO),
    Fault(status=400, body=_VEO_ECHO),
    Fault(kind="malformed", body=f"<html>{VEO_KEY}</html>"),
    Fault(kind="delay", delay_s=0.5),
    Fault(kind="drop"),
)
VEO_ADAPTER = AdapterContract(
    build=veo_adapter.build,
    emulator=_class_emulator(veo.VeoEmulator, api_key=VEO_KEY, queue_s=0.05, run_s=0.25),
    api_key=VEO_KEY,
    model="veo-3.0-generate-001",
    request_model="veo3-video",
    prompt="a lighthouse at dusk",
    submit_without_id={"done": False},
    key_leaks=(
        KeyLeak(
            "every-fault-and-operation",
            _VEO_LEAK_FAULTS,
            ("submit", "status", "download"),
            timeout_s=0.2,
            # Only a download may "succeed": a non-JSON body is just bytes to it.
            may_succeed=lambda operation, fault: (
                operation == "download" and fault.kind == "malformed"
            ),
            # Every other attempt fails, and so does the wrong key's submit.
            error_count_ok=lambda count: count == 3 * len(_VEO_LEAK_FAULTS),
            wrong_key_submit="API key not valid",
            redacted=True,
            echoed_failure=lambda job_id, key: {
                "name": job_id,
                "done": True,
                "error": {"code": 3, "message": f"{key}?"},
            },
        ),
    ),
    refused_key_polls=(
        refused(403, api_key=""),
        # A wrong key is a 400 with reason API_KEY_INVALID at Google, not a 401.
        refused(400, api_key=VEO_KEY[::-1]),
        refused(401, fault=Fault(status=401)),
        KeyPoll(
            fault=Fault(
                status=400,
                body={"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad name"}},
            ),
            raises=GenerationFailed,
            match="HTTP 400: INVALID_ARGUMENT: bad name",
        ),
    ),
)


def all_cases() -> list[ProviderCase]:
    return [
        ProviderCase(
            "fal",
            "fal-ai/veo2",
            "FAL_KEY",
            _dataclass_emulator(fal, fal.FalState),
            fal.API_KEY,
            adapter=FAL_ADAPTER,
        ),
        ProviderCase(
            "replicate",
            "google/veo-2",
            "REPLICATE_API_TOKEN",
            _dataclass_emulator(replicate, replicate.ReplicateState),
            replicate.API_KEY,
            adapter=REPLICATE_ADAPTER,
        ),
        ProviderCase(
            "openai",
            "sora-2",
            "OPENAI_API_KEY",
            _dataclass_emulator(openai, openai.OpenAIState),
            openai.API_KEY,
            adapter=OPENAI_ADAPTER,
        ),
        ProviderCase(
            "veo",
            "veo-2.0-generate-001",
            "GEMINI_API_KEY",
            _class_emulator(veo.VeoEmulator),
            "veo-test-key",
            adapter=VEO_ADAPTER,
        ),
        ProviderCase(
            "runway",
            "gen4_turbo",
            "RUNWAYML_API_SECRET",
            _class_emulator(runway.RunwayEmulator),
            "runway-test-key",
            min_poll_s=5.0,
            adapter=RUNWAY_ADAPTER,
        ),
        ProviderCase(
            "nanogpt",
            "veo2-video",
            "NANOGPT_API_KEY",
            _class_emulator(nanogpt.NanoGPTEmulator),
            "sk-nano-test-key",
            adapter=NANOGPT_ADAPTER,
        ),
        ProviderCase(
            "openrouter",
            "google/veo-3.1",
            "OPENROUTER_API_KEY",
            _dataclass_emulator(openrouter, openrouter.OpenRouterState),
            openrouter.API_KEY,
            adapter=OPENROUTER_ADAPTER,
        ),
    ]


@contextlib.contextmanager
def emulators_running(cases: list[ProviderCase]) -> Iterator[list[ProviderCase]]:
    with contextlib.ExitStack() as stack:
        for case in cases:
            app, case.state = case.make()
            case.server = stack.enter_context(LoopbackServer(app))
        yield cases


def vidgate_config(
    cases: list[ProviderCase], *, poll_s: float = 0.2, timeout_s: float = 2.0, extra: str = ""
) -> str:
    lines = [
        "[limits]",
        "submits_per_minute = 1000000",
        "",
        "[worker]",
        "concurrency = 2",
        "heartbeat_s = 0.2",
        "idle_poll_s = 0.05",
        "lease_s = 5",
        "",
        "[storage]",
        "copy_attempts = 3",
        "",
    ]
    for case in cases:
        options = {"min_poll_interval_s": case.min_poll_s, **case.extra_options}
        rendered = ", ".join(f"{k} = {v!r}" for k, v in options.items())
        lines += [
            f"[providers.{case.name}]",
            f'base_url = "{case.base_url}"',
            f'api_key_env = "{case.env_var}"',
            f"poll_interval_s = {poll_s}",
            f"timeout_s = {timeout_s}",
            f"options = {{ {rendered} }}",
            "",
            f'[models."{case.model}"]',
            f'backend = "{case.name}"',
            f'provider_model = "{case.provider_model}"',
            "price_usd = 0.35",
            "deadline_s = 120",
            "",
            f'[models."{case.model}-deadline"]',
            f'backend = "{case.name}"',
            f'provider = "{case.name}"',
            f'provider_model = "{case.provider_model}"',
            "deadline_s = 2",
            "",
        ]
    return "\n".join(lines) + extra


def provider_env(cases: list[ProviderCase]) -> dict[str, str]:
    return {case.env_var: case.api_key for case in cases}
