"""The dashboard's run pages: recent runs of every key (filtered, paginated, with live
status from :mod:`vidgate.ui.live`), and one run with its timeline, provider detail,
error, cost and video."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from vidgate import views
from vidgate.runs.status import Status
from vidgate.server.common import base_url, state_of
from vidgate.store.dashboard import RunFilter
from vidgate.store.errors import KeyNotFound, NotFound
from vidgate.store.records import KeyRecord
from vidgate.ui.render import message_page, origin_of, page
from vidgate.ui.signin import Admin

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
BY_FLAT = {status.flat: status for status in Status}
"""The statuses by the lower-case names the pages show (queued, processing, ...)."""

Param = Annotated[str | None, Query()]


@router.get("/ui")
async def runs_page(
    request: Request,
    admin: Admin,
    status: Param = None,
    model: Param = None,
    key: Param = None,
    before: Param = None,
    per_page: Param = None,
) -> Response:
    state = state_of(request)
    keys = await state.store.list_keys()
    filters = {"status": status or "", "model": model or "", "key": key or ""}
    wanted, problem = _filter(filters, keys)
    size = PAGE_SIZE
    if per_page:
        if not per_page.isdigit() or not 1 <= int(per_page) <= MAX_PAGE_SIZE:
            problem = f"'per_page' must be a whole number from 1 to {MAX_PAGE_SIZE}"
        else:
            size = int(per_page)
    if problem is not None:
        return message_page(request, state, 400, "Runs", problem, back_label="All runs")
    runs = await state.store.list_runs(wanted, size + 1, before or None)
    older = runs[size - 1].id if len(runs) > size else None
    kept = {name: value for name, value in filters.items() if value}
    if per_page:
        kept["per_page"] = str(size)
    context = {
        "title": "Runs",
        "signed_in": admin.name,
        "runs": runs[:size],
        "statuses": list(BY_FLAT),
        "models": sorted({spec.slug for spec in state.catalog} | {run.model for run in runs}),
        "keys": keys,
        "key_names": {k.id: k.name for k in keys},
        "filters": filters,
        "filtered": bool(kept),
        "first_page": not before,
        "refresh_url": _url(kept, before),
        "newest_url": _url(kept, None),
        "older_url": _url(kept, older) if older else None,
    }
    return page(request, state, "runs.html", context)


def _filter(filters: dict[str, str], keys: list[KeyRecord]) -> tuple[RunFilter, str | None]:
    """The filter the query asks for, or why it cannot be applied."""
    status = None
    if filters["status"]:
        text = filters["status"]
        status = BY_FLAT.get(text.lower()) or next((s for s in Status if s == text.upper()), None)
        if status is None:
            return RunFilter(), (
                f"unknown status {filters['status']!r}; choose one of {', '.join(BY_FLAT)}"
            )
        filters["status"] = status.flat
    key_id = None
    if filters["key"]:
        found = next((k for k in keys if filters["key"] in (k.id, k.name)), None)
        if found is None:
            return RunFilter(), (
                f"no API key named {filters['key']!r}; choose one from the list "
                "(`vidgate keys list` shows them all)"
            )
        key_id = filters["key"] = found.id
    return RunFilter(status, filters["model"] or None, key_id), None


def _url(filters: dict[str, str], before: str | None) -> str:
    query = {**filters, **({"before": before} if before else {})}
    return "/ui" + (f"?{urlencode(query)}" if query else "")


@router.get("/ui/runs/{run_id}")
async def run_page(request: Request, admin: Admin, run_id: str) -> Response:
    state = state_of(request)
    try:
        run = await state.store.get(run_id)
    except NotFound:
        message = f"there is no run {run_id!r}; it may have been deleted by the retention policy"
        return message_page(request, state, 404, "No such run", message, back_label="All runs")
    links = views.output_links(
        state.storage, run, base_url(request, state), state.settings.storage.url_ttl_s
    )
    link = links.video if links is not None else None
    video_url = link.url if link is not None else None
    poster = links.thumbnail.url if links is not None and links.thumbnail is not None else None
    media = [o for o in (origin_of(video_url or ""), origin_of(poster or "")) if o is not None]
    try:
        key_name = (await state.store.get_key(run.api_key_id)).name
    except KeyNotFound:  # the key row is gone: show its id
        key_name = run.api_key_id
    prompt = run.request.get("prompt") if isinstance(run.request, dict) else None
    context = {
        "title": f"Run {run.id}",
        "signed_in": admin.name,
        "run": run,
        "key_name": key_name,
        "prompt": prompt if isinstance(prompt, str) else "",
        "video_url": video_url,
        "video_expires": link.expires_at if link is not None else None,
        "poster_url": poster,
    }
    return page(request, state, "run.html", context, media_origins=media)
