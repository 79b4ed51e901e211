"""Group commit: this process's SQLite writes, committed together.

SQLite has one writer at a time, and each transaction pays a fixed cost (BEGIN
IMMEDIATE, the commit, the hand-off to the writer thread and back) that dwarfs one small
insert. So the writer thread takes every write that is waiting when it becomes free and
runs them all in one transaction: under load, many submits share one commit, and each
caller is answered only after the commit that holds its write. With one write waiting,
nothing waits for company.

A write that raises (an idempotency conflict, a constraint) rolls the whole group back;
the writes of that group are then run again one transaction each, so each gets its own
result. Writes are plain functions of a connection with no effect outside the database,
so running one again is safe.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")
MAX_GROUP = 256
"""Writes committed together at most."""


@dataclass
class Job(Generic[T]):
    work: Callable[[Connection], T]
    future: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine.execution_options(vidgate_write=True)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="vidgate-db-write")
        self._lock = threading.Lock()
        self._waiting: list[Job[Any]] = []
        self._draining = False

    async def run(self, work: Callable[[Connection], T]) -> T:
        """``work``'s result once the transaction that ran it has committed."""
        loop = asyncio.get_running_loop()
        job: Job[T] = Job(work, loop.create_future())
        with self._lock:
            self._waiting.append(job)
            start = not self._draining
            self._draining = True
        if start:
            try:
                loop.run_in_executor(self._thread, self._drain, loop)
            except BaseException:  # shut down: nothing will drain what waits
                with self._lock:
                    self._waiting.remove(job)
                    self._draining = False
                raise
        return await job.future

    def shutdown(self) -> None:
        self._thread.shutdown(wait=True)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: commit groups until nothing waits."""
        while True:
            with self._lock:
                group = self._waiting[:MAX_GROUP]
                del self._waiting[:MAX_GROUP]
                if not group:
                    self._draining = False
                    return
            self._commit(group)
            try:
                loop.call_soon_threadsafe(_answer, group)
            except RuntimeError:  # the loop is closed: nobody waits any more
                with self._lock:
                    self._waiting.clear()
                    self._draining = False
                return

    def _commit(self, group: list[Job[Any]]) -> None:
        in_work = False
        try:
            with self._engine.begin() as conn:
                results = []
                for job in group:
                    in_work = True
                    results.append(job.work(conn))
                    in_work = False
        except Exception as exc:
            if len(group) == 1 or not in_work:  # its own error, or the transaction's
                for job in group:
                    job.error = exc
            else:  # one write failed: each gets its own transaction and its own answer
                for job in group:
                    self._commit([job])
            return
        for job, result in zip(group, results, strict=True):
            job.result = result


def _answer(group: list[Job[Any]]) -> None:
    """On the event loop: hand each write its result (callers may have gone away)."""
    for job in group:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
