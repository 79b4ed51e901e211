"""Soak: submit and follow runs without pause for N minutes while processes are restarted
(SIGTERM and SIGKILL), then count what was lost, doubled or answered with an unexpected 5xx.

Topology: on PostgreSQL (``--database-url``, or ``VIDGATE_BENCH_DATABASE_URL``) two
``serve --no-worker`` and two ``vidgate worker``; on SQLite one of each sharing the data
dir. Half the runs are testcard renders (240p, 1 s) and half are provider jobs at the fal
emulator, which runs in a process of its own and counts the jobs it was sent.

Clients behave as careful clients do: every submit carries an ``Idempotency-Key`` and is
sent again, to the next API process, when the connection fails; each accepted run is
followed by long-poll until it ends. A restart makes connections fail (expected, counted
apart); a 5xx answer is always counted as unexpected.

At the end, with submits stopped, every accepted run has ``--drain-s`` to end. A run that
has not ended, or that the API no longer knows, is lost. Two run ids for one idempotency
key, or two provider jobs for one run, are doubled. The report is printed and written to
``--report`` (``docs/soak.md`` by default) when ``--minutes`` is at least 5.

    make soak                      # 10 minutes on PostgreSQL, 3 restarts
    python -m bench.soak --minutes 1 --database-url ""   # SQLite
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import multiprocessing
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.providers import all_cases, provider_env, vidgate_config
from tests.servers import VIDGATE, free_port, run_cli

from bench.report import ROOT, run_facts
from bench.servers import fresh_database

TERMINAL = {"completed", "failed", "cancelled"}
CONFIG_EXTRA = """
[worker]
concurrency = 2
"""


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
    requests: int = 0
    restarts: list[str] = field(default_factory=list)
    submitted: int = 0


class Soak:
    def __init__(self, bases: list[str], key: str, models: list[str], tally: Tally) -> None:
        self.bases = bases
        self.key = key
        self.models = models
        self.tally = tally
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=2.0))
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
            except httpx.TransportError:
                self.tally.connection_failures += 1
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


@dataclass
class Findings:
    lost: list[str]
    doubled: list[str]
    statuses: collections.Counter[str]
    failures: collections.Counter[str]
    videos_checked: int


async def findings(setup: Setup, tally: Tally) -> Findings:
    """What became of every accepted run, asked once more after the drain."""
    lost, failures, statuses = [], collections.Counter[str](), collections.Counter[str]()
    async with httpx.AsyncClient(timeout=30, headers={"x-api-key": setup.key}) as http:
        for run_id in tally.accepted.values():
            body = tally.ended.get(run_id)
            if body is None:
                answer = await http.get(
                    setup.bases[0] + "/api/video/status", params={"requestId": run_id}
                )
                state = answer.json().get("status") if answer.status_code == 200 else None
                lost.append(f"{run_id}: HTTP {answer.status_code}, status {state}")
                continue
            statuses[f"{tally.models[run_id]}: {body['status']}"] += 1
            if body["status"] != "completed":
                failures[str(body.get("error") or body.get("userFriendlyError"))] += 1
        repeated = (await http.get(setup.fal_stats)).json()["repeated_prompts"]
        checked = 0
        for body in list(tally.ended.values())[:: max(1, len(tally.ended) // 10)]:
            url = body.get("videoUrl")
            if isinstance(url, str):
                video = await http.get(url)
                if video.status_code != 200 or video.content[4:8] != b"ftyp":
                    lost.append(f"{body['requestId']}: video {url} HTTP {video.status_code}")
                checked += 1
    doubled = [f"idempotency key {k} gave two run ids" for k in tally.doubled_keys]
    for idem, rows in (await stored_runs(setup.database_url)).items():
        if len(rows) > 1:
            doubled.append(f"{len(rows)} runs stored for idempotency key {idem}: {rows}")
        elif tally.accepted.get(idem) != rows[0]:
            lost.append(f"{rows[0]} (key {idem}) is stored but no client was told of it")
    doubled += [f"fal emulator got {p!r} more than once" for p in repeated]
    return Findings(lost, doubled, statuses, failures, checked)


QUERY = "SELECT idempotency_key, id FROM runs WHERE idempotency_key LIKE 'soak-%'"


async def stored_runs(url: str) -> dict[str, list[str]]:
    """The soak's runs as the database holds them, by idempotency key."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            rows = db.execute(QUERY).fetchall()
    else:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                rows = [tuple(row) for row in await conn.execute(text(QUERY))]
        finally:
            await engine.dispose()
    found: dict[str, list[str]] = collections.defaultdict(list)
    for idem, run_id in rows:
        found[idem].append(run_id)
    return found


def report(setup: Setup, tally: Tally, found: Findings, args: argparse.Namespace) -> str:
    facts = run_facts(datetime.now(UTC), {})
    lines = [
        "# Soak",
        "",
        "Written by `make soak` (`bench/soak.py`); edit the code, not this file.",
        "",
        f"- **date**: {facts['date']}, **commit**: {facts['commit']}",
        f"- **machine**: {facts.get('CPU', '?')}, {facts.get('memory', '?')}",
        f"- **store**: {setup.store}; {len(setup.bases)} x `serve --no-worker` and "
        f"{len(setup.procs) - len(setup.bases)} x `vidgate worker`; fal emulator in its own "
        "process",
        f"- **load**: {args.minutes:g} minutes, {args.rate:g} submits a second (half testcard "
        "240p 1 s, half fal jobs), each run followed by long-poll until it ends; then "
        f"{args.drain_s:g} s for the last runs to end",
        f"- **command**: `{' '.join(args.command)}` (`make soak` runs it on a PostgreSQL "
        "it starts)",
        "",
        "## Verdict",
        "",
        "| what | count |",
        "|---|---|",
        f"| runs submitted | {tally.submitted} |",
        f"| runs accepted (202) | {len(tally.accepted)} |",
        f"| runs lost (not ended, unknown, or video missing) | **{len(found.lost)}** |",
        f"| runs doubled (two run ids for a key, two provider jobs for a run) "
        f"| **{len(found.doubled)}** |",
        f"| unexpected answers (5xx, or a 4xx a correct client should not get) "
        f"| **{len(tally.unexpected)}** |",
        f"| requests sent | {tally.requests} |",
        f"| connections refused or cut by a restart, then sent again | "
        f"{tally.connection_failures} |",
        f"| finished videos fetched and checked (MP4 header) | {found.videos_checked} |",
        "",
        "## Restarts",
        "",
        *[f"- {r}" for r in tally.restarts],
        "",
        "## How the runs ended",
        "",
        *[f"- {k}: {v}" for k, v in sorted(found.statuses.items())],
        "",
    ]
    if found.failures:
        lines += ["Failures, by message:", ""]
        lines += [f"- {n} x {message}" for message, n in found.failures.most_common()]
        lines.append("")
    for title, items in (
        ("Lost", found.lost),
        ("Doubled", found.doubled),
        ("Unexpected answers", tally.unexpected),
    ):
        if items:
            lines += [f"## {title}", "", *[f"- {item}" for item in items[:50]], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2.0, help="submits a second")
    parser.add_argument("--drain-s", type=float, default=180.0)
    parser.add_argument(
        "--database-url", default=os.environ.get("VIDGATE_BENCH_DATABASE_URL"), help="PostgreSQL"
    )
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "soak.md")
    args = parser.parse_args()
    shown: list[str] = []  # the command, without the database's address
    for arg in sys.argv[1:]:
        if shown and shown[-1] == "--database-url":
            arg = "$URL"
        elif arg.startswith("--database-url="):
            arg = "--database-url=$URL"
        shown.append(arg)
    args.command = ["python", "-m", "bench.soak", *shown]
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        url = stack.enter_context(fresh_database(args.database_url)) if args.database_url else None
        setup = stack.enter_context(started(Path(tmp), url))
        tally = uvloop.run(soak(setup, args.minutes, args.restarts, args.rate, args.drain_s))
        found = uvloop.run(findings(setup, tally))
    written = report(setup, tally, found, args)
    print(written)
    if args.minutes >= 5:
        args.report.write_text(written)
        print(f"wrote {args.report}")
    bad = found.lost or found.doubled or tally.unexpected
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
