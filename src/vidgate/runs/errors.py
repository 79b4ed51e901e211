"""Errors raised by the domain layer."""

from __future__ import annotations


class RunError(Exception):
    """A run could not be created or changed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidRequest(RunError):
    """The request is not valid."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ContentPolicyViolation(RunError):
    """Your prompt was blocked by the content policy. Please modify it and try again."""


class UnknownModel(InvalidRequest):
    """The model is not served here."""
