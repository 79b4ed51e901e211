"""Pages from the package's Jinja2 templates, with the headers every dashboard answer
carries: a Content-Security-Policy that allows no inline script (the little JavaScript
there is lives in ``static/``), no framing, no caching of operator data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from vidgate.server.state import AppState
from vidgate.ui import sessions
from vidgate.views import iso

CSRF_MAX_AGE_S = 24 * 3600


def when(ts: float | None) -> str:
    """A time as the pages show it: ISO 8601 UTC to the second."""
    text = iso(ts)
    return "" if text is None else text.replace("T", " ").split(".")[0] + "Z"


def _usd(amount: float | None) -> str:
    return "" if amount is None else f"${amount:.4f}"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


templates = Environment(
    loader=PackageLoader("vidgate.ui", "templates"),
    autoescape=True,  # every value is escaped unless a template says otherwise (none does)
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(when=when, usd=_usd, seconds=_seconds, percent=_percent)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL; None for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(media_origins: Iterable[str] = ()) -> str:
    """Scripts, styles and connections from this server only; videos and posters also
    from ``media_origins`` (where signed video URLs point: S3, a CDN)."""
    media = " ".join(["'self'", *sorted(set(media_origins))])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {media} data:",
            f"media-src {media}",
            "connect-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def page(
    request: Request,
    state: AppState,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    media_origins: Iterable[str] = (),
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The template rendered, with the form token its forms carry (set as a cookie when
    the browser has none yet)."""
    token, new = sessions.csrf_token(request)
    html = templates.get_template(template).render(
        {"csrf_field": sessions.CSRF_FIELD, "csrf_token": token, "signed_in": None, **context}
    )
    response = HTMLResponse(
        html,
        status_code=status_code,
        headers={
            **SECURITY_HEADERS,
            "Content-Security-Policy": content_security_policy(media_origins),
            **(headers or {}),
        },
    )
    if new:
        sessions.set_cookie(
            response, request, state, sessions.CSRF_COOKIE, token, max_age=CSRF_MAX_AGE_S
        )
    return response


def message_page(
    request: Request, state: AppState, status_code: int, title: str, message: str, **extra: Any
) -> HTMLResponse:
    """An error or notice as a page: what happened and what to do."""
    return page(
        request,
        state,
        "message.html",
        {"title": title, "message": message, **extra},
        status_code=status_code,
    )
