"""S3-compatible storage (AWS S3, MinIO, Cloudflare R2, Backblaze B2) through obstore.

Uploads are multipart in parts of :data:`PART_BYTES`, at most :data:`PARTS_IN_FLIGHT` at
once, so a video is never held whole in memory. Videos are served by the bucket itself
through presigned GETs (``Range`` works, no API key is needed).

A SigV4 presigned URL carries the moment it was signed, and obstore signs at the current
time only, so two signatures of one key differ. The rule that a poll within half the URL
lifetime gets the same URL is kept by remembering each URL made, per key and expiry: the
expiry is the same for every poll in one half of the lifetime (:func:`url_expiry`), so
they all get the URL the first of them caused. That memory is per process: API processes
behind one proxy may hand out different URLs for one video, each valid until the same
moment (to the second).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from vidgate.storage.base import StorageError, StorageWriteFailed, StoredObject, url_expiry
from vidgate.storage.location import S3Location

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

    from vidgate.config import StorageSettings

PART_BYTES = 8 * 1024 * 1024
"""Multipart part size (S3's minimum is 5 MiB; parts are buffered in memory)."""
PARTS_IN_FLIGHT = 2
"""Parts uploaded at once: with :data:`PART_BYTES`, bounds an upload's memory."""
UPLOAD_THREADS = 32
"""Uploads and deletes at once per process (each holds a thread while it runs)."""
URLS_KEPT = 20_000
"""Presigned URLs remembered (one per finished video polled recently)."""


class S3Storage:
    def __init__(
        self,
        location: S3Location,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        part_bytes: int = PART_BYTES,
    ) -> None:
        self.location = location
        self.endpoint_url = endpoint_url
        self.part_bytes = part_bytes
        config: S3Config = {}
        for name, value in (
            ("endpoint", endpoint_url),
            ("region", region),
            ("access_key_id", access_key_id),
            ("secret_access_key", secret_access_key),
            ("session_token", session_token),
        ):
            if value:
                config[name] = value  # type: ignore[literal-required]
        client: ClientConfig = {"connect_timeout": timedelta(seconds=10)}
        if endpoint_url is not None and endpoint_url.startswith("http://"):
            client["allow_http"] = True
        self._store = S3Store(
            location.bucket,
            prefix=location.prefix or None,
            config=config,
            client_options=client,
            retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=60)},
        )
        self._urls: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._threads = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="s3")

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> S3Storage:
        location = settings.location
        assert isinstance(location, S3Location)
        secret, token = settings.secret_access_key, settings.session_token
        return cls(
            location,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            access_key_id=settings.access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            session_token=token.get_secret_value() if token else None,
        )

    @property
    def where(self) -> str:
        """The bucket and prefix, and the endpoint when it is not AWS's (no credentials)."""
        place = f"s3://{self.location.bucket}/{self.location.prefix}".rstrip("/")
        return f"{place} at {self.endpoint_url}" if self.endpoint_url else place

    async def put_file(self, key: str, source: Path, content_type: str) -> StoredObject:
        """Upload ``source`` (multipart when large), then remove it: a move, as locally."""
        try:
            size = (await asyncio.to_thread(source.stat)).st_size
            await self._in_thread(self._put, key, source, content_type)
        except (BaseError, OSError) as exc:
            raise self._write_failed(key, exc) from exc
        await asyncio.to_thread(source.unlink, missing_ok=True)
        return StoredObject(key, size, content_type)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str
    ) -> StoredObject:
        """The upload runs in a thread and draws each chunk from this event loop in turn."""
        loop = asyncio.get_running_loop()
        size = 0
        failed: list[BaseException] = []
        abandoned = threading.Event()

        async def next_chunk() -> bytes:
            return await anext(chunks)

        def pull() -> Iterator[bytes]:
            nonlocal size
            while True:
                if abandoned.is_set():  # a source that keeps flowing is not drawn further
                    raise StorageError("the upload was abandoned")
                coming = asyncio.run_coroutine_threadsafe(next_chunk(), loop)
                try:
                    chunk = _wait(coming, abandoned)
                except StopAsyncIteration:
                    return
                except BaseException as exc:
                    failed.append(exc)
                    raise
                size += len(chunk)
                yield chunk

        try:
            await self._in_thread(self._put, key, pull(), content_type)
        except (BaseError, OSError) as exc:
            if failed and exc is failed[0]:
                raise  # the source's failure, as it is
            raise self._write_failed(key, exc) from exc
        finally:
            abandoned.set()  # a cancelled upload stops at its next chunk
        return StoredObject(key, size, content_type)

    def _put(self, key: str, data: Path | Iterator[bytes], content_type: str) -> None:
        obstore.put(
            self._store,
            key,
            data,
            attributes={"Content-Type": content_type},
            chunk_size=self.part_bytes,
            max_concurrency=PARTS_IN_FLIGHT,
        )

    async def _in_thread(self, call: Callable[..., None], *args: object) -> None:
        """obstore's blocking calls, in this storage's threads: its async calls keep
        Python objects on its runtime's threads, which may abort the interpreter as it
        exits (SIGABRT); its own threads keep the default executor free for what feeds a
        stream."""
        await asyncio.get_running_loop().run_in_executor(self._threads, call, *args)

    def _write_failed(self, key: str, exc: Exception) -> StorageWriteFailed:
        where, why = f"the bucket {self.where}", _describe(exc)
        if "NoSuchBucket" in why:
            advice = f"{where} does not exist; create it, or correct storage.url"
        elif isinstance(exc, PermissionError | PermissionDeniedError | UnauthenticatedError):
            advice = (
                f"{where} refused the write ({why}); check the credentials (storage."
                "access_key_id or AWS_ACCESS_KEY_ID, and the secret) and that they may put "
                "objects there"
            )
        else:
            advice = (
                f"writing to {where} failed ({why}); check that the endpoint is reachable "
                "(storage.endpoint_url or AWS_ENDPOINT_URL) and the bucket's state"
            )
        return StorageWriteFailed(f"could not store the video {key}: {advice}")

    async def check(self) -> None:
        """Readiness: the bucket answers a listing of at most one key with these
        credentials (a missing bucket, refused keys or an unreachable endpoint fail)."""

        def list_one() -> None:
            next(iter(obstore.list(self._store, chunk_size=1)), None)

        try:
            await self._in_thread(list_one)
        except (BaseError, OSError) as exc:
            why = _describe(exc)
            raise StorageError(f"the bucket {self.where} does not answer: {why}") from exc

    async def delete(self, key: str) -> None:
        try:
            await self._in_thread(obstore.delete, self._store, key)
        except (BaseError, OSError) as exc:
            raise StorageError(
                f"could not delete {key} from the bucket {self.where}: {_describe(exc)}"
            ) from exc

    def signed_url(
        self,
        key: str,
        base_url: str,
        ttl_s: int,
        *,
        issued_from: float | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A presigned GET of ``key`` that expires at :func:`url_expiry`'s moment; the same
        URL for every call with the same expiry (see the module's docstring). ``base_url``
        is not used: the bucket serves the file."""
        expires = url_expiry(ttl_s, issued_from=issued_from, now=now)
        url = self._urls.get((key, expires))
        if url is not None:
            self._urls.move_to_end((key, expires))
        else:
            lifetime = max(1, expires - int(time.time()))
            url = obstore.sign(self._store, "GET", key, timedelta(seconds=lifetime))
            self._urls[(key, expires)] = url
            if len(self._urls) > URLS_KEPT:
                self._urls.popitem(last=False)
        return url, expires


def _wait(coming: Future[bytes], abandoned: threading.Event) -> bytes:
    """The next chunk, unless the upload is abandoned (cancelled) meanwhile: then an error
    that makes obstore abort the upload rather than complete it."""
    while True:
        try:
            chunk = coming.result(timeout=1)
        except TimeoutError:
            if abandoned.is_set():
                coming.cancel()
                raise StorageError("the upload was abandoned") from None
            continue
        if abandoned.is_set():
            raise StorageError("the upload was abandoned")
        return chunk


def _describe(exc: BaseException) -> str:
    """What went wrong, in a line: the service's status and S3 error code and message when
    it answered, else the first line of obstore's message (a debug dump follows it)."""
    text = str(exc)
    code, message = _S3_CODE.search(text), _S3_MESSAGE.search(text)
    if code is not None:
        status = _STATUS.search(text)
        said = f"{code[1]}: {message[1]}" if message is not None else code[1]
        return f"{status[1]} {said}" if status is not None else said
    return (text.strip().splitlines() or [type(exc).__name__])[0]


_S3_CODE = re.compile(r"<Code>([^<]*)</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_STATUS = re.compile(r"status code: (\d{3})")
