"""The dashboard's parts that need no server: provider request statistics read from a
metrics registry, the brake on failed sign-ins (with a clock the test moves), and the
Content-Security-Policy."""

from __future__ import annotations

import pytest

from vidgate.metrics import Metrics
from vidgate.store.dashboard import BackendOutcomes
from vidgate.ui.overview import request_stats
from vidgate.ui.render import content_security_policy, origin_of
from vidgate.ui.sessions import FAILURE_WINDOW_S, FAILURES_ALLOWED, LoginBrake


def test_request_stats_come_from_the_registry() -> None:
    metrics = Metrics()
    for _ in range(3):
        with metrics.provider_call("fal", "poll"):
            pass
    with pytest.raises(ConnectionError), metrics.provider_call("fal", "poll"):
        raise ConnectionError
    with metrics.provider_call("veo", "submit"):
        pass
    stats = {(s.provider, s.operation): s for s in request_stats(metrics)}
    assert set(stats) == {("fal", "poll"), ("veo", "submit")}
    poll = stats[("fal", "poll")]
    assert (poll.requests, poll.errors, poll.error_rate) == (4, 1, 0.25)
    assert poll.mean_latency_s is not None and 0 <= poll.mean_latency_s < 1
    assert stats[("veo", "submit")].error_rate == 0
    assert request_stats(Metrics()) == []


def test_error_rate_counts_failed_of_ended_runs() -> None:
    assert BackendOutcomes("testcard", completed=3, failed=1, cancelled=5).error_rate == 0.25
    assert BackendOutcomes("testcard", queued=2, cancelled=1).error_rate is None


def test_the_brake_holds_a_client_for_the_rest_of_the_window() -> None:
    brake = LoginBrake()
    for second in range(FAILURES_ALLOWED):
        assert brake.retry_after_s("10.0.0.1", now=100.0 + second) is None
        brake.failed("10.0.0.1", now=100.0 + second)
    held = brake.retry_after_s("10.0.0.1", now=100.0 + FAILURES_ALLOWED)
    assert held == FAILURE_WINDOW_S - FAILURES_ALLOWED
    assert brake.retry_after_s("10.0.0.2", now=105.0) is None  # another client
    assert brake.retry_after_s("10.0.0.1", now=100.0 + FAILURE_WINDOW_S + 0.5) is None


def test_the_policy_allows_no_inline_script_and_media_from_where_videos_are() -> None:
    origin = origin_of("https://bucket.s3.example.com/videos/a.mp4?X-Amz-Signature=1")
    assert origin == "https://bucket.s3.example.com"
    assert origin_of("/files/a.mp4") is None and origin_of("javascript:alert(1)") is None
    policy = dict(part.split(" ", 1) for part in content_security_policy([origin]).split("; "))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert policy["media-src"] == "'self' https://bucket.s3.example.com"
    assert policy["frame-ancestors"] == "'none'"
