"""The six provider emulators behind one description, and a vidgate config routing to them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.emulators import fal, nanogpt, openai, replicate, runway, veo
from tests.emulators.harness import LoopbackServer


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

    @property
    def model(self) -> str:
        return f"{self.name}-video"

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    def reset(self) -> None:
        state = self.state
        if hasattr(state, "reset"):
            state.reset()
        else:
            fresh = type(state)()
            for name in ("queue_s", "run_s", "output_ttl_s", "status_override"):
                setattr(state, name, getattr(fresh, name))
            state.faults.clear()


def _dataclass_emulator(module: Any, state_cls: Any) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        state = state_cls()
        return module.create_app(state), state

    return make


def _class_emulator(cls: Any) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        emulator = cls()
        return emulator.app, emulator

    return make


def all_cases() -> list[ProviderCase]:
    return [
        ProviderCase(
            "fal", "fal-ai/veo2", "FAL_KEY", _dataclass_emulator(fal, fal.FalState), fal.API_KEY
        ),
        ProviderCase(
            "replicate",
            "google/veo-2",
            "REPLICATE_API_TOKEN",
            _dataclass_emulator(replicate, replicate.ReplicateState),
            replicate.API_KEY,
        ),
        ProviderCase(
            "openai",
            "sora-2",
            "OPENAI_API_KEY",
            _dataclass_emulator(openai, openai.OpenAIState),
            openai.API_KEY,
        ),
        ProviderCase(
            "veo",
            "veo-2.0-generate-001",
            "GEMINI_API_KEY",
            _class_emulator(veo.VeoEmulator),
            "veo-test-key",
        ),
        ProviderCase(
            "runway",
            "gen4_turbo",
            "RUNWAYML_API_SECRET",
            _class_emulator(runway.RunwayEmulator),
            "runway-test-key",
            min_poll_s=5.0,
        ),
        ProviderCase(
            "nanogpt",
            "veo2-video",
            "NANOGPT_API_KEY",
            _class_emulator(nanogpt.NanoGPTEmulator),
            "sk-nano-test-key",
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
