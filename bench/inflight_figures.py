"""The in-flight bench's figures (``bench/inflight.py``): how each is judged, and shown.

A figure is judged only where it was measured: the RSS once nearly every run has been
polled, the staleness p99 once it has been seen within the bench's wait. Otherwise it
shows as "no figure", with a note, never as a verdict.
"""

from __future__ import annotations

import math

from bench.report import Figure, percentile

RSS_GOAL_MB = 500.0


def staleness_percentiles(seen: list[float], missing: int) -> tuple[float, float]:
    """p50 and p99 of the sample's staleness; the ``missing`` runs, not
    seen within the wait, rank as staler than any (infinite), and so does an empty sample."""
    ranked = seen + [math.inf] * missing
    if not ranked:
        return math.inf, math.inf
    return percentile(ranked, 0.50), percentile(ranked, 0.99)


def _rss_stands(values: dict[str, float]) -> bool:
    """Whether the RSS was taken in the steady state it is meant to show, every run
    followed: below 99% of the runs polled within the wait, the worker had not reached
    it (it was behind, or stalled), and its RSS is not judged."""
    return values["polled_once"] >= 0.99 * values["runs"]


def _seconds(value: float) -> str:
    """A staleness; one beyond the bench's wait (not seen within it) is infinite."""
    return f"{value:.1f} s" if math.isfinite(value) else "not seen within the wait"


def _polled_text(values: dict[str, float]) -> str:
    """Whether every run was polled once within the wait, and how many wait out a backoff."""
    polled, runs, failed = values["polled_once"], values["runs"], values["poll_failed_runs"]
    text = "every run polled once"
    if polled < runs:
        text = f"{polled:,.0f} of {runs:,.0f} polled once"
    if failed:
        text += f"; {failed:,.0f} runs waiting out a backoff after a failed poll"
    return text


def figures_of(values: dict[str, float]) -> list[Figure]:
    """The bench's figures as report rows."""
    section = (
        f"Remote runs in flight: one `vidgate worker`, fal emulator, SQLite, "
        f"{values['runs']:,.0f} runs"
    )
    interval = values["poll_interval_s"]
    rss, p99 = values["rss_mb"], values["staleness_p99_s"]
    waited = values["wait_s"]
    rss_stands = _rss_stands(values)
    polls = (
        f"poll interval {interval:g} s: {values['polls_per_s_needed']:,.0f} polls/s needed, "
        f"{values['polls_per_s']:,.0f} made; worker CPU {values['worker_cpu_per_s']:.2f} cores"
    )
    return [
        Figure(
            section,
            "worker RSS, every run in flight",
            rss,
            "MB",
            goal=f"< {RSS_GOAL_MB:g} MB",
            met=rss < RSS_GOAL_MB if rss_stands else None,
            detail=f"{values['rss_per_run_kb']:.2f} KB per run; peak "
            f"{values['rss_peak_mb']:.0f} MB; after {values['all_in_flight_s']:.0f} s: "
            f"{_polled_text(values)}",
            note="" if rss_stands else "not measured: under 99% of the runs polled within the wait",
        ),
        Figure(
            section,
            "staleness p99 (job finished at the emulator to COMPLETED in vidgate)",
            p99 if math.isfinite(p99) else None,
            "s",
            baseline="poll interval",
            baseline_value=interval,
            goal="< 2x poll interval",
            met=p99 < 2 * interval if math.isfinite(p99) else None,
            detail=f"p50 {_seconds(values['staleness_p50_s'])}, max seen "
            f"{_seconds(values['staleness_max_s'])} over {values['sample']:,.0f} completions "
            f"({values['sample_missing']:.0f} not seen within {waited:g} s of the worker's "
            f"start); {polls}",
            note="" if math.isfinite(p99) else "not measured: too much of the sample not seen",
        ),
    ]
