"""Errors raised by the store."""

from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class NotFound(StoreError):
    """No such run."""


class KeyNotFound(StoreError):
    """No such API key."""


class KeyNameTaken(StoreError):
    """An API key with that name exists already."""


class IdempotencyConflict(StoreError):
    """This Idempotency-Key was used before with a different request body."""


class DeliveryInFlight(StoreError):
    """An attempt to deliver this webhook is being made right now."""


class StoreUnavailable(StoreError):
    """The database is unavailable."""


class OverBudget(StoreError):
    """The run would take the key past its daily budget."""

    def __init__(self, *, budget_usd: float, spent_usd: float, cost_usd: float) -> None:
        left = max(0.0, budget_usd - spent_usd)
        super().__init__(
            f"this run costs ${_usd(cost_usd)} and the key has ${_usd(left)} left of its daily "
            f"budget of ${_usd(budget_usd)} (${_usd(spent_usd)} spent or held today, UTC)"
        )
        self.budget_usd, self.spent_usd, self.cost_usd = budget_usd, spent_usd, cost_usd


class TooManyInFlight(StoreError):
    """The key has as many runs in flight as it may."""

    def __init__(self, *, limit: int) -> None:
        super().__init__(f"the key has {limit} runs in flight, its limit")
        self.limit = limit


def _usd(amount: float) -> str:
    return f"{amount:.6f}".rstrip("0").rstrip(".")
