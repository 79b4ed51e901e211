"""Routes: a model served by fal, then Replicate, through the poller against both providers'
emulators over real loopback HTTP. A clear refusal sends the run on to the next route, an
answer that may have made a job never does, a route that keeps refusing is skipped for its
cool-down (then probed), and a run goes only where its preferences let it. The emulators
count every submit request they receive."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulators import fal, replicate
from tests.emulators.harness import Fault, LoopbackServer, free_port
from vidgate.backends import fal as fal_backend
from vidgate.backends import replicate as replicate_backend
from vidgate.backends.base import ProviderSettings, RemoteBackend
from vidgate.config import WorkerSettings
from vidgate.metrics import Metrics
from vidgate.runs import catalog as catalog_module
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.errors import InvalidRequest
from vidgate.runs.moderation import Moderation
from vidgate.runs.pricing import Pricing
from vidgate.runs.request import Limits
from vidgate.runs.routing import ProviderNotAllowed, Route
from vidgate.runs.status import Status
from vidgate.runs.submit import prepare_run
from vidgate.storage.local import LocalStorage
from vidgate.store.records import RunRecord
from vidgate.store.sql import SQLStore
from vidgate.worker.remote import RemotePoller
from vidgate.worker.remote.breaker import RouteBreakers

FAL_MODEL = "fal-ai/wan/v2.2/text-to-video"
REPLICATE_MODEL = "wan-video/wan-2.2-t2v-fast"


class Counted:
    """An ASGI app that counts the submit requests (POSTs) that reach it, answered or not."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.posts = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts += 1
        await self.app(scope, receive, send)


@dataclass
class Provider:
    state: Any
    counted: Counted
    backend: RemoteBackend


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Stack:
    store: SQLStore
    fal: Provider
    replicate: Provider
    catalog: Catalog
    breakers: RouteBreakers
    metrics: Metrics
    clock: Clock

    async def run(self, prompt: str = "a fox", *, model: str = "wan", **body: Any) -> RunRecord:
        """Submit one run (as the API would) and wait for its end."""
        return await self.finished(await self.submit(prompt, model=model, **body))

    async def submit(self, prompt: str = "a fox", *, model: str = "wan", **body: Any) -> str:
        new = prepare_run(
            {"model": model, "prompt": prompt, **body},
            api_key_id="k",
            catalog=self.catalog,
            limits=Limits(),
            moderation=Moderation([], [], "blocked"),
            now=time.time(),
        )
        run, _ = await self.store.submit(new, idempotency_ttl_s=60)
        return run.id

    async def finished(self, run_id: str) -> RunRecord:
        deadline = time.monotonic() + 10
        while not (current := await self.store.get(run_id)).status.is_terminal:
            assert time.monotonic() < deadline, current
            await asyncio.sleep(0.02)
        return current


def spec(
    *,
    failures: int = 5,
    cooldown_s: float = 30.0,
    fallback_on_content_policy: bool = False,
    max_in_flight: int | None = None,
) -> ModelSpec:
    routes = (
        Route(
            "fal",
            "fal",
            FAL_MODEL,
            Pricing(per_video_usd=0.4),
            max_in_flight=max_in_flight,
            breaker_failures=failures,
            breaker_cooldown_s=cooldown_s,
        ),
        Route("replicate", "replicate", REPLICATE_MODEL, Pricing(per_video_usd=0.25)),
    )
    first = routes[0]
    return ModelSpec(
        slug="wan",
        backend=first.backend,
        name="Wan",
        provider=first.provider,
        provider_model=first.provider_model,
        pricing=first.pricing,
        parameters=catalog_module.generic_parameters(),
        routes=routes,
        fallback_on_content_policy=fallback_on_content_policy,
    )


@contextlib.contextmanager
def provider(name: str, module: Any, state: Any, http: httpx.AsyncClient) -> Iterator[Provider]:
    counted = Counted(module.create_app(state))
    with LoopbackServer(counted) as server:
        settings = ProviderSettings(
            name=name,
            base_url=server.base_url,
            api_key=module.API_KEY,
            timeout_s=0.3,
            options={"min_poll_interval_s": 0.03},
        )
        yield Provider(state, counted, module.build(http, settings))


@contextlib.asynccontextmanager
async def routing(
    tmp_path: Path,
    http: httpx.AsyncClient,
    model: ModelSpec,
    *,
    fal_url: str | None = None,
    database_url: str | None = None,
    retry_ambiguous: tuple[str, ...] = (),
) -> AsyncIterator[Stack]:
    store = await SQLStore.open(database_url or f"sqlite:///{tmp_path / 'store.db'}")
    fal_state = fal.FalState(queue_s=0.03, run_s=0.03)
    replicate_state = replicate.ReplicateState(queue_s=0.03, run_s=0.03)
    with (
        provider("fal", _FalModule, fal_state, http) as fal_side,
        provider("replicate", _ReplicateModule, replicate_state, http) as replicate_side,
    ):
        if fal_url is not None:  # nothing listens there: no connection
            fal_side.backend = fal_backend.build(
                http, ProviderSettings(name="fal", base_url=fal_url, api_key="k", timeout_s=0.3)
            )
        clock, metrics = Clock(), Metrics()
        breakers = RouteBreakers(clock=clock, metrics=metrics)
        catalog = Catalog({"wan": model})
        poller = RemotePoller(
            store,
            LocalStorage(tmp_path / "files", b"s" * 32),
            catalog,
            {"fal": fal_side.backend, "replicate": replicate_side.backend},
            {"fal": 0.03, "replicate": 0.03},
            WorkerSettings(idle_poll_s=0.02, lease_s=5),
            "p1",
            submit_backoff_s=0.02,
            retry_ambiguous=retry_ambiguous,
            breakers=breakers,
            metrics=metrics,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        try:
            yield Stack(store, fal_side, replicate_side, catalog, breakers, metrics, clock)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=20)
            await store.close()


class _FalModule:
    API_KEY = fal.API_KEY
    create_app = staticmethod(fal.create_app)
    build = staticmethod(fal_backend.build)


class _ReplicateModule:
    API_KEY = replicate.API_KEY
    create_app = staticmethod(replicate.create_app)
    build = staticmethod(replicate_backend.build)


REFUSALS = [
    pytest.param(Fault(status=429), id="429"),
    pytest.param(Fault(status=503, headers={"Retry-After": "1"}), id="503-retry-after"),
    pytest.param(Fault(status=401, body={"detail": "Invalid key"}), id="refused-key"),
]


@pytest.mark.parametrize("refusal", REFUSALS)
async def test_a_refused_first_route_hands_the_run_to_the_next(
    tmp_path: Path, http: httpx.AsyncClient, refusal: Fault
) -> None:
    async with routing(tmp_path, http, spec()) as stack:
        stack.fal.state.faults.push("submit", refusal)
        run = await stack.run()
    assert run.status is Status.COMPLETED, run.error
    assert (stack.fal.counted.posts, stack.replicate.counted.posts) == (1, 1)
    assert (stack.fal.state.submits, stack.replicate.state.submits) == (0, 1)
    assert run.provider == "replicate" and run.backend == "replicate"
    assert run.cost == 0.25  # Replicate's price, not fal's
    assert stack.replicate.state.submit_bodies[0]["input"]["prompt"] == "a fox"


async def test_no_connection_to_the_first_route_hands_the_run_on(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with routing(tmp_path, http, spec(), fal_url=f"http://127.0.0.1:{free_port()}") as stack:
        run = await stack.run()
    assert run.status is Status.COMPLETED and run.provider == "replicate"
    assert stack.replicate.counted.posts == 1


LOST = [
    pytest.param(Fault(kind="drop"), id="dropped"),
    pytest.param(Fault(status=502), id="502-after-creating"),
]


@pytest.mark.parametrize("lost", LOST)
async def test_a_lost_answer_from_the_first_route_fails_the_run_and_never_pays_twice(
    tmp_path: Path, http: httpx.AsyncClient, lost: Fault
) -> None:
    async with routing(tmp_path, http, spec()) as stack:
        stack.fal.state.faults.push("submit_response", lost)
        run = await stack.run()
        await asyncio.sleep(0.2)  # nothing more is sent anywhere
    assert run.status is Status.FAILED
    assert run.error is not None and "not submitted again to avoid paying twice" in run.error
    assert "it was not sent to another provider" in run.error, run.error
    assert (stack.fal.counted.posts, stack.fal.state.submits) == (1, 1)  # a job was made
    assert stack.replicate.counted.posts == 0
    assert run.provider == "fal" and run.cost == 0  # failed runs cost nothing


async def test_after_a_lost_answer_sent_again_the_run_stays_on_that_route(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """Where sending again is allowed (here by opting in), it goes to the same route only,
    even when that route then refuses: the job may exist there."""
    async with routing(tmp_path, http, spec(), retry_ambiguous=("fal",)) as stack:
        stack.fal.state.faults.push("submit", Fault(status=502))  # unclear: a job may exist
        stack.fal.state.faults.push("submit", Fault(status=429))  # then a clear refusal
        run = await stack.run()
    assert run.status is Status.COMPLETED and run.provider == "fal"
    assert stack.fal.counted.posts == 3 and stack.replicate.counted.posts == 0


async def test_a_passing_refusal_before_a_lasting_one_means_try_again_later(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """fal is busy (429, for now), Replicate refuses the key (for good): the run is not
    failed, it goes back to the routes later, and fal takes it."""
    async with routing(tmp_path, http, spec()) as stack:
        stack.fal.state.faults.push("submit", Fault(status=429))
        stack.replicate.state.faults.push("submit", Fault(status=401, body={"detail": "bad key"}))
        run = await stack.run()
    assert run.status is Status.COMPLETED and run.provider == "fal", run.error
    assert (stack.fal.counted.posts, stack.replicate.counted.posts) == (2, 1)


async def test_a_pinned_run_whose_route_is_skipped_waits_for_that_route_only(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """A job may exist at the route a run is pinned to: when that route is skipped (its
    circuit opened meanwhile), the run waits for it, still pinned, and no other provider is
    asked."""
    async with routing(tmp_path, http, spec(failures=1), retry_ambiguous=("fal",)) as stack:
        stack.fal.state.faults.push("submit", Fault(status=502))  # unclear: a job may exist
        stack.fal.state.faults.push("submit", Fault(status=429))  # a refusal opens the circuit
        run_id = await stack.submit()
        deadline = time.monotonic() + 10
        while (parked := await stack.store.get(run_id)).available_at < time.time() + 5:
            assert time.monotonic() < deadline, parked
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    assert stack.breakers.snapshot()["wan/fal"]["state"] == "open"
    assert parked.provider == "fal" and (parked.provider_state or {}).get("pinned") == "fal"
    assert stack.replicate.counted.posts == 0 and stack.fal.counted.posts == 2


async def test_a_content_policy_refusal_fails_over_only_where_the_model_allows(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    refusal = Fault(
        status=422,
        body={"detail": [{"type": "content_policy_violation", "msg": "flagged", "loc": ["body"]}]},
    )
    async with routing(tmp_path, http, spec()) as stack:
        stack.fal.state.faults.push("submit", refusal)
        strict = await stack.run()
    assert strict.status is Status.FAILED and strict.is_nsfw, strict.error
    assert stack.replicate.counted.posts == 0
    async with routing(tmp_path / "2", http, spec(fallback_on_content_policy=True)) as stack:
        stack.fal.state.faults.push("submit", refusal)
        allowed = await stack.run()
    assert allowed.status is Status.COMPLETED and allowed.provider == "replicate"


async def test_a_route_over_its_limit_passes_runs_to_the_next(
    tmp_path: Path, http: httpx.AsyncClient, database_url: str
) -> None:
    async with routing(tmp_path, http, spec(max_in_flight=1), database_url=database_url) as stack:
        stack.fal.state.run_s = 0.6
        first = await stack.submit("first")
        while (await stack.store.get(first)).provider_request_id is None:
            await asyncio.sleep(0.01)
        second = await stack.submit("second")  # fal has one in flight: its limit
        runs = [await stack.finished(first), await stack.finished(second)]
        third = await stack.run("third")  # room again
    assert [r.provider for r in runs] == ["fal", "replicate"]
    assert all(r.status is Status.COMPLETED for r in runs)
    assert third.provider == "fal" and stack.fal.counted.posts == 2
    assert 'reason="over_limit"} 1.0' in stack.metrics.render().decode()


async def test_a_failing_route_is_skipped_for_its_cool_down_then_probed(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with routing(tmp_path, http, spec(failures=2, cooldown_s=30)) as stack:
        stack.fal.state.faults.push("submit", Fault(status=429), times=3)
        served = [(await stack.run()).provider for _ in range(2)]
        assert stack.fal.counted.posts == 2  # both refused: the circuit opens
        assert stack.breakers.snapshot()["wan/fal"]["state"] == "open"
        served += [(await stack.run()).provider for _ in range(2)]
        assert stack.fal.counted.posts == 2  # skipped: not asked while open
        stack.clock.now += 31  # the cool-down is over: the next run probes fal
        stack.fal.state.faults.clear()
        probe = await stack.run()
        after = await stack.run()
    assert served == ["replicate"] * 4
    assert (probe.provider, after.provider) == ("fal", "fal")
    assert probe.status is Status.COMPLETED and stack.fal.counted.posts == 4
    assert stack.replicate.counted.posts == 4
    assert "wan/fal" not in stack.breakers.snapshot()  # closed again
    rendered = stack.metrics.render().decode()
    assert 'vidgate_route_circuit_open{model="wan",provider="fal"} 0.0' in rendered
    assert 'provider="fal",reason="circuit_open"} 2.0' in rendered


async def test_a_failed_probe_opens_the_circuit_again(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with routing(tmp_path, http, spec(failures=1, cooldown_s=30)) as stack:
        stack.fal.state.faults.push("submit", Fault(status=429), times=2)
        await stack.run()  # refused: open
        stack.clock.now += 31
        probe = await stack.run()  # the probe is refused: open again
        skipped = await stack.run()
    assert (probe.provider, skipped.provider) == ("replicate", "replicate")
    assert stack.fal.counted.posts == 2


async def test_request_preferences_choose_the_routes(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with routing(tmp_path, http, spec()) as stack:
        ordered = await stack.run(provider={"order": ["replicate"]})
        only = await stack.run(provider={"only": ["fal"]})
        ignored = await stack.run(provider={"ignore": ["fal"]})
        stack.fal.state.faults.push("submit", Fault(status=429))
        stack.replicate.state.faults.push("submit", Fault(status=429))
        alone = await stack.run(provider={"only": ["fal"]})  # refused: tried again, on fal only
    assert [r.provider for r in (ordered, only, ignored, alone)] == [
        "replicate",
        "fal",
        "replicate",
        "fal",
    ]
    assert all(r.status is Status.COMPLETED for r in (ordered, only, ignored, alone))
    assert stack.fal.counted.posts == 3 and stack.replicate.counted.posts == 2
    assert stack.replicate.state.faults.take("submit") is not None  # never asked
    assert ordered.cost == 0.25 and only.cost == 0.4


def _prepare(model: ModelSpec, body: dict[str, Any], **kwargs: Any) -> Any:
    return prepare_run(
        {"model": "wan", "prompt": "p", **body},
        api_key_id="k",
        catalog=Catalog({"wan": model}),
        limits=Limits(),
        moderation=Moderation([], [], "blocked"),
        now=time.time(),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"provider": ["fal"]}, "'provider' must be an object"),
        ({"provider": {"first": ["fal"]}}, "unknown key(s) 'first'"),
        ({"provider": {"only": "fal"}}, "'provider.only' must be a list of provider names"),
        ({"provider": {"only": ["runway"]}}, "'provider.only' names 'runway', not a provider"),
        ({"provider": {"ignore": ["fal", "replicate"]}}, "leave no provider of model 'wan'"),
    ],
)
def test_bad_preferences_are_refused_with_what_to_change(
    body: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _prepare(spec(), body)
    assert message in str(refused.value)


def test_preferences_and_key_restrictions_at_submit() -> None:
    import dataclasses

    assert _prepare(spec(), {}).routes is None  # every route, in order
    assert _prepare(spec(), {"provider": {"order": ["replicate"]}}).routes == "replicate,fal"
    assert _prepare(spec(), {}).cost == 0.4  # held at the dearest route until one is chosen
    assert _prepare(spec(), {}, allowed_providers=["replicate"]).routes == "replicate"
    with pytest.raises(ProviderNotAllowed, match="this API key may use only the providers runway"):
        _prepare(spec(), {}, allowed_providers=["runway"])
    forbidding = dataclasses.replace(spec(), allow_provider_preferences=False)
    with pytest.raises(InvalidRequest, match="allow_provider_preferences = false"):
        _prepare(forbidding, {"provider": {"only": ["fal"]}})
    assert _prepare(forbidding, {}).routes is None


def test_key_provider_commands_check_the_names(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vidgate.cli import app

    config = tmp_path / "c.toml"
    config.write_text(
        '[providers.fal]\nbase_url = "http://f"\n[providers.replicate]\nbase_url = "http://r"\n'
    )
    options = ["--data-dir", str(tmp_path / "data"), "--config", str(config)]
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(app, [*args, *options], env={"VIDGATE_DATABASE_URL": ""})

    unknown = cli("keys", "create", "k", "--providers", "fal,runway")
    assert unknown.exit_code == 2
    assert "unknown provider(s) runway; the configured providers are fal, replicate" in (
        unknown.stderr
    )
    assert cli("keys", "create", "k", "--providers", "replicate, fal").exit_code == 0
    assert "providers replicate,fal" in cli("keys", "list").stdout
    both = cli("keys", "update", "k", "--providers", "fal", "--any-provider")
    assert both.exit_code == 2 and "not both" in both.stderr
    narrowed = cli("keys", "update", "k", "--providers", "fal")
    assert narrowed.exit_code == 0 and "providers fal" in narrowed.stdout
    assert "any provider" in cli("keys", "update", "k", "--any-provider").stdout
