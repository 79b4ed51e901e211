"""Webhook event types: which change of a run a client is told of. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from vidgate.runs.errors import InvalidRequest
from vidgate.runs.status import Status

STARTED = "video.started"
PROGRESS = "video.progress"
TERMINAL_EVENTS = {
    Status.COMPLETED: "video.completed",
    Status.FAILED: "video.failed",
    Status.CANCELLED: "video.cancelled",
}
DEFAULT_EVENTS = frozenset(TERMINAL_EVENTS.values())
OPTIONAL_EVENTS = frozenset({STARTED, PROGRESS})
ALL_EVENTS = DEFAULT_EVENTS | OPTIONAL_EVENTS
PROGRESS_EVERY_S = 2.0
"""A run's ``video.progress`` webhooks are at least this far apart."""


def event_type(status: Status, *, started_now: bool) -> str | None:
    """The webhook event a change of a run to ``status`` is: terminal statuses are told as
    themselves, the move into IN_PROGRESS as ``video.started``, later changes while in
    progress as ``video.progress``. A queued run's changes (queue position) are not told."""
    if status.is_terminal:
        return TERMINAL_EVENTS[status]
    if status is Status.IN_PROGRESS:
        return STARTED if started_now else PROGRESS
    return None


def parse_events(value: object) -> frozenset[str]:
    """``webhookEvents`` from a submit body: the terminal events always, plus the optional
    ones it names (``video.started``, ``video.progress``)."""
    if value is None:
        return DEFAULT_EVENTS
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(
            "'webhookEvents' must be a list of event names, e.g. [\"video.progress\"]",
            field="webhookEvents",
        )
    unknown = sorted(set(value) - ALL_EVENTS)
    if unknown:
        raise InvalidRequest(
            f"'webhookEvents' has unknown events {unknown}; choose from {sorted(ALL_EVENTS)}",
            field="webhookEvents",
        )
    return DEFAULT_EVENTS | frozenset(value)


def encode_events(events: Iterable[str]) -> str:
    return ",".join(sorted(events))


def decode_events(value: str | None) -> frozenset[str]:
    return frozenset(value.split(",")) if value else DEFAULT_EVENTS
