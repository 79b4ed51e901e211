"""The bench harness's pure parts: reading wrk's report, the doc's markers, figure rows."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from bench import inflight_figures, nginx, wrk
from bench.report import (
    BEGIN,
    END,
    NEW_DOC,
    Figure,
    Report,
    markdown,
    replace_between_markers,
    shown_command,
)


def report_line(**changes: object) -> str:
    data: dict[str, object] = {
        "requests": 12000,
        "duration_us": 4_000_000,
        "bytes": 1,
        "p50_us": 1500,
        "p90_us": 4000,
        "p99_us": 9000,
        "max_us": 20000,
        "mean_us": 2000.5,
        "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0},
    }
    data.update(changes)
    return wrk.MARKER + json.dumps(data)


def test_wrk_report_is_read_from_the_line_after_wrks_own_output() -> None:
    output = "Running 4s test @ http://127.0.0.1:1/\n  1 threads\nRequests/sec: 1\n"
    result = wrk.parse(output + report_line() + "\n")
    assert result.rps == 3000
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (1.5, 9.0, 20.0)
    assert result.broken is None


def test_a_load_with_error_answers_or_socket_errors_gives_no_figure() -> None:
    errors = {"connect": 1, "read": 2, "write": 0, "timeout": 3, "status": 0}
    assert wrk.parse(report_line(errors=errors)).broken == (
        "broken: 0 non-2xx/3xx answers, 6 socket errors in 12000 requests"
    )
    statuses = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 7}
    assert "7 non-2xx/3xx" in str(wrk.parse(report_line(errors=statuses)).broken)
    assert wrk.parse(report_line(requests=0)).broken == "broken: no request completed"


def test_output_without_a_report_is_an_error() -> None:
    with pytest.raises(wrk.WrkError, match="WRK_JSON"):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_commands_are_bounded_in_time_and_aimed_at_loopback() -> None:
    cmd = wrk.command(
        "http://127.0.0.1:8000/api/video/status",
        connections=64,
        seconds=8,
        script="status.lua",
        script_args=("/api/video/status", "ids.txt"),
        headers={"x-api-key": "k"},
    )
    assert cmd[:4] == ["wrk", "-t1", "-c64", "-d8s"]
    assert cmd[-4:] == [
        "http://127.0.0.1:8000/api/video/status",
        "--",
        "/api/video/status",
        "ids.txt",
    ]
    assert cmd[cmd.index("-H") : cmd.index("-H") + 2] == ["-H", "x-api-key: k"]
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        wrk.command("http://example.com/", connections=1, seconds=1)


def test_nginx_config_keeps_every_path_in_its_prefix() -> None:
    text = nginx.config(Path("/x/prefix"), 8123)
    for directive in ("daemon off;", "master_process off;", "access_log off;"):
        assert directive in text
    assert "listen 127.0.0.1:8123;" in text
    paths = [w.rstrip(";") for w in text.split() if w.startswith("/")]
    assert paths and all(p.startswith("/x/prefix/") for p in paths)


def test_markers_are_added_to_a_new_doc_and_only_their_inside_is_replaced() -> None:
    first = replace_between_markers(NEW_DOC, "figures 1")
    assert f"{BEGIN}\nfigures 1\n{END}" in first
    assert first.rstrip().endswith("## Profiles")
    edited = first + "\nA profile someone wrote.\n"
    second = replace_between_markers(edited, "figures 2")
    assert "figures 1" not in second
    assert "figures 2" in second and second.endswith("A profile someone wrote.\n")


def test_a_doc_without_markers_gets_them_after_its_title() -> None:
    updated = replace_between_markers("# Benchmarks\n\nHand-written.\n", "figures")
    assert updated.startswith(f"# Benchmarks\n\n{BEGIN}\nfigures\n{END}\n")
    assert updated.endswith("Hand-written.\n")


def test_figures_show_ratios_goals_and_broken_loads() -> None:
    report = Report()
    report.add(Figure("HTTP", "nginx", 40000.0, "req/s"))
    ours = report.add(
        Figure("HTTP", "status", 12000.0, "req/s", "nginx", 40000.0, ">= 0.30x", met=True)
    )
    broken = report.add_dict(
        {"section": "HTTP", "what": "submit", "value": None, "unit": "req/s", "goal": "x"}
        | {"note": "broken: 3 non-2xx/3xx answers", "unknown": 1}
    )
    assert ours.ratio == pytest.approx(0.3)
    assert (ours.shown_value(), ours.shown_ratio(), ours.shown_met()) == (
        "12,000 req/s",
        "0.300",
        "met",
    )
    assert (broken.shown_value(), broken.shown_ratio(), broken.shown_met()) == (
        "broken",
        "-",
        "no figure",
    )
    text = markdown(report, {"commit": "abc"})
    assert "| status | 12,000 req/s | nginx: 40,000 | 0.300 |" in text
    assert "broken: 3 non-2xx/3xx answers" in text


def test_commands_are_shown_without_this_machines_paths_or_keys() -> None:
    cmd = ["/usr/sbin/nginx", "-H", "x-api-key: vg_secret", "--list", "/tmp/xyz/q.txt", "a?b=1"]
    shown = shown_command(cmd, {"/tmp/xyz": "$TMP", "vg_secret": "$VIDGATE_API_KEY"})
    assert shown == "nginx -H \"x-api-key: $VIDGATE_API_KEY\" --list $TMP/q.txt 'a?b=1'"
    assert shown_command([sys.executable, "-m", "bench"]).endswith("python -m bench")


def test_a_commands_environment_is_shown_whole_before_it() -> None:
    env = {"VIDGATE_BENCH_SQLITE": "/tmp/xyz/data/vidgate.db"}
    shown = shown_command(["/usr/sbin/nginx", "-p", "/tmp/xyz/n"], {"/tmp/xyz": "$TMP"}, env)
    assert shown == "VIDGATE_BENCH_SQLITE=$TMP/data/vidgate.db nginx -p $TMP/n"
    assert shown_command(["prog", "C=2"], env={"A": "x y", "B": "1"}) == "A='x y' B=1 prog C=2"


def inflight_values(**changes: float) -> dict[str, float]:
    values = {
        "runs": 100_000.0,
        "poll_interval_s": 240.0,
        "rss_mb": 170.0,
        "rss_peak_mb": 172.0,
        "rss_per_run_kb": 1.74,
        "all_in_flight_s": 250.0,
        "wait_s": 280.0,
        "polled_once": 100_000.0,
        "poll_failed_runs": 0.0,
        "polls_per_s_needed": 417.0,
        "polls_per_s": 416.0,
        "worker_cpu_per_s": 0.8,
        "staleness_p50_s": 120.0,
        "staleness_p99_s": 238.0,
        "staleness_max_s": 241.0,
        "sample": 1000.0,
        "sample_missing": 0.0,
    }
    return values | changes


def test_in_flight_figures_say_every_run_was_polled_and_the_staleness_met() -> None:
    rss, stale = inflight_figures.figures_of(inflight_values())
    assert rss.met and "every run polled once" in rss.detail
    assert stale.value == 238.0 and stale.met and "0 not seen within 280 s" in stale.detail


def test_in_flight_figures_count_failed_polls_and_do_not_judge_what_was_not_seen() -> None:
    values = inflight_values(
        polled_once=99_990.0,
        poll_failed_runs=10.0,
        staleness_p99_s=float("inf"),
        sample_missing=20.0,
    )
    rss, stale = inflight_figures.figures_of(values)
    assert rss.met and "99,990 of 100,000 polled once; 10 runs waiting out a backoff" in rss.detail
    assert stale.value is None and stale.met is None and stale.note.startswith("not measured")
    assert "20 not seen within 280 s" in stale.detail


def test_in_flight_rss_is_not_judged_when_under_99_percent_of_runs_were_polled() -> None:
    rss, _ = inflight_figures.figures_of(inflight_values(polled_once=98_000.0, rss_mb=100.0))
    assert rss.met is None and rss.shown_met() == "no figure" and rss.note


@pytest.mark.parametrize(("missing", "p99_finite"), [(0, True), (10, True), (11, False)])
def test_runs_not_seen_rank_as_staler_than_any(missing: int, p99_finite: bool) -> None:
    seen = [float(i) for i in range(1000 - missing)]
    p50, p99 = inflight_figures.staleness_percentiles(seen, missing)
    assert p50 == 500.0
    assert math.isfinite(p99) is p99_finite
    assert inflight_figures.staleness_percentiles([], 0) == (math.inf, math.inf)
