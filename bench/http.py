"""HTTP throughput, measured by wrk with one thread (``wrk -t1``), each load bounded in time
and aimed at 127.0.0.1, every figure beside baselines measured in the same run:

* nginx, one process, serving a status body of vidgate as a static file;
* a trivial FastAPI route (``bench/baseline_app.py``) on uvicorn and on granian;
* for the status routes, under the very load the routes get (random runs, the API key):
  the servers' own ceiling, a raw ASGI callable answering nginx's static body with no
  work at all (``bench/raw_app.py``), on uvicorn and on granian; and the least a status
  poll with a real read can do (``bench/minimal_status_app.py``, on granian): raw ASGI,
  the key in a dict, one SQLite read of the same stored runs.

vidgate figures:

* the two status routes on default ``vidgate serve`` (in-process worker, SQLite, one
  process), each request asking for a random one of 100,000 stored runs (``bench/seed.py``
  says which);
* durable submits on SQLite and on PostgreSQL, with ``serve --no-worker``: an in-process
  worker would start rendering every testcard run submitted, on the same cores as the
  server and wrk, and the figure would measure the renders instead of the submits.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from bench import nginx, seed, wrk
from bench.report import Figure, Report, shown_command
from bench.servers import Vidgate, free_port, fresh_database, python_command, run_server

STATUS_C, SUBMIT_C = 64, 16
STORED_RUNS = 100_000
CONFIG = "[limits]\nsubmits_per_minute = 100000000\n"
STATUS_GOAL_RATIO, STATUS_GOAL_P99_MS = 0.30, 10.0
SUBMIT_GOAL_RPS, SUBMIT_GOAL_P99_MS = 2000.0, 50.0
BASELINES = "HTTP baselines (wrk -t1)"
STATUS = f"HTTP status routes (wrk -t1 -c{STATUS_C}; default `vidgate serve`, SQLite)"
SUBMIT = f"HTTP submits (wrk -t1 -c{SUBMIT_C}; `vidgate serve --no-worker`)"
STATUS_PATH = "/api/video/status"
LEGACY_PATH = "/api/generate-video/status"
SUBMIT_BODY = {"model": "testcard-video", "prompt": "bench"}
"""The body ``lua/submit.lua`` sends."""
SERVERS = {
    "nginx": "nginx, static status JSON",
    "uvicorn": "FastAPI /ping on uvicorn",
    "granian": "FastAPI /ping on granian",
}
MINIMAL = "minimal status route on granian (raw ASGI, key in a dict, one SQLite read)"
CEILINGS = {
    "uvicorn": "raw ASGI on uvicorn, no work (the status routes' load)",
    "granian": "raw ASGI on granian, no work (the status routes' load)",
}
"""The servers alone, answering a status body under the status routes' load, by server."""

Result = wrk.WrkResult | str
"""What a load gave: a result, or why there is none."""


@dataclass
class Load:
    """Runs wrk loads (a short warm-up first, not counted) and notes their commands."""

    report: Report
    seconds: float
    warmup_s: float = 1.0
    hide: dict[str, str] = field(default_factory=dict)
    """Text replaced in the commands shown: temporary paths, API keys."""

    def measure(
        self,
        label: str,
        url: str,
        connections: int,
        script: str = "plain.lua",
        script_args: tuple[str, ...] = (),
        headers: dict[str, str] | None = None,
    ) -> Result:
        def cmd(seconds: float) -> list[str]:
            return wrk.command(
                url,
                connections=connections,
                seconds=seconds,
                script=script,
                script_args=script_args,
                headers=headers,
            )

        self.report.command(f"wrk, {label}", shown_command(cmd(self.seconds), self.hide))
        try:
            if self.warmup_s:
                wrk.run(cmd(self.warmup_s), self.warmup_s)
            result = wrk.run(cmd(self.seconds), self.seconds)
        except wrk.WrkError as exc:
            return f"broken: {exc}"
        return result.broken or result


def http_bench(report: Report, seconds: float, postgres_url: str | None) -> None:
    report.note(
        f"HTTP: wrk with one thread (`wrk -t1`), {seconds:g} s per load after a "
        f"{Load.warmup_s:g} s warm-up that is not counted, on 127.0.0.1: wrk, the server and "
        "its database share this "
        "machine's cores. A load with any answer of status 400 or more, or any socket "
        "error, is shown as broken, not as a figure. Ratio: req/s over nginx's req/s at "
        "the same number of connections; the detail gives the ratios to the other "
        "baselines too. nginx and the FastAPI baselines get one request again and again "
        "(`bench/lua/plain.lua`). The raw ASGI and minimal status baselines get the status "
        "routes' own load (`bench/lua/status.lua`: a random run each time, with the API "
        "key); the raw ones answer the static body nginx serves, doing no work at all: "
        "their servers' ceiling for a status route. "
        "`$TMP` is the run's temporary directory."
    )
    report.note(
        "Submits: `serve --no-worker`, since an in-process worker would render every "
        "testcard run submitted on the same cores; each on an empty database: SQLite in a "
        "new data dir, PostgreSQL in a new database of the server `make bench` starts "
        "(`scripts/postgres-for-tests.sh`: fsync and synchronous_commit off). The submit "
        "rate limit is raised (`[limits] submits_per_minute = 100000000`)."
    )
    with tempfile.TemporaryDirectory(prefix="vidgate-bench-") as name:
        load = Load(report, seconds, hide={name: "$TMP"})
        tmp = Path(name)
        status, body, beside = status_loads(load, tmp)
        baselines = baseline_loads(load, tmp, body)
        submits = submit_loads(load, tmp, postgres_url)

    def compared(connections: int) -> dict[str, float | None]:
        return {f"{n} -c{connections}": rps(baselines[n, connections]) for n in SERVERS}

    for (server, connections), result in baselines.items():
        nginx_rps = None if server == "nginx" else rps(baselines["nginx", connections])
        figure = _figure(BASELINES, f"{SERVERS[server]}, -c{connections}", result, {})
        baseline = "" if server == "nginx" else f"nginx -c{connections}"
        report.add(replace(figure, baseline=baseline, baseline_value=nginx_rps))
    nginx_rps = rps(baselines["nginx", STATUS_C])
    for label, result in beside.items():
        figure = _figure(BASELINES, f"{label}, -c{STATUS_C}", result, {})
        report.add(replace(figure, baseline=f"nginx -c{STATUS_C}", baseline_value=nginx_rps))
    goal = f">= {STATUS_GOAL_RATIO:.2f}x nginx and p99 < {STATUS_GOAL_P99_MS:g} ms"
    for what, result in status.items():
        versus = compared(STATUS_C) | {
            "minimal status route": rps(beside[MINIMAL]),
            **{f"raw {server}": rps(beside[label]) for server, label in CEILINGS.items()},
        }
        figure = _figure(STATUS, what, result, versus, goal)
        if figure.ratio is not None and isinstance(result, wrk.WrkResult):
            met = figure.ratio >= STATUS_GOAL_RATIO and result.p99_ms < STATUS_GOAL_P99_MS
            figure = replace(figure, met=met)
        report.add(figure)
    goal = f">= {SUBMIT_GOAL_RPS:,.0f} req/s and p99 < {SUBMIT_GOAL_P99_MS:g} ms"
    for what, result in submits.items():
        on_sqlite = "SQLite" in what
        figure = _figure(SUBMIT, what, result, compared(SUBMIT_C), goal if on_sqlite else "")
        if on_sqlite and isinstance(result, wrk.WrkResult):
            met = result.rps >= SUBMIT_GOAL_RPS and result.p99_ms < SUBMIT_GOAL_P99_MS
            figure = replace(figure, met=met)
        report.add(figure)


def rps(result: Result) -> float | None:
    return None if isinstance(result, str) else result.rps


def _figure(
    section: str, what: str, result: Result, compared: dict[str, float | None], goal: str = ""
) -> Figure:
    """A figure whose baseline is the first of ``compared`` (nginx); the detail has its
    latency and its ratios to the others."""
    baseline, baseline_rps = next(iter(compared.items()), ("", None))
    if isinstance(result, str):
        return Figure(section, what, None, "req/s", baseline, baseline_rps, goal, note=result)
    detail = [result.latency(), f"{result.requests:,} requests in {result.duration_s:.1f} s"]
    detail += [f"{result.rps / v:.3f}x {n}" for n, v in list(compared.items())[1:] if v]
    return Figure(
        section, what, result.rps, "req/s", baseline, baseline_rps, goal, detail="; ".join(detail)
    )


def status_loads(load: Load, tmp: Path) -> tuple[dict[str, Result], bytes, dict[str, Result]]:
    """The two status routes against stored runs; also returns a completed run's unified
    status body (for nginx to serve), and the results of the baselines loaded as the
    legacy route is (its queries, the key), by label: the raw servers' ceilings
    (:data:`CEILINGS`) and the minimal status route."""
    vidgate = Vidgate.create(tmp / "status", CONFIG)
    load.hide[vidgate.key] = "$VIDGATE_API_KEY"
    seeded = seed.seed_runs(vidgate.data_dir, vidgate.key_name, STORED_RUNS)
    load.report.note(
        f"Status routes: {STORED_RUNS:,} stored runs of one key ({seed.mix_text()}; model "
        f"{seed.MODEL}), written in {seeded.seconds:.1f} s by one bulk insert before the "
        "server starts. Running ones are leased to another worker and queued ones wait for "
        "a retry, both until far in the future, so the server's own worker leaves them "
        "alone. Each request asks for a random one of them (`bench/lua/status.lua`)."
    )
    legacy = seed.write_queries(tmp / "legacy-queries.txt", seeded, legacy=True)
    unified = seed.write_queries(tmp / "unified-queries.txt", seeded, legacy=False)
    headers = {"x-api-key": vidgate.key}
    results: dict[str, Result] = {}
    load.report.command("API key, status routes", shown_command(vidgate.key_command(), load.hide))
    with vidgate.serve() as (base, cmd):
        load.report.command("server, status routes", shown_command(cmd, load.hide))
        body = _check_status_routes(base, headers, seeded)
        for what, path, queries in (
            (f"GET {LEGACY_PATH} (legacy)", LEGACY_PATH, legacy),
            (f"GET {STATUS_PATH} (unified)", STATUS_PATH, unified),
        ):
            results[what] = load.measure(
                what, base + path, STATUS_C, "status.lua", (path, str(queries)), headers
            )
    beside = _beside_loads(load, tmp, vidgate, body, (LEGACY_PATH, str(legacy)), headers)
    after = seed.status_counts(vidgate.data_dir)
    if after != seeded.counts:
        load.report.note(f"The stored runs changed under the load: {seeded.counts} -> {after}")
    return results, body, beside


def _beside_loads(
    load: Load,
    tmp: Path,
    vidgate: Vidgate,
    body: bytes,
    script_args: tuple[str, str],
    headers: dict[str, str],
) -> dict[str, Result]:
    """The raw servers' ceilings (answering ``body``) and the minimal status route (reading
    ``vidgate``'s database), each under the legacy route's load; results by label."""
    body_file = tmp / "raw-body.json"
    body_file.write_bytes(body)
    raw_env = {"VIDGATE_BENCH_BODY": str(body_file)}
    servers = {label: ("bench.raw_app:app", server, raw_env) for server, label in CEILINGS.items()}
    minimal_env = {"VIDGATE_BENCH_SQLITE": str(vidgate.data_dir / "vidgate.db")}
    servers[MINIMAL] = ("bench.minimal_status_app:app", "granian", minimal_env)
    found: dict[str, Result] = {}
    for label, (app, server, env) in servers.items():
        log = tmp / f"{app.split(':')[0]}-{server}.log"
        with _asgi_server(load, label, server, app, LEGACY_PATH, log, env) as url:
            found[label] = load.measure(
                f"{label}, -c{STATUS_C}", url, STATUS_C, "status.lua", script_args, headers
            )
    return found


def _check_status_routes(base: str, headers: dict[str, str], seeded: seed.Seeded) -> bytes:
    """Both routes, for a few hundred runs, before the load (a wrong setup fails here,
    not as a figure); returns the unified body of a completed run."""
    completed = b""
    with httpx.Client(base_url=base, headers=headers) as client:
        for run_id in seeded.run_ids[:300]:
            unified = client.get(STATUS_PATH, params={"requestId": run_id})
            legacy = client.get(LEGACY_PATH, params={"runId": run_id, "modelSlug": seed.MODEL})
            if unified.status_code != 200 or legacy.status_code != 200:
                raise RuntimeError(f"status of {run_id}: {unified.text} / {legacy.text}")
            if not completed and unified.json()["status"] == "completed":
                completed = unified.content
    if not completed:
        raise RuntimeError("no completed run among the first stored runs")
    return completed


def baseline_loads(load: Load, tmp: Path, body: bytes) -> dict[tuple[str, int], Result]:
    found: dict[tuple[str, int], Result] = {}
    for server in SERVERS:
        with _baseline_server(load, server, tmp, body) as url:
            for connections in (STATUS_C, SUBMIT_C):
                label = f"{SERVERS[server]}, -c{connections}"
                found[server, connections] = load.measure(label, url, connections)
    return found


@contextlib.contextmanager
def _baseline_server(load: Load, server: str, tmp: Path, body: bytes) -> Iterator[str]:
    """Start a baseline server; yields the URL to load."""
    if server == "nginx":
        prefix = tmp / "nginx"
        with nginx.serve_file(prefix, STATUS_PATH, body) as (base, cmd):
            load.report.command("server, nginx", shown_command(cmd, load.hide))
            yield f"{base}{STATUS_PATH}?requestId=static"
        return
    app, log = "bench.baseline_app:app", tmp / f"{server}.log"
    with _asgi_server(load, SERVERS[server], server, app, "/ping", log) as url:
        yield url


@contextlib.contextmanager
def _asgi_server(
    load: Load,
    label: str,
    server: str,
    app: str,
    path: str,
    log: Path,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Start ``app`` on ``server`` (uvicorn, or granian with one worker and one runtime
    thread) on a free port; yields the URL of ``path``."""
    port = free_port()
    where = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if server == "uvicorn":
        cmd = python_command("uvicorn", *where, app)
    else:
        options = ["--interface", "asgi", "--workers", "1", "--runtime-threads", "1"]
        cmd = python_command("granian", *options, *where, app)
    load.report.command(f"server, {label}", shown_command(cmd, load.hide, env))
    url = f"http://127.0.0.1:{port}{path}"
    with run_server(cmd, url, log, env):
        yield url


def submit_loads(load: Load, tmp: Path, postgres_url: str | None) -> dict[str, Result]:
    results: dict[str, Result] = {}
    setups: list[tuple[str, str | None]] = [("SQLite", None)]
    if postgres_url:
        setups.append(("PostgreSQL", postgres_url))
    else:
        load.report.note(
            "PostgreSQL submits skipped: no VIDGATE_BENCH_DATABASE_URL (make bench sets it)"
        )
    for name, url in setups:
        with contextlib.ExitStack() as stack:
            env: dict[str, str] = {}
            if url is not None:
                env["VIDGATE_DATABASE_URL"] = stack.enter_context(fresh_database(url))
            vidgate = Vidgate.create(tmp / f"submit-{name.lower()}", CONFIG, env)
            load.hide[vidgate.key] = "$VIDGATE_API_KEY"
            headers = {"x-api-key": vidgate.key}
            base, cmd = stack.enter_context(vidgate.serve("--no-worker"))
            for label, command in (("API key", vidgate.key_command()), ("server", cmd)):
                shown = shown_command(command, load.hide, env)
                load.report.command(f"{label}, submits on {name}", shown)
            first = httpx.post(base + "/api/generate-video", headers=headers, json=SUBMIT_BODY)
            if first.status_code != 202:
                raise RuntimeError(f"a submit on {name} answered {first.status_code}: {first.text}")
            what = f"POST /api/generate-video ({name})"
            results[what] = load.measure(
                what, base + "/api/generate-video", SUBMIT_C, "submit.lua", headers=headers
            )
    return results
