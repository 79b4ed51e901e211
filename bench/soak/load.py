"""The soak's load: the processes it restarts, and clients that submit and follow runs."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import os
import secrets
import signal
import subprocess
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from tests.providers import all_cases, provider_env, vidgate_config
from tests.servers import VIDGATE, free_port, run_cli

TERMINAL = {"completed", "failed", "cancelled"}


def _serve_fal(port: int) -> None:
    (case,) = [c for c in all_cases() if c.name == "fal"]
    app, state = case.make()
    state.queue_s, state.run_s = 0.5, 1.0
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="critical")


@dataclass
class Proc:
    """One vidgate process that can be restarted with the same arguments (the same port)."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=out,
                env={**os.environ, **self.env},
                start_new_session=True,
            )

    def stop(self, sig: signal.Signals) -> float:
        """Signal the process group and wait for it; returns the seconds it took to go."""
        assert self.popen is not None
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        return time.monotonic() - started


@dataclass
class Tally:
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> run id
    models: dict[str, str] = field(default_factory=dict)  # run id -> model
    ended: dict[str, dict[str, object]] = field(default_factory=dict)  # run id -> last body
    doubled_keys: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # 5xx and unexpected 4xx answers
    connection_failures: int = 0
    failure_kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    requests: int = 0
    restarts: list[str] = field(default_factory=list)
    submitted: int = 0


class Soak:
    def __init__(self, bases: list[str], key: str, models: list[str], tally: Tally) -> None:
        self.bases = bases
        self.key = key
        self.models = models
        self.tally = tally
        # Every run has its own long-poll open: no pool limit, or runs would wait on the
        # client rather than on vidgate.
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
        )
        self._next = 0

    def base(self) -> str:
        self._next = (self._next + 1) % len(self.bases)
        return self.bases[self._next]

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        json: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send to the next API process; on a failed connection try the next one, for up
        to two minutes (a restart). Every answer is returned."""
        deadline = time.monotonic() + 120
        while True:
            self.tally.requests += 1
            try:
                return await self.http.request(
                    method,
                    self.base() + path,
                    params=params,
                    json=json,
                    headers={"x-api-key": self.key, **(headers or {})},
                )
            except httpx.TransportError as exc:
                self.tally.connection_failures += 1
                self.tally.failure_kinds[type(exc).__name__] += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def check(self, response: httpx.Response, what: str) -> bool:
        if response.status_code >= 500 or response.status_code in (400, 401, 404, 409, 422):
            self.tally.unexpected.append(
                f"{what}: HTTP {response.status_code} {response.text:.200}"
            )
            return False
        return True

    async def submit(self, i: int) -> None:
        model = self.models[i % len(self.models)]
        body = {
            "model": model,
            "prompt": f"soak {i}",
            "duration": 1,
            "resolution": "240p" if model == "testcard-video" else "480p",
        }
        idem = f"soak-{i}"
        for _ in range(50):
            response = await self.request(
                "POST", "/api/generate-video", json=body, headers={"idempotency-key": idem}
            )
            if response.status_code == 202:
                run_id = response.json()["runId"]
                seen = self.tally.accepted.setdefault(idem, run_id)
                if seen != run_id:
                    self.tally.doubled_keys.append(idem)
                self.tally.models[run_id] = model
                await self.follow(run_id)
                return
            self.check(response, f"submit {idem}")
            await asyncio.sleep(1)

    async def follow(self, run_id: str) -> None:
        while True:
            response = await self.request(
                "GET", "/api/video/status", params={"requestId": run_id, "waitSeconds": 10}
            )
            if not self.check(response, f"status {run_id}"):
                await asyncio.sleep(1)
                continue
            if response.status_code != 200:
                await asyncio.sleep(1)
                continue
            body = response.json()
            if body["status"] in TERMINAL:
                self.tally.ended[run_id] = body
                return


@dataclass
class Setup:
    bases: list[str]
    key: str
    procs: list[Proc]
    fal_stats: str
    store: str
    fal_model: str
    database_url: str


@contextlib.contextmanager
def started(tmp: Path, database_url: str | None) -> Iterator[Setup]:
    """The fal emulator and the vidgate processes; stopped (SIGTERM) at the end."""
    (case,) = [c for c in all_cases() if c.name == "fal"]
    port = free_port()
    emulator = multiprocessing.get_context("spawn").Process(target=_serve_fal, args=(port,))
    emulator.start()
    procs: list[Proc] = []
    try:
        wait_for(f"http://127.0.0.1:{port}/_emulator/stats")
        case.server = types.SimpleNamespace(base_url=f"http://127.0.0.1:{port}")  # type: ignore[assignment]
        data_dir, config = tmp / "data", tmp / "soak.toml"
        config.write_text(vidgate_config([case], poll_s=1.0, extra=""))
        env = provider_env([case])
        if database_url:
            env["VIDGATE_DATABASE_URL"] = database_url
        name = f"soak-{secrets.token_hex(4)}"
        key = run_cli(["keys", "create", name], data_dir=data_dir, config=config, env=env)
        common = ["--data-dir", str(data_dir), "--config", str(config), "--log-level", "warning"]
        pairs = 2 if database_url else 1
        bases = []
        for i in range(pairs):
            api_port = free_port()
            bases.append(f"http://127.0.0.1:{api_port}")
            args = [*VIDGATE, "serve", "--no-worker", "--port", str(api_port), *common]
            procs.append(Proc(f"api{i}", args, env, tmp / f"api{i}.log"))
        for i in range(pairs):
            procs.append(Proc(f"worker{i}", [*VIDGATE, "worker", *common], env, tmp / f"w{i}.log"))
        for proc in procs:
            proc.start()
        for base in bases:
            wait_for(base + "/healthz")
        yield Setup(
            bases,
            key.stdout.split()[-1],
            procs,
            f"http://127.0.0.1:{port}/_emulator/stats",
            "PostgreSQL" if database_url else "SQLite",
            case.model,
            database_url or f"sqlite:///{(data_dir / 'vidgate.db').resolve()}",
        )
    finally:
        for proc in procs:
            if proc.popen is not None and proc.popen.poll() is None:
                proc.stop(signal.SIGTERM)
        emulator.terminate()
        emulator.join(timeout=10)


def wait_for(url: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


RESTART_PLAN = [("worker", signal.SIGKILL), ("api", signal.SIGTERM), ("api", signal.SIGKILL)]
"""What the i-th restart does (cycled): the first kills a worker mid-run."""


async def restarts(setup: Setup, count: int, seconds: float, tally: Tally) -> None:
    """``count`` restarts spread evenly over ``seconds``, each of the next process of its
    kind, with the signal the plan gives."""
    turn: collections.Counter[str] = collections.Counter()
    for i in range(count):
        await asyncio.sleep(seconds / (count + 1))
        kind, sig = RESTART_PLAN[i % len(RESTART_PLAN)]
        of_kind = [p for p in setup.procs if p.name.startswith(kind)]
        proc = of_kind[turn[kind] % len(of_kind)]
        turn[kind] += 1
        took = await asyncio.to_thread(proc.stop, sig)
        proc.start()
        tally.restarts.append(
            f"{time.strftime('%H:%M:%S')} {proc.name}: {sig.name} "
            f"(gone in {took:.1f} s), started again"
        )
        print(f"restart: {tally.restarts[-1]}", flush=True)


async def soak(
    setup: Setup, minutes: float, restart_count: int, rate: float, drain_s: float
) -> Tally:
    tally = Tally()
    client = Soak(setup.bases, setup.key, ["testcard-video", setup.fal_model], tally)
    seconds = minutes * 60
    tasks: list[asyncio.Task[None]] = []
    restarter = asyncio.create_task(restarts(setup, restart_count, seconds, tally))
    started_at = time.monotonic()
    i = 0
    while time.monotonic() - started_at < seconds:
        tasks.append(asyncio.create_task(client.submit(i)))
        i += 1
        await asyncio.sleep(1 / rate)
    await restarter
    done, pending = await asyncio.wait(tasks, timeout=drain_s)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            tally.unexpected.append(f"client: {task.exception()!r}")
    tally.submitted = i
    await client.http.aclose()
    return tally
