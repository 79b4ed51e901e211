"""Turning a submit body into a new run: validate, moderate, price. Pure: no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from vidgate.runs.catalog import Catalog
from vidgate.runs.ids import new_run_id
from vidgate.runs.moderation import Moderation
from vidgate.runs.request import Limits, normalise
from vidgate.runs.routing import encode_routes, parse_preferences, run_routes
from vidgate.runs.sandbox import parse_sandbox
from vidgate.runs.webhooks import encode_events
from vidgate.store.records import NewRun


def request_hash(body: object) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def prepare_run(
    body: object,
    *,
    api_key_id: str,
    catalog: Catalog,
    limits: Limits,
    moderation: Moderation,
    now: float,
    idempotency_key: str | None = None,
    default_webhook_url: str | None = None,
    allowed_providers: Sequence[str] | None = None,
) -> NewRun:
    """Validate a parsed JSON body; raises InvalidRequest, UnknownModel or
    ContentPolicyViolation with a message meant for the caller. A run without its own
    ``webhookUrl`` uses ``default_webhook_url`` (the key's), if any; a remote model's run
    uses only ``allowed_providers`` (the key's, None: any), in the order the body's
    ``provider`` preferences ask for."""
    request = normalise(body, limits)
    spec = catalog.get(request.model)
    request, adjusted = spec.limits.apply(request, spec.slug)
    spec.validate(request)
    asked = body.get("provider") if isinstance(body, Mapping) else None
    preferences = None if asked is None else parse_preferences(asked)
    routes = spec.all_routes
    chosen = run_routes(
        spec.slug,
        routes,
        preferences,
        allowed=None if spec.is_local else allowed_providers,
        preferences_allowed=spec.allow_provider_preferences,
    )
    first = next(route for route in routes if route.provider == chosen[0])
    moderation.check(request)
    webhook_url = request.webhook_url or default_webhook_url
    available_at = now
    if spec.backend == "testcard":  # the sandbox's switches are the testcard models'
        available_at += parse_sandbox(request.prompt)[1].queue_s
    return NewRun(
        id=new_run_id(int(now * 1000)),
        api_key_id=api_key_id,
        model=spec.slug,
        backend=first.backend,
        request=request.to_json(),
        # A hold that covers whichever route makes it; the route's own price once chosen.
        cost=max(spec.on_route(r).estimate_cost(request) for r in routes if r.provider in chosen),
        video_s=spec.seconds_of(request),
        adjusted=adjusted or None,
        available_at=available_at,
        deadline_at=None if spec.is_local else now + spec.deadline_s,
        idempotency_key=idempotency_key,
        request_hash=request_hash(body) if idempotency_key else None,
        webhook_url=webhook_url,
        webhook_events=encode_events(request.webhook_events) if webhook_url else None,
        created_at=now,
        routes=encode_routes(chosen, routes),
    )
