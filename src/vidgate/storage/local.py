"""Local-directory storage with HMAC-signed, expiring URLs served by ``GET /files/<key>``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hmac
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

from vidgate.storage.base import (
    BadSignature,
    StorageError,
    StorageWriteFailed,
    StoredObject,
    url_expiry,
)

_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")

_UNRESERVED = re.compile(r"[A-Za-z0-9_.\-~/]*")
"""What ``quote`` leaves as it is (a key's usual characters): such a key is not quoted."""
SECRET_BYTES = 32


class BadSecret(StorageError):
    """The signing secret's file does not hold a secret."""


def load_or_create_secret(path: Path) -> bytes:
    """The server's signing secret, generated on first use and kept (mode 0600) at ``path``.

    Processes that start together on a new data directory all end with the one secret that
    was written first: each writes its own candidate to a file of its own, synced, and
    links it to ``path``, which only the first link creates; the others read that one."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(SECRET_BYTES)
    candidate = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(value.hex())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(candidate, path)
        except FileExistsError:  # another process was first: its secret is the one
            return _read_secret(path)
    finally:
        candidate.unlink(missing_ok=True)
    _sync_directory(path.parent)
    return value


def _read_secret(path: Path) -> bytes:
    try:
        value = bytes.fromhex(path.read_bytes().decode("ascii").strip())
    except ValueError:  # not ASCII, or not hex digits
        value = b""
    if len(value) != SECRET_BYTES:
        raise BadSecret(
            f"{path} does not hold a {SECRET_BYTES}-byte signing secret "
            f"({2 * SECRET_BYTES} hex digits); it is damaged. Restore it from a backup, or "
            "delete it to have a new one made at the next start (video links handed out "
            "so far then stop working)"
        )
    return value


def _sync_directory(path: Path) -> None:
    """Make a new name in ``path`` survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root
        self._secret = secret

    def _path(self, key: str) -> Path:
        if not _KEY_RE.fullmatch(key) or ".." in key.split("/"):
            raise StorageError(f"invalid storage key {key!r}")
        return self.root / key

    async def put_file(self, key: str, source: Path, content_type: str) -> StoredObject:
        """Move ``source`` into storage under ``key`` (atomically); StorageWriteFailed if
        that fails, leaving nothing behind."""
        target = self._path(key)
        tmp = target.with_name(target.name + f".{secrets.token_hex(4)}.part")

        def _move() -> int:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(source, tmp)  # a copy where storage is on another file system
                os.replace(tmp, target)
                return target.stat().st_size
            except OSError as exc:
                _remove(tmp)
                raise self._write_failed(key, exc) from exc

        size = await asyncio.to_thread(_move)
        return StoredObject(key, size, content_type)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str
    ) -> StoredObject:
        """Write a stream of chunks under ``key``; nothing is held whole in memory."""
        target = self._path(key)
        tmp = target.with_name(target.name + f".{secrets.token_hex(4)}.part")
        size = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as handle:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
                    size += len(chunk)
            os.replace(tmp, target)
        except OSError as exc:  # our files' errors; the source's are its own kind
            raise self._write_failed(key, exc) from exc
        finally:
            _remove(tmp)
        return StoredObject(key, size, content_type)

    def _write_failed(self, key: str, exc: OSError) -> StorageWriteFailed:
        where = f"the storage directory {self.root}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            advice = f"{where} is full (no space left on its device); free space there"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            advice = f"{where} is not writable ({exc.strerror}); check its permissions and mount"
        else:
            advice = f"writing to {where} failed ({exc.strerror or exc})"
        return StorageWriteFailed(f"could not store the video {key}: {advice}")

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def check(self) -> None:
        """A cheap check that videos can be stored (readiness): StorageError if not."""

        def writable() -> bool:
            self.root.mkdir(parents=True, exist_ok=True)
            return os.access(self.root, os.W_OK | os.X_OK)

        try:
            ok = await asyncio.to_thread(writable)
        except OSError as exc:
            raise self._write_failed("(readiness check)", exc) from exc
        if not ok:
            raise StorageError(f"the storage directory {self.root} is not writable")

    def _sign(self, key: str, expires: int) -> str:
        mac = hmac.digest(self._secret, f"{key}\n{expires}".encode(), "sha256")
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def signed_url(
        self,
        key: str,
        base_url: str,
        ttl_s: int,
        *,
        issued_from: float | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """An absolute URL for ``key`` that works without an API key until it expires.

        The expiry moves in steps of half the TTL counted from ``issued_from``, so repeated
        polls get the same URL for a while, and every URL handed out stays valid for at
        least half the TTL.
        """
        expires = url_expiry(ttl_s, issued_from=issued_from, now=now)
        # Both values need no escaping: digits, and URL-safe base64 without padding.
        query = f"exp={expires}&sig={self._sign(key, expires)}"
        path = key if _UNRESERVED.fullmatch(key) else quote(key)
        return f"{base_url.rstrip('/')}/files/{path}?{query}", expires

    def open_signed(self, key: str, exp: str | None, sig: str | None) -> Path:
        """The file behind a signed URL; BadSignature if the signature is wrong or expired,
        FileNotFoundError if the file is gone."""
        if not exp or not sig or not (exp.isascii() and exp.isdigit() and len(exp) <= 12):
            raise BadSignature("this file URL is missing its signature (exp and sig)")
        if not hmac.compare_digest(self._sign(key, int(exp)).encode(), sig.encode()):
            raise BadSignature("this file URL's signature is not valid")
        if int(exp) < time.time():
            raise BadSignature("this file URL has expired; fetch the run's status for a new one")
        try:
            path = self._path(key)
        except StorageError:
            raise BadSignature("this file URL's signature is not valid") from None
        if not path.is_file():
            raise FileNotFoundError(key)
        return path


def _remove(path: Path) -> None:
    """Remove a partial file, if there is one (there is none where its directory could
    not be made: the failure to report is that one)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        path.unlink()
