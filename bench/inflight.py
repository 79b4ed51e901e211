"""Remote runs in flight: what one ``vidgate worker`` process holds, and how soon it notices.

One worker process follows ``runs`` provider jobs at the fal emulator (real HTTP on loopback,
in a process of its own, following fal's documented queue protocol). The jobs and their runs
are seeded, not submitted through the API: the emulator's bench route creates running jobs,
and the runs go into the database as already submitted (with their provider request id),
their first polls spread over one poll interval, as in a steady state. Then:

* RSS: the worker's resident memory once every run has been polled at least once (and its
  peak), per run in flight. A run whose poll failed waits out a backoff of about one more
  interval, which the bench does not wait for (``WAIT_PAST_INTERVAL_S``): it says how many
  runs were polled, and how many wait out such a backoff;
* staleness: ``sample`` of the jobs complete at the emulator at known times; staleness is
  from that moment to the moment the run reads COMPLETED in the database (which the bench
  polls every 0.2 s; the video has been copied by then);
* the poll rate the worker must keep up (runs / poll interval), and the rate and CPU it spent.

Run alone with ``python -m bench.inflight`` (``--runs``, ``--interval``; see ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import create_engine, insert, select, update
from tests.servers import VIDGATE, free_port, run_cli

from bench.inflight_figures import figures_of, staleness_percentiles
from bench.report import Report, text_table
from vidgate.store.schema import api_keys, runs

APP = "fal-ai/veo2"
MODEL = "fal-video"
SEED_CHUNK = 10_000
POLL_INTERVAL_S = 240.0
"""100,000 runs / 240 s = 417 polls/s: what one worker keeps up with on a 2-core machine
that also runs the emulator (about 420/s measured there). The bench lasts about one
interval plus a minute."""
SAMPLE_WINDOW_S = (10.0, 25.0)
"""When the sample finishes, in seconds from the end of seeding."""
WAIT_PAST_INTERVAL_S = 40.0
"""How long past one poll interval the bench waits for the last first polls and for the
sample's completions (both come within about 25 s of it). A poll that fails (a timeout
on a loaded machine) is tried again after a backoff of about one more interval, which the
bench does not wait for: runs not yet polled are counted, and sample runs not yet seen
count as staler than the wait."""


def _serve_fal(port: int) -> None:
    """The fal emulator, in a process of its own."""
    from tests.emulators import fal

    state = fal.FalState()
    uvicorn.run(
        fal.create_app(state),
        host="127.0.0.1",
        port=port,
        log_level="critical",
        loop="uvloop",
        http="httptools",
        backlog=4096,
    )


@contextlib.contextmanager
def emulator() -> Iterator[str]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=_serve_fal, args=(port,))
    process.start()
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{base}/_emulator/stats", timeout=1)
                break
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.join(timeout=10)


def config(base: str, interval_s: float, concurrency: int) -> str:
    return f"""
[worker]
remote_concurrency = {concurrency}

[providers.fal]
base_url = "{base}"
api_key_env = "FAL_KEY"
poll_interval_s = {interval_s}
timeout_s = 30

[models."{MODEL}"]
backend = "fal"
provider_model = "{APP}"
deadline_s = 86400
"""


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) in MB, and CPU seconds so far, of a process."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    found["cpu_s"] = (int(ticks[11]) + int(ticks[12])) / os.sysconf("SC_CLK_TCK")
    return found


def seed(
    base: str,
    database_url: str,
    count: int,
    sample: int,
    interval_s: float,
    window: tuple[float, float],
) -> dict[str, float]:
    """Create ``count`` running jobs at the emulator and their runs in the database, their
    first polls spread over the next ``interval_s``. The first ``sample`` jobs finish at
    times spread uniformly over ``window`` (seconds from the end of seeding); the rest run
    on. Returns the sample's finish times (epoch seconds) by run id."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        key_id = conn.execute(select(api_keys.c.id)).scalar_one()
    began = time.time()
    finishes: dict[str, float] = {}
    http = httpx.Client(timeout=120)
    with engine.begin() as conn:
        # The sample last, so that its finish times count from the end of seeding.
        for start in [*range(sample, count, SEED_CHUNK), 0]:
            end = min(count, start + SEED_CHUNK) if start else sample
            ids, finish_at, rows = [], [], []
            now = time.time()
            for i in range(start, end):
                request_id = str(uuid.uuid4())
                run_id = f"run_bench{i:09d}"
                if i < sample:
                    finish = now + window[0] + random.random() * (window[1] - window[0])
                    finishes[run_id] = finish
                else:
                    finish = now + 30 * 86400.0
                ids.append(request_id)
                finish_at.append(finish)
                rows.append(_run_row(run_id, key_id, request_id, base, began, interval_s, i))
            http.post(
                f"{base}/_emulator/jobs", json={"app": APP, "ids": ids, "finish_at": finish_at}
            ).raise_for_status()
            conn.execute(insert(runs), rows)
        shift = time.time() - began  # the first polls spread over the interval from now on
        conn.execute(update(runs).values(next_poll_at=runs.c.next_poll_at + shift))
    http.close()
    engine.dispose()
    return finishes


def _run_row(
    run_id: str, key_id: str, request_id: str, base: str, now: float, interval_s: float, i: int
) -> dict[str, Any]:
    job = f"{base}/{APP}/requests/{request_id}"
    return {
        "id": run_id,
        "api_key_id": key_id,
        "model": MODEL,
        "backend": "fal",
        "status": "IN_PROGRESS",
        "request": {"model": MODEL, "prompt": f"bench job {i}", "extra": {}},
        "cost": 0.0,
        "created_at": now,
        "updated_at": now,
        "available_at": now,
        "started_at": now,
        "deadline_at": now + 86400,
        "next_poll_at": now + random.random() * interval_s,  # the first polls spread out
        "provider_request_id": request_id,
        "provider_status": "IN_PROGRESS",
        "provider_state": {
            "job": {
                "model": APP,
                "status_url": f"{job}/status",
                "response_url": job,
                "cancel_url": f"{job}/cancel",
            }
        },
        "attempts": 0,
        "seq": 1,
    }


def inflight_bench(
    runs: int = 100_000,
    *,
    sample: int = 1_000,
    poll_interval_s: float = POLL_INTERVAL_S,
    remote_concurrency: int = 200,
    database_url: str | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """Hold ``runs`` remote runs in flight in one worker process; returns the figures
    (RSS in MB, staleness in seconds, rates per second)."""
    say = print if verbose else (lambda *a, **k: None)
    interval = poll_interval_s
    with tempfile.TemporaryDirectory(prefix="vidgate-inflight-") as tmp, emulator() as base:
        data_dir, config_path = Path(tmp) / "data", Path(tmp) / "bench.toml"
        config_path.write_text(config(base, interval, remote_concurrency))
        env = {"FAL_KEY": "fal-key-id:fal-key-secret-0123456789"}
        if database_url:
            env["VIDGATE_DATABASE_URL"] = database_url
        url = database_url or f"sqlite:///{(data_dir / 'vidgate.db').resolve()}"
        run_cli(["keys", "create", "inflight"], data_dir=data_dir, config=config_path, env=env)
        started = time.monotonic()
        # The first polls are spread over one interval, so the worker is in its steady
        # state (each run polled once per interval) from its start: the sample may finish
        # early, which keeps the bench short.
        finishes = seed(base, url, runs, min(sample, runs), interval, SAMPLE_WINDOW_S)
        seed_s = time.monotonic() - started
        say(f"seeded {runs:,} running jobs and their runs in {seed_s:.1f} s")
        log_path = Path(os.environ.get("VIDGATE_BENCH_WORKER_LOG", Path(tmp) / "worker.log"))
        log = log_path.open("wb")
        level = os.environ.get("VIDGATE_BENCH_LOG_LEVEL", "warning")
        args = ["--data-dir", str(data_dir), "--config", str(config_path), "--log-level", level]
        worker = subprocess.Popen(
            [*VIDGATE, "worker", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
        try:
            figures = _measure(base, url, worker, runs, finishes, interval, say)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()
            tail = log_path.read_text()[-2000:]
            if worker.returncode not in (0, -15):  # shown even when not verbose
                print(f"worker exited with {worker.returncode}:\n{tail}", flush=True)
        figures["seed_s"] = seed_s
        figures["all_in_flight_s"] += seed_s
    say(text_table(Report(figures_of(figures))))
    return figures


def _measure(
    base: str,
    url: str,
    worker: subprocess.Popen[bytes],
    runs_in_flight: int,
    finishes: dict[str, float],
    interval: float,
    say: Any,
) -> dict[str, float]:
    began, cpu0 = time.monotonic(), proc_status(worker.pid)["cpu_s"]
    stats0 = httpx.get(f"{base}/_emulator/stats").json()
    # Watch the sample from the start, while waiting for every run to be polled once.
    seen: dict[str, float] = {}
    wait_s = interval + WAIT_PAST_INTERVAL_S
    watcher = threading.Thread(
        target=_staleness, args=(url, finishes, worker, wait_s, seen), daemon=True
    )
    watcher.start()
    while True:
        stats = httpx.get(f"{base}/_emulator/stats", timeout=30).json()
        polled = stats.get("polled_jobs", 0)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}: {stats}")
        if polled >= runs_in_flight or time.monotonic() - began > wait_s:
            break
        time.sleep(0.5)
    all_polled_s = time.monotonic() - began
    status = proc_status(worker.pid)
    say(f"{polled:,} of {runs_in_flight:,} runs polled at least once after {all_polled_s:.1f} s")
    watcher.join()
    elapsed = time.monotonic() - began
    stats = httpx.get(f"{base}/_emulator/stats", timeout=30).json()
    end = proc_status(worker.pid)
    stale = sorted(seen[run_id] - finishes[run_id] for run_id in seen)
    missing = len(finishes) - len(seen)
    p50, p99 = staleness_percentiles(stale, missing)
    return {
        "runs": float(runs_in_flight),
        "poll_interval_s": interval,
        "rss_mb": status["VmRSS"],
        "rss_peak_mb": end["VmHWM"],
        "rss_per_run_kb": status["VmRSS"] * 1024 / runs_in_flight,
        "all_in_flight_s": all_polled_s,
        "wait_s": wait_s,
        "polled_once": float(polled),
        "poll_failed_runs": float(_runs_with_failed_polls(url)),
        "polls_per_s_needed": runs_in_flight / interval,
        "polls_per_s": (stats.get("status", 0) - stats0.get("status", 0)) / elapsed,
        "worker_cpu_per_s": (end["cpu_s"] - cpu0) / elapsed,
        "staleness_p50_s": p50,
        "staleness_p99_s": p99,
        "staleness_max_s": stale[-1] if stale else float("inf"),
        "sample": float(len(finishes)),
        "sample_missing": float(missing),
    }


def _staleness(
    url: str,
    finishes: dict[str, float],
    worker: subprocess.Popen[bytes],
    limit_s: float,
    seen: dict[str, float],
) -> None:
    """Note in ``seen`` when each sample run first reads COMPLETED (the database is read
    every 0.2 s)."""
    engine = create_engine(url)
    pending = set(finishes)
    deadline = time.monotonic() + limit_s
    try:
        while pending and time.monotonic() < deadline and worker.poll() is None:
            with engine.connect() as conn:
                done = conn.execute(
                    select(runs.c.id).where(runs.c.id.in_(pending), runs.c.status == "COMPLETED")
                ).scalars()
                now = time.time()
                for run_id in done:
                    seen[run_id] = now
                    pending.discard(run_id)
            time.sleep(0.2)
    finally:
        engine.dispose()


def _runs_with_failed_polls(url: str) -> int:
    """How many runs wait out a backoff after a failed poll: the poller counts the failures
    in a row in ``provider_state``, and a good poll clears the count."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            states = conn.execute(select(runs.c.provider_state)).scalars()
            return sum(1 for state in states if state and state.get("poll_failures"))
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=1_000)
    parser.add_argument("--interval", type=float, default=POLL_INTERVAL_S, help="poll_interval_s")
    parser.add_argument("--concurrency", type=int, default=200, help="remote_concurrency")
    parser.add_argument("--database-url", default=os.environ.get("VIDGATE_BENCH_INFLIGHT_URL"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    options = parser.parse_args()
    # A stop (timeout, kill) ends the worker and the emulator too: they run in sessions of
    # their own, and would poll on.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    figures = inflight_bench(
        options.runs,
        sample=options.sample,
        poll_interval_s=options.interval,
        remote_concurrency=options.concurrency,
        database_url=options.database_url,
    )
    if options.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
