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
