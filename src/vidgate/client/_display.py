"""What the CLI shows on stderr while it waits and downloads.

On a terminal: a live rich display (status, elapsed time, progress %), then a download
bar. Elsewhere (pipes, CI logs): one plain line per status change, so logs stay readable.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from vidgate.client._types import RunStatus, VideoStatus

_STYLE = {
    RunStatus.IN_QUEUE: "yellow",
    RunStatus.IN_PROGRESS: "cyan",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "red",
    RunStatus.CANCELLED: "magenta",
    RunStatus.UNKNOWN: "white",
}


def describe(status: VideoStatus) -> str:
    """``IN_QUEUE (position 2)``, ``IN_PROGRESS 40%``, ``UNKNOWN (expired)``..."""
    text = status.status.value
    if status.status is RunStatus.UNKNOWN and status.raw_status:
        text += f" ({status.raw_status})"
    if status.queue_position is not None and status.status is RunStatus.IN_QUEUE:
        text += f" (position {status.queue_position})"
    if status.progress is not None and not status.is_terminal:
        text += f" {status.progress:.0f}%"
    return text


class WaitDisplay:
    """Shows a wait; pass :meth:`update` as ``on_update``."""

    def __init__(self, console: Console, run_id: str, *, enabled: bool = True) -> None:
        self.console = console
        self.run_id = run_id
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.started = time.monotonic()
        self._last_line = ""
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        if self.live:
            self._progress.start()
            self._task = self._progress.add_task(f"{self.run_id} submitted", total=100)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live:
            self._progress.stop()

    def update(self, status: VideoStatus) -> None:
        label = describe(status)
        if self.live and self._task is not None:
            style = _STYLE[status.status]
            completed = 100.0 if status.is_completed else status.progress
            self._progress.update(
                self._task,
                description=f"{self.run_id} [{style}]{label}[/{style}]",
                completed=completed if completed is not None else 0,
            )
        elif self.enabled and label != self._last_line:
            elapsed = time.monotonic() - self.started
            self.console.print(f"{self.run_id} {label} ({elapsed:.1f} s)", highlight=False)
        self._last_line = label


class DownloadDisplay:
    """Shows a download; pass :meth:`update` as ``on_progress``."""

    def __init__(self, console: Console, name: str, *, enabled: bool = True) -> None:
        self.live = enabled and console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._name = name

    def __enter__(self) -> Self:
        if self.live:
            self._progress.start()
            self._task = self._progress.add_task(f"downloading {self._name}", total=None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live:
            self._progress.stop()

    def update(self, received: int, total: int | None) -> None:
        if self.live and self._task is not None:
            self._progress.update(self._task, completed=received, total=total)
