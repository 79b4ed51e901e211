"""What the operators' dashboard reads: every key's runs, newest first, and each backend's
runs in flight and recent outcomes. Reads only; the runs' requests are never loaded (they
can hold megabytes of image): only their prompts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import String, and_, func, select

from vidgate.runs.status import Status
from vidgate.store.base import StoreBase
from vidgate.store.schema import runs

PROMPT_SHOWN_CHARS = 200


@dataclass(frozen=True)
class RunFilter:
    """Which runs a listing shows; None: any."""

    status: Status | None = None
    model: str | None = None
    api_key_id: str | None = None


@dataclass(frozen=True)
class ListedRun:
    id: str
    api_key_id: str
    model: str
    backend: str
    status: Status
    cost: float
    created_at: float
    started_at: float | None
    completed_at: float | None
    prompt: str


@dataclass(frozen=True)
class BackendOutcomes:
    """One backend: its runs in flight now, and the runs that ended in the window."""

    backend: str
    queued: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    mean_run_s: float | None = None
    """Mean time from start to end of the completed runs in the window."""

    @property
    def error_rate(self) -> float | None:
        """Failed runs of those that completed or failed in the window (None: none did)."""
        ended = self.completed + self.failed
        return None if ended == 0 else self.failed / ended


class DashboardVerbs(StoreBase):
    async def list_runs(
        self, where: RunFilter, limit: int, before: str | None = None
    ) -> list[ListedRun]:
        """Runs newest first (ids sort by creation time), of any key; ``before``: only
        runs older than this run id (the next page)."""
        prompt = func.substr(runs.c.request["prompt"].as_string(), 1, PROMPT_SHOWN_CHARS)
        query = select(
            runs.c.id,
            runs.c.api_key_id,
            runs.c.model,
            runs.c.backend,
            runs.c.status,
            runs.c.cost,
            runs.c.created_at,
            runs.c.started_at,
            runs.c.completed_at,
            prompt.cast(String).label("prompt"),
        )
        if where.status is not None:
            query = query.where(runs.c.status == where.status.value)
        if where.model is not None:
            query = query.where(runs.c.model == where.model)
        if where.api_key_id is not None:
            query = query.where(runs.c.api_key_id == where.api_key_id)
        if before is not None:
            query = query.where(runs.c.id < before)
        query = query.order_by(runs.c.id.desc()).limit(limit)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [
            ListedRun(
                r.id,
                r.api_key_id,
                r.model,
                r.backend,
                Status(r.status),
                float(r.cost),
                r.created_at,
                r.started_at,
                r.completed_at,
                r.prompt or "",
            )
            for r in rows
        ]

    async def backend_outcomes(self, since: float) -> list[BackendOutcomes]:
        """Per backend: runs queued and in progress now, and the runs created since
        ``since`` that have ended, by status, with the mean run time of completed ones."""
        live = (Status.IN_QUEUE.value, Status.IN_PROGRESS.value)
        in_flight = (
            select(runs.c.backend, runs.c.status, func.count())
            .where(runs.c.status.in_(live))
            .group_by(runs.c.backend, runs.c.status)
        )
        ended = (
            select(
                runs.c.backend,
                runs.c.status,
                func.count(),
                func.avg(runs.c.completed_at - runs.c.started_at),
            )
            .where(and_(runs.c.created_at >= since, runs.c.status.not_in(live)))
            .group_by(runs.c.backend, runs.c.status)
        )
        now_rows = await self._read(lambda conn: conn.execute(in_flight).all())
        ended_rows = await self._read(lambda conn: conn.execute(ended).all())
        counts: dict[str, dict[str, float | None]] = {}
        for backend, status, count in now_rows:
            counts.setdefault(backend, {})[status] = int(count)
        for backend, status, count, mean_s in ended_rows:
            entry = counts.setdefault(backend, {})
            entry[status] = int(count)
            if status == Status.COMPLETED.value and mean_s is not None:
                entry["mean_run_s"] = float(mean_s)
        return [
            BackendOutcomes(
                backend,
                queued=int(c.get(Status.IN_QUEUE.value) or 0),
                in_progress=int(c.get(Status.IN_PROGRESS.value) or 0),
                completed=int(c.get(Status.COMPLETED.value) or 0),
                failed=int(c.get(Status.FAILED.value) or 0),
                cancelled=int(c.get(Status.CANCELLED.value) or 0),
                mean_run_s=c.get("mean_run_s"),
            )
            for backend, c in sorted(counts.items())
        ]
