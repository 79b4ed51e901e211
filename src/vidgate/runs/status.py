"""Run statuses and the one function that decides which transitions are allowed."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A run's status; the values are the upper-case wire strings of the upstream API."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def flat(self) -> str:
        """The lower-case value the unified status route uses at the top level."""
        return _FLAT[self]


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.IN_QUEUE: frozenset({Status.IN_PROGRESS, Status.CANCELLED, Status.FAILED}),
    Status.IN_PROGRESS: frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}

_FLAT = {
    Status.IN_QUEUE: "queued",
    Status.IN_PROGRESS: "processing",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "cancelled",
}


def can_transition(current: Status, new: Status) -> bool:
    """True if a run in ``current`` may move to ``new``."""
    return new in _ALLOWED[current]


def sources_of(new: Status) -> frozenset[Status]:
    """Every status from which ``new`` may be reached (used to build conditional updates)."""
    return frozenset(s for s, targets in _ALLOWED.items() if new in targets)
