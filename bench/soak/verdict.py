"""What became of the soak's runs, asked of the API and the database, and the report."""

from __future__ import annotations

import argparse
import collections
import contextlib
import sqlite3
from dataclasses import dataclass

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.soak.load import Setup, Tally


@dataclass
class Findings:
    lost: list[str]
    doubled: list[str]
    statuses: collections.Counter[str]
    failures: collections.Counter[str]
    videos_checked: int


async def findings(setup: Setup, tally: Tally) -> Findings:
    """What became of every accepted run, asked once more after the drain."""
    lost, failures, statuses = [], collections.Counter[str](), collections.Counter[str]()
    async with httpx.AsyncClient(timeout=30, headers={"x-api-key": setup.key}) as http:
        for run_id in tally.accepted.values():
            body = tally.ended.get(run_id)
            if body is None:
                answer = await http.get(
                    setup.bases[0] + "/api/video/status", params={"requestId": run_id}
                )
                state = answer.json().get("status") if answer.status_code == 200 else None
                lost.append(f"{run_id}: HTTP {answer.status_code}, status {state}")
                continue
            statuses[f"{tally.models[run_id]}: {body['status']}"] += 1
            if body["status"] != "completed":
                failures[str(body.get("error") or body.get("userFriendlyError"))] += 1
        repeated = (await http.get(setup.fal_stats)).json()["repeated_prompts"]
        checked = 0
        for body in list(tally.ended.values())[:: max(1, len(tally.ended) // 10)]:
            url = body.get("videoUrl")
            if isinstance(url, str):
                video = await http.get(url)
                if video.status_code != 200 or video.content[4:8] != b"ftyp":
                    lost.append(f"{body['requestId']}: video {url} HTTP {video.status_code}")
                checked += 1
    doubled = [f"idempotency key {k} gave two run ids" for k in tally.doubled_keys]
    for idem, rows in (await stored_runs(setup.database_url)).items():
        if len(rows) > 1:
            doubled.append(f"{len(rows)} runs stored for idempotency key {idem}: {rows}")
        elif tally.accepted.get(idem) != rows[0]:
            lost.append(f"{rows[0]} (key {idem}) is stored but no client was told of it")
    doubled += [f"fal emulator got {p!r} more than once" for p in repeated]
    return Findings(lost, doubled, statuses, failures, checked)


QUERY = "SELECT idempotency_key, id FROM runs WHERE idempotency_key LIKE 'soak-%'"


async def stored_runs(url: str) -> dict[str, list[str]]:
    """The soak's runs as the database holds them, by idempotency key."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            rows = db.execute(QUERY).fetchall()
    else:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                rows = [tuple(row) for row in await conn.execute(text(QUERY))]
        finally:
            await engine.dispose()
    found: dict[str, list[str]] = collections.defaultdict(list)
    for idem, run_id in rows:
        found[idem].append(run_id)
    return found


def report(
    setup: Setup, tally: Tally, found: Findings, args: argparse.Namespace, facts: dict[str, str]
) -> str:
    """The report; ``facts`` (the date, the commit) as they were when the soak began."""
    kinds = ", ".join(f"{n} x {kind}" for kind, n in tally.failure_kinds.most_common()) or "-"
    lines = [
        "# Soak",
        "",
        "Written by `make soak` (`bench/soak/`); edit the code, not this file.",
        "",
        f"- **date**: {facts['date']}, **commit**: {facts['commit']}",
        f"- **machine**: {facts.get('CPU', '?')}, {facts.get('memory', '?')}",
        f"- **store**: {setup.store}; {len(setup.bases)} x `serve --no-worker` and "
        f"{len(setup.procs) - len(setup.bases)} x `vidgate worker`; fal emulator in its own "
        "process",
        f"- **load**: {args.minutes:g} minutes, {args.rate:g} submits a second (half testcard "
        "240p 1 s, half fal jobs), each run followed by long-poll until it ends; then "
        f"{args.drain_s:g} s for the last runs to end",
        f"- **command**: `{' '.join(args.command)}` (`make soak` runs it on a PostgreSQL "
        "it starts)",
        "",
        "## Verdict",
        "",
        "| what | count |",
        "|---|---|",
        f"| runs submitted | {tally.submitted} |",
        f"| runs accepted (202) | {len(tally.accepted)} |",
        f"| runs lost (not ended, unknown, or video missing) | **{len(found.lost)}** |",
        f"| runs doubled (two run ids for a key, two provider jobs for a run) "
        f"| **{len(found.doubled)}** |",
        f"| unexpected answers (5xx, or a 4xx a correct client should not get) "
        f"| **{len(tally.unexpected)}** |",
        f"| requests sent | {tally.requests} |",
        f"| connections refused or cut by a restart, then sent again | "
        f"{tally.connection_failures} ({kinds}) |",
        f"| finished videos fetched and checked (MP4 header) | {found.videos_checked} |",
        "",
        "## Restarts",
        "",
        *[f"- {r}" for r in tally.restarts],
        "",
        "## How the runs ended",
        "",
        *[f"- {k}: {v}" for k, v in sorted(found.statuses.items())],
        "",
    ]
    if found.failures:
        lines += ["Failures, by message:", ""]
        lines += [f"- {n} x {message}" for message, n in found.failures.most_common()]
        lines.append("")
    for title, items in (
        ("Lost", found.lost),
        ("Doubled", found.doubled),
        ("Unexpected answers", tally.unexpected),
    ):
        if items:
            lines += [f"## {title}", "", *[f"- {item}" for item in items[:50]], ""]
    return "\n".join(lines)
