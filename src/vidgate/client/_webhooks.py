"""Signing and verifying webhooks, the Standard Webhooks way (https://www.standardwebhooks.com).

A delivery carries three headers: ``webhook-id`` (the message id), ``webhook-timestamp``
(unix seconds) and ``webhook-signature``, a space-separated list of
``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``; during a secret rotation it
holds one signature per secret, and any one that matches is enough. A secret is
``whsec_`` followed by the standard base64 of the key bytes.

Pure functions: no I/O, no clock but the one :func:`verify` reads for the tolerance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vidgate.client._errors import UnexpectedResponseError, WebhookVerificationError
from vidgate.client._parse import parse_status
from vidgate.client._types import VideoStatus

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
DEFAULT_TOLERANCE_S = 300.0
"""How far a delivery's timestamp may be from now, either way, before it is refused."""


@dataclass(frozen=True)
class WebhookEvent:
    """One verified webhook delivery.

    ``type`` is ``video.started``, ``video.progress``, ``video.completed``, ``video.failed``
    or ``video.cancelled``; ``data`` is the run's status, read like an answer of
    ``GET /api/video/status``; ``raw`` is the whole decoded body.
    """

    id: str
    type: str
    timestamp: str
    data: VideoStatus
    raw: dict[str, Any] = field(repr=False, compare=False)


def _key(secret: str) -> bytes:
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise WebhookVerificationError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookVerificationError(
            f"a webhook secret is {SECRET_PREFIX!r} and the standard base64 of its key"
        ) from exc
    if not key:
        raise WebhookVerificationError("the webhook secret is empty")
    return key


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)


def _digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one delivery, for the ``webhook-signature`` header."""
    digest = _digest(_key(secret), msg_id, str(int(timestamp)), _as_bytes(body))
    return "v1," + base64.b64encode(digest).decode("ascii")


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            if value and value.strip():
                return value.strip()
            break
    raise WebhookVerificationError(f"the {name} header is missing")


def _signatures(header: str) -> list[bytes]:
    found = []
    for item in header.split():
        version, _, value = item.partition(",")
        if version != "v1":
            continue  # another scheme (v1a: asymmetric) or garbage: not ours to check
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> WebhookEvent:
    """Check a delivery and return its event; raises :class:`WebhookVerificationError`.

    ``payload`` is the request body exactly as received (not re-serialised JSON).
    ``headers`` is any mapping (a dict, httpx's or Starlette's ``Headers``); names are
    matched without regard to case. ``secret`` may be several secrets, as during a
    rotation. A timestamp more than ``tolerance_s`` seconds from now, either way, is
    refused, so a captured delivery cannot be replayed later.
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise WebhookVerificationError("no webhook secret given")
    keys = [_key(s) for s in secrets]
    msg_id = _header(headers, ID_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    signature_header = _header(headers, SIGNATURE_HEADER)
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"the {TIMESTAMP_HEADER} header is not a number") from None
    skew = time.time() - timestamp
    if abs(skew) > tolerance_s:
        when = "old" if skew > 0 else "far in the future"
        raise WebhookVerificationError(
            f"the webhook timestamp is too {when} ({abs(skew):.0f} s; tolerance {tolerance_s:g} s)"
        )
    body = _as_bytes(payload)
    expected = [_digest(key, msg_id, stamp, body) for key in keys]
    matched = False
    for candidate in _signatures(signature_header):
        for digest in expected:
            matched |= hmac.compare_digest(candidate, digest)
    if not matched:
        raise WebhookVerificationError("no webhook signature matches")
    return _event(msg_id, body)


def _event(msg_id: str, body: bytes) -> WebhookEvent:
    try:
        decoded = json.loads(body)
    except ValueError as exc:
        raise WebhookVerificationError("the webhook body is not JSON") from exc
    if not isinstance(decoded, dict) or not isinstance(decoded.get("type"), str):
        raise WebhookVerificationError("the webhook body is not a vidgate event")
    try:
        data = parse_status(decoded.get("data"), base_url="")
    except UnexpectedResponseError as exc:
        raise WebhookVerificationError(f"the webhook's data is not a run status: {exc}") from exc
    return WebhookEvent(
        id=msg_id,
        type=decoded["type"],
        timestamp=str(decoded.get("timestamp") or ""),
        data=data,
        raw=decoded,
    )
