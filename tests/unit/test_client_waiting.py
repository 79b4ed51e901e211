"""The wait and retry rules, driven with a fake clock: deadlines, long-poll, Retry-After,
backoff with jitter, unknown statuses, and when a submit may be sent again."""

from __future__ import annotations

import pytest

from vidgate import (
    APIConnectionError,
    APIStatusError,
    GenerationCancelled,
    GenerationFailed,
    NotFoundError,
    RateLimitError,
    RunStatus,
    UnexpectedResponseError,
    VideoStatus,
    WaitTimeout,
)
from vidgate.client._parse import normalise_status
from vidgate.client._retry import Backoff, RetryMode, is_retryable, retry_delay
from vidgate.client._wait import DEFAULT_POLL_INTERVAL_S, MAX_QUICK_POLLS, Waiter, finish


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def st(status: str, retry_after_s: float | None = None) -> VideoStatus:
    return VideoStatus("vid_x", normalise_status(status), status, retry_after_s=retry_after_s)


def make_waiter(
    clock: FakeClock, timeout_s: float = 60, poll_interval_s: float | None = None
) -> Waiter:
    return Waiter(
        "vid_x",
        timeout_s=timeout_s,
        request_timeout_s=10,
        poll_interval_s=poll_interval_s,
        clock=clock,
        rand=lambda: 0.5,
    )


def seen_once(waiter: Waiter) -> Waiter:
    """A waiter past its first poll (which never holds)."""
    first = waiter.next_step()
    assert first.wait_seconds == 0
    assert first.timeout_s == min(10, waiter.remaining())
    waiter.on_status(st("IN_QUEUE"))
    return waiter


def test_polls_after_the_first_long_poll_within_the_deadline() -> None:
    clock = FakeClock()
    step = seen_once(make_waiter(clock, timeout_s=600)).next_step()
    assert step.wait_seconds == 30
    assert step.timeout_s == 40  # the hold plus the request timeout

    short = seen_once(make_waiter(clock, timeout_s=5.2)).next_step()
    assert short.wait_seconds == 4  # half a second of margin before the deadline
    assert short.timeout_s == pytest.approx(5.2)  # never past the deadline

    after_error = make_waiter(clock)
    after_error.next_step()
    after_error.on_error(APIStatusError(status_code=503))
    assert after_error.next_step().wait_seconds == 30


def test_deadline_always_holds() -> None:
    clock = FakeClock()
    waiter = make_waiter(clock, timeout_s=3)
    total_slept = 0.0
    with pytest.raises(WaitTimeout) as caught:
        while True:
            step = waiter.next_step()
            assert step.timeout_s <= waiter.remaining()
            clock.advance(0.01)  # the server ignores waitSeconds and answers at once
            delay = waiter.on_status(st("expired"))  # a status nobody knows
            assert delay is not None and delay <= waiter.remaining()
            clock.advance(delay)
            total_slept += delay
    assert 3.0 <= clock.now - 1000.0 <= 3.02
    assert caught.value.last_status is not None
    assert caught.value.last_status.raw_status == "expired"
    assert isinstance(caught.value, TimeoutError)
    assert "within 3 s" in str(caught.value)


def test_a_held_long_poll_is_followed_at_once() -> None:
    clock = FakeClock()
    waiter = seen_once(make_waiter(clock))
    step = waiter.next_step()
    clock.advance(step.wait_seconds)  # held for the whole hold: the server long-polls
    assert waiter.on_status(st("IN_PROGRESS", retry_after_s=2)) == 0
    waiter.next_step()
    clock.advance(step.wait_seconds)
    assert waiter.on_status(st("IN_PROGRESS", retry_after_s=2)) == 0


def test_an_early_answer_from_a_server_that_says_it_held_is_followed_at_once() -> None:
    """A vidgate server answers a held poll at each event, progress included; its
    ``Vidgate-Long-Poll`` header says so, and the waiter asks again at once every time."""
    clock = FakeClock()
    waiter = seen_once(make_waiter(clock))
    for _ in range(5):  # well past the quick-poll bound for servers that do not say so
        waiter.next_step()
        clock.advance(0.1)
        assert waiter.on_status(st("IN_PROGRESS", retry_after_s=2), held=True) == 0
    waiter.next_step()
    clock.advance(0.1)
    assert waiter.on_status(st("IN_PROGRESS", retry_after_s=2)) == pytest.approx(1.9)


def test_a_server_that_ignores_wait_seconds_is_polled_at_its_retry_after() -> None:
    clock = FakeClock()
    waiter = make_waiter(clock)
    waiter.next_step()
    clock.advance(0.1)
    assert waiter.on_status(st("IN_QUEUE", retry_after_s=3)) == 0  # first sight: look again
    waiter.next_step()
    clock.advance(0.1)
    assert waiter.on_status(st("IN_QUEUE", retry_after_s=3)) == pytest.approx(2.9)


def test_poll_interval_default_caller_and_server() -> None:
    clock = FakeClock()
    assert make_waiter(clock).interval(st("IN_QUEUE")) == DEFAULT_POLL_INTERVAL_S
    assert make_waiter(clock).interval(st("IN_QUEUE", retry_after_s=1)) == 1
    # The caller's interval, but never faster than the server asks.
    assert make_waiter(clock, poll_interval_s=5).interval(st("IN_QUEUE", 1)) == 5
    assert make_waiter(clock, poll_interval_s=0.5).interval(st("IN_QUEUE", 2)) == 2
    assert make_waiter(clock).interval(st("IN_QUEUE", retry_after_s=3600)) == 60


def test_a_status_change_is_followed_at_once_but_not_forever() -> None:
    clock = FakeClock()
    waiter = make_waiter(clock, poll_interval_s=1)
    delays = []
    for i in range(MAX_QUICK_POLLS + 2):  # a server that flaps between two statuses
        waiter.next_step()
        clock.advance(0.01)
        delays.append(waiter.on_status(st("IN_QUEUE" if i % 2 else "IN_PROGRESS")))
    assert delays[:MAX_QUICK_POLLS] == [0] * MAX_QUICK_POLLS
    assert all(d == pytest.approx(0.99) for d in delays[MAX_QUICK_POLLS:])


def test_terminal_statuses_end_the_wait() -> None:
    clock = FakeClock()
    for status in ("COMPLETED", "FAILED", "CANCELED"):
        waiter = make_waiter(clock)
        waiter.next_step()
        assert waiter.on_status(st(status)) is None


def test_finish_returns_completed_and_raises_for_the_rest() -> None:
    done = st("COMPLETED")
    assert finish(done) is done
    failed = VideoStatus(
        "vid_x",
        RunStatus.FAILED,
        "FAILED",
        error="boom",
        is_nsfw=True,
        user_friendly_error="Try again.",
    )
    with pytest.raises(GenerationFailed) as caught:
        finish(failed)
    assert caught.value.error == "boom"
    assert caught.value.is_nsfw is True
    assert caught.value.user_friendly_error == "Try again."
    assert str(caught.value) == "Try again."
    assert caught.value.status is failed
    with pytest.raises(GenerationCancelled):
        finish(st("CANCELLED"))


def test_errors_back_off_with_jitter_and_retry_after_wins() -> None:
    clock = FakeClock()
    waiter = make_waiter(clock)
    waiter.next_step()
    unavailable = APIStatusError(status_code=503)
    first = waiter.on_error(unavailable)
    second = waiter.on_error(unavailable)
    assert first == pytest.approx(0.375)  # half to all of 0.5 s, rand = 0.5
    assert second == pytest.approx(0.75)
    assert waiter.on_error(APIConnectionError("reset")) == pytest.approx(1.5)
    assert waiter.on_error(RateLimitError(status_code=429, retry_after_s=7)) == 7
    assert waiter.on_error(UnexpectedResponseError()) is not None
    # The next good answer resets the count.
    waiter.on_status(st("IN_QUEUE"))
    assert waiter.on_error(unavailable) == pytest.approx(0.375)


def test_errors_that_will_not_improve_end_the_wait() -> None:
    waiter = make_waiter(FakeClock())
    waiter.next_step()
    assert waiter.on_error(NotFoundError(status_code=404)) is None
    assert waiter.on_error(APIStatusError(status_code=401)) is None


def test_a_long_retry_after_is_cut_to_the_deadline_and_timeout_names_the_cause() -> None:
    clock = FakeClock()
    waiter = make_waiter(clock, timeout_s=2)
    waiter.next_step()
    limited = RateLimitError(status_code=429, retry_after_s=30)
    delay = waiter.on_error(limited)
    assert delay == 2
    clock.advance(delay or 0)
    with pytest.raises(WaitTimeout) as caught:
        waiter.next_step()
    assert caught.value.__cause__ is limited
    assert caught.value.last_status is None


def test_invalid_wait_arguments() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        make_waiter(FakeClock(), timeout_s=0)
    with pytest.raises(ValueError, match="timeout_s"):
        make_waiter(FakeClock(), timeout_s=float("inf"))
    with pytest.raises(ValueError, match="poll_interval_s"):
        make_waiter(FakeClock(), poll_interval_s=-1)


def test_backoff_grows_to_its_cap_and_stays_above_half() -> None:
    backoff = Backoff(base_s=0.5, cap_s=4)
    assert [backoff.delay(n, lambda: 1.0) for n in range(5)] == [0.5, 1, 2, 4, 4]
    assert [backoff.delay(n, lambda: 0.0) for n in range(5)] == [0.25, 0.5, 1, 2, 2]


def test_retry_rules_for_reads_and_submits() -> None:
    unavailable = APIStatusError(status_code=503)
    refused = APIConnectionError("refused", request_sent=False)
    dropped = APIConnectionError("reset")
    assert is_retryable(unavailable, RetryMode.IDEMPOTENT)
    assert is_retryable(dropped, RetryMode.IDEMPOTENT)
    assert not is_retryable(APIStatusError(status_code=400), RetryMode.IDEMPOTENT)
    # A submit without an idempotency key: only what never reached the server.
    assert not is_retryable(unavailable, RetryMode.UNSENT_ONLY)
    assert not is_retryable(dropped, RetryMode.UNSENT_ONLY)
    assert not is_retryable(RateLimitError(status_code=429), RetryMode.UNSENT_ONLY)
    assert is_retryable(refused, RetryMode.UNSENT_ONLY)
    assert not is_retryable(UnexpectedResponseError(), RetryMode.UNSENT_ONLY)


def test_retry_delay_counts_attempts_and_caps_retry_after() -> None:
    def delay(error: Exception, attempt: int) -> float | None:
        assert isinstance(error, APIStatusError)
        return retry_delay(
            error, attempt, mode=RetryMode.IDEMPOTENT, max_retries=2, rand=lambda: 0.5
        )

    limited = RateLimitError(status_code=429, retry_after_s=5)
    assert delay(limited, 0) == 5
    assert delay(limited, 2) is None  # out of attempts
    assert delay(RateLimitError(status_code=429, retry_after_s=600), 0) is None  # too long
    assert delay(APIStatusError(status_code=502), 1) == pytest.approx(0.75)
