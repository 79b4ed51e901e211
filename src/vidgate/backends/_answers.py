"""Reading providers' HTTP answers, written once: which statuses are passing faults and
which refusals of a submit say that nothing was created, ``Retry-After``, refused keys, key
scrubbing, origins and JSON bodies. Pure functions; :mod:`vidgate.backends._http` talks
HTTP with them."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from vidgate.logs import redact, secret_forms

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
SUBMIT_REFUSALS = frozenset({409, 425, 429})
"""Answers to a submit that say for certain that nothing was created (and ``503`` with
``Retry-After``): see :func:`refused_submit`."""
AUTH_STATUSES = frozenset({401, 403})

_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_transient(status: int) -> bool:
    """Whether an HTTP status is a passing fault (408, 409, 425, 429 or 5xx)."""
    return status in TRANSIENT_STATUSES or status >= 500


def refused_submit(response: httpx.Response) -> bool:
    """Whether an error answer to a submit says for certain that no job was created: 409,
    425, 429, or 503 with ``Retry-After``. Any other passing fault may follow the job's
    creation (a gateway's 502 or 504 behind which the provider accepted it)."""
    code = response.status_code
    return code in SUBMIT_REFUSALS or (code == 503 and "retry-after" in response.headers)


def retry_after_s(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), else ``None``."""
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def milliseconds_header_s(headers: httpx.Headers, name: str) -> float | None:
    """A header holding milliseconds (``retry-after-ms``, ``openai-poll-after-ms``), in seconds."""
    ms = _seconds(headers.get(name))
    return None if ms is None else ms / 1000


def response_retry_after_s(response: httpx.Response) -> float | None:
    """The default :data:`RetryAfter`: the answer's ``Retry-After``."""
    return retry_after_s(response.headers)


def refuses_key(response: httpx.Response) -> bool:
    """The default :data:`KeyRefused`: HTTP 401 or 403."""
    return response.status_code in AUTH_STATUSES


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (plain, URL-encoded or escaped) replaced by ``[redacted]``."""
    return redact(text, secret_forms(secret)) if secret else text


def same_origin(url: str, root: str) -> bool:
    """Whether ``url`` is on ``root``'s origin (scheme, host, port): where the key may go."""
    where = origin(url)
    return where is not None and where == origin(root)


def json_or_none(response: httpx.Response) -> Any:
    """The parsed JSON body, or ``None`` when it is not JSON."""
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def exception_text(exc: BaseException) -> str:
    """``ReadError: detail``, or the type name alone when the error says nothing."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None


def origin(url: str) -> tuple[str, str, int | None] | None:
    """A URL's ``(scheme, host, port)``, the port filled in for http and https."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return scheme, parts.hostname, port or _DEFAULT_PORTS.get(scheme)
