"""Which backend name maps to which implementation."""

from __future__ import annotations

from vidgate.backends.base import LocalBackend


def local_backends() -> dict[str, LocalBackend]:
    from vidgate.backends.testcard import TestcardBackend

    return {"testcard": TestcardBackend()}
