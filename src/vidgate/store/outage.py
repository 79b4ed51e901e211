"""Telling a database outage from a failed statement.

An outage is something the caller cannot fix and that passes by itself or by an
operator's hand: PostgreSQL restarting or out of reach, a SQLite file locked by another
process for longer than the busy timeout, a full disk. The store raises
:class:`~vidgate.store.errors.StoreUnavailable` for these (the API answers ``503`` with
``Retry-After``; workers wait and write again); anything else (a constraint, a bug) goes
on as it was raised.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator

import asyncpg
from sqlalchemy import exc as sa_exc

from vidgate.store.errors import StoreUnavailable

_SQLITE = {
    5: "it is locked by another process (busy)",
    6: "it is locked by another connection",
    7: "SQLite ran out of memory",
    8: "its file is read-only",
    10: "reading or writing its file failed (disk I/O error)",
    13: "the disk that holds it is full",
    14: "its file cannot be opened",
    15: "its lock protocol failed (another process is recovering it)",
}
"""SQLite's primary result codes that mean an outage, and what they mean."""

_POSTGRES = {
    "53100": "the disk that holds it is full",
    "53200": "PostgreSQL ran out of memory",
    "53300": "it has no free connections",
    "57P01": "it is shutting down",
    "57P02": "it is restarting after a crash",
    "57P03": "it is starting up or shutting down",
    "25006": "it is read-only (a standby)",
    "58030": "reading or writing its files failed (I/O error)",
}
"""PostgreSQL SQLSTATEs that mean an outage; the whole class 08 (connection exceptions)
does too."""


def outage_of(error: BaseException) -> StoreUnavailable | None:
    """The outage behind ``error`` (a driver's error, however SQLAlchemy wrapped it), or
    None if it is not one."""
    reason = _reason(error)
    if reason is None:
        return None
    return StoreUnavailable(f"the database is unavailable: {reason}")


def _reason(error: BaseException) -> str | None:
    for cause in _chain(error):
        if isinstance(cause, sqlite3.Error):
            code = getattr(cause, "sqlite_errorcode", None)
            return _SQLITE.get(code & 0xFF) if isinstance(code, int) else None
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and state:
            if state.startswith("08"):
                return "the connection to it failed"
            return _POSTGRES.get(state)
        if isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated:
            return "the connection to it was lost"
        if isinstance(cause, asyncpg.exceptions.ConnectionDoesNotExistError):
            return "the connection to it was lost"
        if isinstance(cause, sa_exc.TimeoutError):
            return "all connections to it are in use"
        if isinstance(cause, TimeoutError):
            return "it did not answer in time"
        if isinstance(cause, OSError):  # its address stays out of answers to clients
            name = errno.errorcode.get(cause.errno or 0)
            return f"it cannot be reached ({name})" if name else "it cannot be reached"
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what SQLAlchemy wrapped (``orig``) and what caused each, in turn."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                todo.append(inner)
