"""Stored runs for the status benchmarks, written straight into a data dir's SQLite database
(one bulk insert) before its server starts.

The mix (:data:`MIX`) is what a gateway that has served for a while holds: mostly finished
runs, a few in flight. The in-flight ones are out of reach of the server's own worker, so
the load reads the same rows from start to end: running ones are leased to another worker
until far in the future; queued ones wait for a retry (``available_at``) far in the future.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from vidgate.runs.ids import new_run_id
from vidgate.runs.request import normalise
from vidgate.runs.status import Status
from vidgate.store.schema import api_keys, runs

MODEL, BACKEND = "testcard-video", "testcard"
MIX = (
    (Status.COMPLETED, 0.85),
    (Status.FAILED, 0.08),
    (Status.CANCELLED, 0.05),
    (Status.IN_PROGRESS, 0.015),
    (Status.IN_QUEUE, 0.005),
)
OTHER_WORKER = "bench-other-worker"
JSON_COLUMNS = frozenset({"request", "provider_state"})
FAR_S = 30 * 86400.0
"""How far in the future the in-flight runs' leases and retries lie."""


@dataclass(frozen=True)
class Seeded:
    run_ids: list[str]
    counts: dict[str, int]
    seconds: float


def mix_text() -> str:
    return ", ".join(f"{share:.1%} {status.flat}" for status, share in MIX)


def database_url(data_dir: Path) -> str:
    """The default database of a data dir (no ``database_url`` in its config)."""
    path = data_dir / "vidgate.db"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: create a key first (it migrates)")
    return f"sqlite:///{path.resolve()}"


def _row(
    i: int, status: Status, key_id: str, now: float, rng: random.Random, request: dict[str, Any]
) -> dict[str, Any]:
    created = now - 86400 * 7 + i * (86400 * 7 / 200_000)  # in id order over the past days
    run_id = new_run_id(int(created * 1000))
    prompt = f"bench run {i}: a red fox in the snow"
    row: dict[str, Any] = {
        "id": run_id,
        "api_key_id": key_id,
        "model": MODEL,
        "backend": BACKEND,
        "status": status.value,
        "request": {**request, "prompt": prompt, "duration_s": rng.choice((3.0, 5.0, 8.0))},
        "cost": 0.0,
        "idempotency_key": None,
        "request_hash": None,
        "progress": None,
        "provider_request_id": None,
        "provider_state": None,
        "provider_status": None,
        "error": None,
        "user_friendly_error": None,
        "is_nsfw": False,
        "output_key": None,
        "output_content_type": None,
        "output_size": None,
        "created_at": created,
        "started_at": created + rng.uniform(0.05, 3),
        "completed_at": None,
        "updated_at": created,
        "available_at": created,
        "deadline_at": None,
        "next_poll_at": None,
        "submit_started_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "attempts": 1,
        "seq": 4,
        "rev": i + 1,
        "webhook_url": None,
        "webhook_events": None,
    }
    finished = row["started_at"] + rng.uniform(2, 40)
    if status is Status.COMPLETED:
        row.update(
            progress=100.0,
            output_key=f"{run_id}/1-{secrets.token_hex(4)}.mp4",
            output_content_type="video/mp4",
            output_size=rng.randint(200_000, 6_000_000),
            completed_at=finished,
        )
    elif status is Status.FAILED:
        row.update(
            error="the renderer failed: out of memory",
            user_friendly_error="Video generation failed. Please try again.",
            completed_at=finished,
            progress=round(rng.uniform(0, 90), 1),
        )
    elif status is Status.CANCELLED:
        row.update(error="cancelled by the client", completed_at=finished, seq=3)
    elif status is Status.IN_PROGRESS:
        row.update(
            progress=round(rng.uniform(0, 99), 1),
            lease_owner=OTHER_WORKER,
            lease_expires_at=now + FAR_S,
            seq=3,
        )
    else:  # queued again, waiting for a retry after an interrupted attempt
        row.update(started_at=None, available_at=now + FAR_S, seq=3)
    row["updated_at"] = row["completed_at"] or row["started_at"] or created
    return row


def _stored(column: str, value: Any) -> Any:
    return json.dumps(value) if column in JSON_COLUMNS and value is not None else value


def seed_runs(data_dir: Path, key_name: str, count: int, seed: int = 1) -> Seeded:
    """Insert ``count`` runs of the key named ``key_name``, statuses drawn from :data:`MIX`."""
    started = time.perf_counter()
    rng = random.Random(seed)
    statuses = rng.choices([s for s, _ in MIX], weights=[w for _, w in MIX], k=count)
    request = normalise({"model": MODEL, "prompt": "bench"}).to_json()
    columns = [c.name for c in runs.columns]
    # Columns the rows leave out are nullable ones (a thumbnail, a route, ...): NULL.
    engine = create_engine(database_url(data_dir))
    try:
        with engine.begin() as conn:
            key_id = conn.execute(select(api_keys.c.id).where(api_keys.c.name == key_name)).scalar()
            if key_id is None:
                raise LookupError(f"no API key named {key_name!r}")
            now = time.time()
            rows = [_row(i, s, key_id, now, rng, request) for i, s in enumerate(statuses)]
            # The driver's executemany, values as SQLAlchemy stores them on SQLite (JSON as
            # text): SQLAlchemy's own per-row parameter handling would take most of the time.
            values = [tuple(_stored(c, r.get(c)) for c in columns) for r in rows]
            marks = ", ".join(["?"] * len(columns))
            sql = f"INSERT INTO runs ({', '.join(columns)}) VALUES ({marks})"
            conn.exec_driver_sql(sql, values)
    finally:
        engine.dispose()
    counts = Counter(s.value for s in statuses)
    return Seeded([r["id"] for r in rows], dict(counts), time.perf_counter() - started)


def status_counts(data_dir: Path) -> dict[str, int]:
    """How many runs there are of each status (to check that nothing moved the seed)."""
    engine = create_engine(database_url(data_dir))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))
            return {status: int(n) for status, n in rows}
    finally:
        engine.dispose()


def write_queries(path: Path, seeded: Seeded, legacy: bool) -> Path:
    """One query string per run, for ``lua/status.lua``."""
    if legacy:
        lines = [f"runId={run_id}&modelSlug={MODEL}" for run_id in seeded.run_ids]
    else:
        lines = [f"requestId={run_id}" for run_id in seeded.run_ids]
    path.write_text("\n".join(lines) + "\n")
    return path
