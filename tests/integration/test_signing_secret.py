"""The URL-signing secret: one secret however many processes make it at once; a damaged
secret file is refused, never used."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from vidgate.storage.base import StorageError
from vidgate.storage.local import load_or_create_secret


def _start_together(path: Path, starters: int) -> list[bytes | BaseException]:
    """What ``starters`` threads get, released at once to load or make the secret."""
    ready = threading.Barrier(starters)
    results: list[bytes | BaseException] = []

    def start() -> None:
        ready.wait()
        try:
            results.append(load_or_create_secret(path))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_first_starts_racing_on_one_data_dir_agree_on_one_secret(tmp_path: Path) -> None:
    for attempt in range(20):
        path = tmp_path / str(attempt) / "secret.key"
        results = _start_together(path, 8)
        assert len(set(results)) == 1, results
        assert results[0] == load_or_create_secret(path)
        assert isinstance(results[0], bytes) and len(results[0]) == 32
        assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"]
        assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content", ["", "\n", "abcd", "00" * 16, "zz" * 32, "00" * 33])
def test_a_secret_that_is_not_32_bytes_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "secret.key"
    path.write_text(content)
    with pytest.raises(StorageError, match="does not hold a 32-byte signing secret"):
        load_or_create_secret(path)
    assert path.read_text() == content  # left for the operator to look at
