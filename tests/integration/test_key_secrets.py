"""API keys on SQLite and PostgreSQL: the secret is never stored, a key is found by the
hash of the secret presented, and the final comparison is constant-time."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

import pytest

from vidgate.store.keys import hash_key
from vidgate.store.sql import SQLStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SQLStore]:
    opened = await SQLStore.open(database_url)
    yield opened
    await opened.close()


async def test_keys_are_compared_in_constant_time(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, secret = await store.create_key("timing")
    compared: list[tuple[str, str]] = []
    constant_time = hmac.compare_digest

    def recording(a: str, b: str) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    found = await store.authenticate(secret)
    assert found is not None and found.id == key.id
    assert compared == [(hash_key(secret), hash_key(secret))]
    assert await store.authenticate(secret[:-1] + "x") is None
    assert secret not in repr(await store.list_keys())  # only its hash and prefix are kept
