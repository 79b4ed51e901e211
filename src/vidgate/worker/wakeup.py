"""Sleeping until something happens: the worker loops' one way to wait."""

from __future__ import annotations

import asyncio


async def sleep_until(timeout_s: float, *events: asyncio.Event) -> None:
    """Return when any of ``events`` is set, or after ``timeout_s``."""
    waiters = {asyncio.ensure_future(e.wait()) for e in events}
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
