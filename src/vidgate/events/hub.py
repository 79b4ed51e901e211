"""The in-process fan-out of run changes.

A :class:`RunChange` names a run, its new sequence number and status. Made in this
process, it also carries the run as committed, so a waiter here answers without a query;
from another process (a NOTIFY, a SQLite watcher) it does not, and a waiter reads the run.
A change that arrives twice (made here, then echoed by the feed) is told once.

Subscribe before you read: open a :class:`Watch`, then read the run, then wait for a
sequence number above the one you read. A change committed between the read and the wait
is already recorded in the watch, so nothing slips through. The same change may arrive
twice (published locally and echoed by the feed); sequence numbers make that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from vidgate.runs.status import Status
from vidgate.store.records import DeliveryRecord, RunRecord

log = logging.getLogger("vidgate.events")


@dataclass(frozen=True)
class RunChange:
    run_id: str
    seq: int
    status: Status
    backend: str
    webhook: bool = False
    """A webhook delivery may have been queued with this change (the sender should look)."""
    run: RunRecord | None = field(default=None, compare=False, repr=False)
    """The run as committed, when the change was made in this process (a waiter here need
    not read it again); None when it came from another process. Its request is left out
    (it can hold megabytes of image), except after a submit, which has it at hand."""
    delivery: DeliveryRecord | None = field(default=None, compare=False, repr=False)
    """The webhook delivery this change queued, when made in this process."""


Listener = Callable[[RunChange | None], None]
"""Called for every change in this process; ``None`` means "changes may have been missed"
(a feed reconnected), so a listener should look again at what it cares about."""
CommitListener = Callable[[RunChange], None]
"""Called once for every change this process committed (never for one heard from another
process, nor twice for one echoed by a feed): what counts changes (metrics) listens so."""


class Watch:
    """The changes of one run since the watch was opened: only the newest sequence number
    matters, because every reader reads the run's whole current state."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0
        self.latest: RunChange | None = None
        self._arrived = asyncio.Event()

    def offer(self, change: RunChange) -> None:
        if change.seq > self.seq:
            self.seq = change.seq
            self.latest = change
            self._arrived.set()

    def snapshot(self) -> RunRecord | None:
        """The newest state of the run, if the change that brought it carried it (made
        in this process); else None, and the run must be read."""
        return self.latest.run if self.latest is not None else None

    async def wait_past(self, seq: int, timeout_s: float) -> bool:
        """True once a change newer than ``seq`` has arrived; False after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.seq <= seq:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return self.seq > seq
        return True


class RunEvents:
    """One per process. Not thread-safe: publish from the event loop's thread (feeds running
    in threads hand their changes over with ``loop.call_soon_threadsafe``)."""

    def __init__(self, remember: int = 10_000) -> None:
        self._watches: dict[str, set[Watch]] = {}
        self._listeners: list[Listener] = []
        self._committers: list[CommitListener] = []
        # The newest sequence number seen per run (the most recently changed runs), so that
        # a change that arrives twice (published here, then echoed by the feed) is told once.
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._remember = remember

    @contextlib.contextmanager
    def watch(self, run_id: str) -> Iterator[Watch]:
        watch = Watch(run_id)
        self._watches.setdefault(run_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(run_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[run_id]

    def watched(self) -> set[str]:
        """The runs somebody in this process is waiting on."""
        return set(self._watches)

    def waiting(self) -> int:
        """How many waiters (held polls, event streams) this process has."""
        return sum(len(watches) for watches in self._watches.values())

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def add_commit_listener(self, listener: CommitListener) -> None:
        self._committers.append(listener)

    def committed(self, changes: list[RunChange]) -> None:
        """Changes this process has just committed: tell the commit listeners, then
        publish them."""
        for change in changes:
            for listener in self._committers:
                try:
                    listener(change)
                except Exception:
                    log.exception("events.listener_failed run_id=%s", change.run_id)
        self.publish_many(changes)

    def publish(self, change: RunChange) -> None:
        """Tell every waiter of the run and every listener, unless this change (or a newer
        one of the run) was told already."""
        seen = self._seen.get(change.run_id, 0)
        if seen >= change.seq:
            # Told already, or older than what was told: waiters have nothing new. But a
            # change made here may come after its feed echo (or a newer change's): it still
            # hands the delivery it queued to the sender.
            if change.delivery is not None:
                self._notify(change)
            return
        self._seen[change.run_id] = change.seq
        self._seen.move_to_end(change.run_id)
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        for watch in self._watches.get(change.run_id, ()):
            watch.offer(change)
        self._notify(change)

    def publish_many(self, changes: list[RunChange]) -> None:
        for change in changes:
            self.publish(change)

    def resync(self) -> None:
        """Tell listeners that changes may have been missed (a feed reconnected)."""
        self._notify(None)

    def _notify(self, change: RunChange | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a broken listener must not stop the others
                log.exception("events.listener_failed")
