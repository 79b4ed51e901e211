"""API keys: created with a secret that is never stored (only its SHA-256), looked up by
hash, revoked; each has a webhook signing secret (rotatable) and an optional default URL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

from sqlalchemy import ColumnElement, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from vidgate.store.base import StoreBase
from vidgate.store.errors import KeyNameTaken, KeyNotFound
from vidgate.store.records import KeyRecord
from vidgate.store.schema import api_keys

KEY_PREFIX = "vg_"
KEY_CACHE_S = 0.5
"""How long an authenticated key is trusted without reading it again: a key revoked by
any process stops working within this time (at once in the process that revokes it)."""
KEY_CACHE_SIZE = 10_000


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_webhook_secret() -> str:
    """``whsec_`` + standard base64 of 32 random bytes (the Standard Webhooks form)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _by_name_or_id(name_or_id: str) -> ColumnElement[bool]:
    return or_(api_keys.c.name == name_or_id, api_keys.c.id == name_or_id)


class KeyVerbs(StoreBase):
    def __init__(self, **engines: Any) -> None:
        super().__init__(**engines)
        self._key_cache: dict[str, tuple[KeyRecord, float]] = {}
        """Live keys by the hash of their secret, with when they were read."""
        self._key_reads: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._key_writes = 0
        """Key changes made here; a read that crossed one is not cached."""

    async def create_key(
        self,
        name: str,
        *,
        webhook_url: str | None = None,
        budget_usd_per_day: float | None = None,
        max_in_flight: int | None = None,
        admin: bool = False,
        providers: str | None = None,
    ) -> tuple[KeyRecord, str]:
        """Create a key; returns its record and the secret, which is never stored. An
        ``admin`` key may also sign in to the dashboard."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = {
            "id": "key_" + secrets.token_hex(8),
            "name": name,
            "key_hash": hash_key(secret),
            "prefix": secret[:10],
            "webhook_secret": new_webhook_secret(),
            "created_at": time.time(),
            "revoked_at": None,
            "webhook_url": webhook_url,
            "webhook_secret_previous": None,
            "webhook_secret_rotated_at": None,
            "budget_usd_per_day": budget_usd_per_day,
            "max_in_flight": max_in_flight,
            "admin": admin,
            "providers": providers,
        }
        try:
            await self._write(lambda tx: tx.conn.execute(insert(api_keys).values(**row)))
        except IntegrityError:
            raise KeyNameTaken(f"an API key named {name!r} exists already") from None
        return KeyRecord.from_row(row), secret

    async def list_keys(self) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [KeyRecord.from_row(r._mapping) for r in rows]

    async def get_key(self, name_or_id: str) -> KeyRecord:
        query = select(api_keys).where(_by_name_or_id(name_or_id))
        row = await self._read(lambda conn: conn.execute(query).first())
        if row is None:
            raise KeyNotFound(f"no API key named {name_or_id!r}")
        return KeyRecord.from_row(row._mapping)

    async def revoke_key(self, name_or_id: str) -> KeyRecord:
        return await self._update_key(
            name_or_id, revoked_at=func.coalesce(api_keys.c.revoked_at, time.time())
        )

    async def rotate_webhook_secret(self, name_or_id: str) -> KeyRecord:
        """A new signing secret; the old one keeps signing beside it for the overlap."""
        return await self._update_key(
            name_or_id,
            webhook_secret=new_webhook_secret(),
            webhook_secret_previous=api_keys.c.webhook_secret,
            webhook_secret_rotated_at=time.time(),
        )

    async def set_webhook_url(self, name_or_id: str, url: str | None) -> KeyRecord:
        return await self._update_key(name_or_id, webhook_url=url)

    async def set_limits(self, name_or_id: str, **limits: float | int | str | None) -> KeyRecord:
        """Set (or, with None, clear) ``budget_usd_per_day``, ``max_in_flight`` and
        ``providers`` (comma-separated); other processes apply it within
        :data:`KEY_CACHE_S`."""
        unknown = set(limits) - {"budget_usd_per_day", "max_in_flight", "providers"}
        if unknown:
            raise TypeError(f"not a key limit: {', '.join(sorted(unknown))}")
        return await self._update_key(name_or_id, **limits)

    async def _update_key(self, name_or_id: str, **values: object) -> KeyRecord:
        statement = (
            update(api_keys)
            .where(_by_name_or_id(name_or_id))
            .values(**values)
            .returning(*api_keys.c)
        )
        row = await self._write(lambda tx: tx.conn.execute(statement).first())
        self._key_writes += 1
        self._key_cache.clear()
        self._key_reads.clear()  # a read begun before this change must not answer after it
        if row is None:
            raise KeyNotFound(f"no API key named {name_or_id!r}")
        return KeyRecord.from_row(row._mapping)

    def cached_key(self, secret: str) -> KeyRecord | None:
        """The live key whose secret this is, if it was read less than
        :data:`KEY_CACHE_S` ago; None means "ask :meth:`authenticate`"."""
        return self._cached(hash_key(secret))

    def _cached(self, digest: str) -> KeyRecord | None:
        cached = self._key_cache.get(digest)
        if cached is not None and time.monotonic() - cached[1] < KEY_CACHE_S:
            return cached[0]
        return None

    async def authenticate(self, secret: str) -> KeyRecord | None:
        """The live key whose secret this is, or None. The lookup is by hash; the final
        comparison is constant-time. A key read less than :data:`KEY_CACHE_S` ago is not
        read again, and polls that find it stale at once share one read."""
        digest = hash_key(secret)
        cached = self._cached(digest)
        if cached is not None:
            return cached
        reading = self._key_reads.get(digest)
        if reading is None:
            reading = self._key_reads[digest] = asyncio.ensure_future(self._read_key(digest))
            reading.add_done_callback(lambda _: self._key_reads.pop(digest, None))
        return await asyncio.shield(reading)

    async def _read_key(self, digest: str) -> KeyRecord | None:
        read_at, writes = time.monotonic(), self._key_writes
        query = select(api_keys).where(api_keys.c.key_hash == digest)
        row = await self._read(lambda conn: conn.execute(query).first())
        if row is None or row.revoked_at is not None:
            self._key_cache.pop(digest, None)
            return None
        if not hmac.compare_digest(row.key_hash, digest):
            return None
        key = KeyRecord.from_row(row._mapping)
        if writes != self._key_writes:  # a key changed here meanwhile: read it again
            return await self._read_key(digest)
        if len(self._key_cache) >= KEY_CACHE_SIZE:
            self._key_cache.clear()
        self._key_cache[digest] = (key, read_at)
        return key
