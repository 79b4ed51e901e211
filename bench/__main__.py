"""vidgate benchmarks. Every figure stands beside a baseline measured in the same run.

* http: requests per second of vidgate's status and submit routes, measured by wrk, beside
  nginx serving the same status body as a static file and a trivial FastAPI route on
  uvicorn and on granian (``bench/http.py``).
* render: testcard's frames per second beside a bare H.264 encode (``bench/render.py``).
* push: how soon clients learn that a run completed, by long-poll, server-sent events and
  webhook, beside polling every 5 s (``bench/push.py``).
* idle: CPU cost of idle long-poll waiters and event streams (``bench/idle.py``).
* inflight: one worker holding 100,000 remote runs in flight: its memory, and how soon a
  finished job shows (``bench/inflight.py``).

Run with ``make bench`` (it installs wrk and nginx, starts PostgreSQL, and writes
``docs/benchmarks.md`` after a full run). Absolute numbers vary with the machine; the
ratios are the point.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import http, idle, inflight, inflight_figures, nginx, push, render, wrk
from bench.report import ROOT, Report, run_facts, text_table, write_doc

CHOICES = ("http", "render", "push", "idle", "inflight")


def tool_versions() -> dict[str, str]:
    import granian
    import uvicorn

    versions = {"wrk": wrk.version(), "uvicorn": uvicorn.__version__}
    versions["granian"] = granian.__version__
    versions["nginx"] = nginx.version()
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="per wrk load")
    parser.add_argument("--runs", type=int, default=100, help="runs per push latency setup")
    parser.add_argument("--only", choices=CHOICES, action="append", help="repeatable")
    parser.add_argument(
        "--doc",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="rewritten (between its bench markers) after a run of every bench",
    )
    args = parser.parse_args()
    chosen = [c for c in CHOICES if c in set(args.only or CHOICES)]
    started, clock = datetime.now(UTC), time.monotonic()
    report = Report()
    report.command("all of it (installs wrk and nginx if missing, starts PostgreSQL)", "make bench")
    database_url = os.environ.get("VIDGATE_BENCH_DATABASE_URL")
    for name in chosen:
        before, section_clock = len(report.figures), time.monotonic()
        if name == "http":
            http.http_bench(report, args.seconds, database_url)
        elif name == "render":
            report.figures += render.render_bench()
        elif name == "push":
            report.figures += push.latency_bench(args.runs, database_url)
            report.note(
                f"Push latency: {args.runs} runs per setup, followed by Python clients on "
                "loopback (`bench/push.py`); p99 is the value below which 99% of "
                f"them fall (the {push.p99_rank(args.runs)} of {args.runs})."
            )
            if database_url is None:
                report.note("Push latency on PostgreSQL skipped: no VIDGATE_BENCH_DATABASE_URL")
        elif name == "idle":
            report.add(idle.idle_bench(waiters=2000, streams=500))
            report.note("Idle cost: CPU time of the server process from /proc (`bench/idle.py`).")
        elif name == "inflight":
            values = inflight.inflight_bench(verbose=False)
            report.figures += inflight_figures.figures_of(values)
            report.note(
                "In flight: runs and their running jobs are seeded (`bench/inflight.py`), "
                "their first polls spread over one poll interval; staleness is read from "
                "the database every 0.2 s. The bench waits for the first polls and the "
                "sample at most one poll interval plus "
                f"{inflight.WAIT_PAST_INTERVAL_S:g} s after the worker starts."
            )
        print(text_table(Report(report.figures[before:])), flush=True)
        print(f"{name} took {time.monotonic() - section_clock:.0f} s", flush=True)
    for note in report.notes:
        print(f"\nnote: {note}")
    print(f"\nall benches took {time.monotonic() - clock:.0f} s")
    if len(chosen) == len(CHOICES):
        write_doc(args.doc, report, run_facts(started, tool_versions()))
        print(f"wrote {args.doc}")
    else:
        print(f"{args.doc} not rewritten: only a run of every bench writes it")


if __name__ == "__main__":
    main()
