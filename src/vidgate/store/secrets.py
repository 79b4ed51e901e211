"""Secrets that every process of one installation shares (the dashboard's session-signing
key): made at random on first use and kept in the database, which all API processes
reach, so a cookie signed by one process is honoured by the others."""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from vidgate.store.base import StoreBase
from vidgate.store.schema import server_secrets

SECRET_BYTES = 32


class SecretVerbs(StoreBase):
    def __init__(self, **engines: Any) -> None:
        super().__init__(**engines)
        self._secrets: dict[str, bytes] = {}

    async def shared_secret(self, name: str) -> bytes:
        """The secret called ``name``: 32 random bytes, the same in every process. The
        first process to ask makes it; processes racing to make it agree on one."""
        known = self._secrets.get(name)
        if known is not None:
            return known
        secret = await self._read_secret(name)
        if secret is None:
            row = {
                "name": name,
                "secret": secrets.token_hex(SECRET_BYTES),
                "created_at": time.time(),
            }
            # Another process may make it first: then its secret is the one read back.
            with contextlib.suppress(IntegrityError):
                await self._write(lambda tx: tx.conn.execute(insert(server_secrets).values(row)))
            secret = await self._read_secret(name)
            assert secret is not None  # just written, by us or another process
        self._secrets[name] = secret
        return secret

    async def _read_secret(self, name: str) -> bytes | None:
        query = select(server_secrets.c.secret).where(server_secrets.c.name == name)
        value = await self._read(lambda conn: conn.execute(query).scalar())
        return None if value is None else bytes.fromhex(value)
