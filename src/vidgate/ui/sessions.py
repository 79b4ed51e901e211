"""Dashboard sign-in: the session cookie, the form token against cross-site posts, and a
brake on guessing.

* The session cookie holds a signed, timestamped token naming the admin key's id (never
  the key): :class:`itsdangerous.URLSafeTimedSerializer` with HMAC-SHA256, keyed by a
  secret kept in the database (:meth:`~vidgate.store.secrets.SecretVerbs.shared_secret`),
  so every API process of an installation honours it. Each request checks the key is still live and
  admin: revoking it ends its sessions at once.
* Forms that post (sign in, sign out) carry a random token that must equal the one in a
  cookie set with the form (double submit), and a browser's ``Origin`` must be this
  server's. A site elsewhere can neither read the cookie nor set the field.
* Cookies are ``HttpOnly``, ``SameSite=Strict`` and, when the request came over HTTPS (or
  ``server.public_base_url`` is https), ``Secure``. Plain http on loopback cannot have a
  Secure cookie (browsers would drop it there).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from vidgate.server.state import AppState
from vidgate.store.errors import KeyNotFound
from vidgate.store.records import KeyRecord

SESSION_COOKIE = "vidgate_session"
CSRF_COOKIE = "vidgate_csrf"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/ui"
SECRET_NAME = "ui-session"  # noqa: S105 - the name of a secret kept in the database
FAILURES_ALLOWED = 5
FAILURE_WINDOW_S = 60.0


def _serializer(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        secret, salt="vidgate.ui.session", signer_kwargs={"digest_method": hashlib.sha256}
    )


async def session_token(state: AppState, key: KeyRecord) -> str:
    """A new session's cookie value: the key's id, signed and timestamped."""
    secret = await state.store.shared_secret(SECRET_NAME)
    return _serializer(secret).dumps({"key": key.id})


async def session_key(state: AppState, request: Request) -> KeyRecord | None:
    """The live admin key whose session this request carries, or None (no cookie, a bad
    or expired signature, a key revoked or no longer admin)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    secret = await state.store.shared_secret(SECRET_NAME)
    try:
        payload = _serializer(secret).loads(token, max_age=state.settings.ui.session_ttl_s)
    except BadSignature:  # SignatureExpired is one too
        return None
    key_id = payload.get("key") if isinstance(payload, dict) else None
    if not isinstance(key_id, str):
        return None
    try:
        key = await state.store.get_key(key_id)
    except KeyNotFound:
        return None
    if key.id != key_id or key.revoked_at is not None or not key.admin:
        return None
    return key


def secure_cookies(state: AppState, request: Request) -> bool:
    """Whether cookies may be sent over HTTPS only: the request came over HTTPS (behind
    a proxy that says so in ``X-Forwarded-Proto``, believed from the addresses uvicorn's
    ``FORWARDED_ALLOW_IPS`` names: loopback by default), or the server's public address
    is https."""
    public = state.settings.server.public_base_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def set_cookie(
    response: Response, request: Request, state: AppState, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(state, request),
    )


def csrf_token(request: Request) -> tuple[str, bool]:
    """The form token of this browser, and whether it is new (to be set as a cookie)."""
    known = request.cookies.get(CSRF_COOKIE)
    if known and 20 <= len(known) <= 100:
        return known, False
    return secrets.token_urlsafe(32), True


def csrf_refusal(state: AppState, request: Request, sent: str | None) -> str | None:
    """Why a posted form may not be acted on (it did not come from this dashboard), or
    None if it may."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        allowed = {_origin(str(request.base_url))}
        if state.settings.server.public_base_url:
            allowed.add(_origin(state.settings.server.public_base_url))
        if _origin(origin) not in allowed:
            return (
                f"this form was sent from {origin}, not from this dashboard; open the "
                "dashboard at its own address and try again"
            )
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        return (
            "the form's security token is missing or stale (cookies may be blocked, or the "
            "page is old); reload the page and send the form again"
        )
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass
class LoginBrake:
    """At most :data:`FAILURES_ALLOWED` failed sign-ins per client address within
    :data:`FAILURE_WINDOW_S`, per process. Enough to make guessing a key (256 random bits)
    by this route slow and visible in the log; not a defence against a distributed
    attacker, whom the keys' length defeats anyway."""

    failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after_s(self, client: str, now: float | None = None) -> int | None:
        """Seconds until ``client`` may try again, or None if it may now."""
        at = time.monotonic() if now is None else now
        recent = self._recent(client, at)
        if len(recent) < FAILURES_ALLOWED:
            return None
        return max(1, round(recent[0] + FAILURE_WINDOW_S - at))

    def failed(self, client: str, now: float | None = None) -> None:
        at = time.monotonic() if now is None else now
        self._recent(client, at).append(at)
        if len(self.failures) > 10_000:  # forget the quiet ones
            self.failures = {c: d for c, d in self.failures.items() if d}

    def _recent(self, client: str, at: float) -> deque[float]:
        recent = self.failures.setdefault(client, deque())
        while recent and recent[0] <= at - FAILURE_WINDOW_S:
            recent.popleft()
        return recent
