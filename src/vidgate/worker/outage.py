"""Outlasting a database outage.

What a worker learned about a run (a finished render, a provider's job id) exists nowhere
but in its memory until it is written. While the database is unavailable such a write is
tried again, with backoff, until it goes through or the worker stops (the run's lease then
runs out and the run is redone): the run ends as it really ended, not as a casualty of the
outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from vidgate.logs import event
from vidgate.store.errors import StoreUnavailable

log = logging.getLogger("vidgate.worker")
T = TypeVar("T")
FIRST_RETRY_S = 0.1
MAX_RETRY_S = 2.0


async def despite_outage(operation: Callable[[], Awaitable[T]], *, run_id: str) -> T:
    """``operation()``'s result (a store call about ``run_id``), tried again for as long
    as the database is unavailable.

    A write is a conditional statement (it applies only while this worker holds the run),
    so trying it again cannot apply it twice; if a try did commit but its answer was lost
    with the connection, the next try finds the run changed and says so: callers check
    what the run holds before they undo anything."""
    delay = FIRST_RETRY_S
    while True:
        try:
            return await operation()
        except StoreUnavailable as exc:
            event(
                log,
                "run.write_waiting",
                logging.WARNING,
                run_id=run_id,
                error=str(exc),
                retry_s=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)
