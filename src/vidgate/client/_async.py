"""The asyncio (and trio, through anyio) client: :mod:`vidgate.client._sync` with ``await``.

Keep the two modules method for method alike; the tests run every operation on both.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import httpx

from vidgate.client._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WAIT_TIMEOUT_S,
    Answer,
    BaseClient,
    Call,
    connection_error,
    content_length,
    is_event_stream,
    part_path,
    read_answer,
    refuse_stream,
    settings_from_env,
)
from vidgate.client._errors import APIConnectionError, VidgateError
from vidgate.client._parse import parse_models, parse_submission
from vidgate.client._retry import RetryMode
from vidgate.client._stream import Streamer, offers_no_stream
from vidgate.client._types import Submission, VideoModel, VideoStatus
from vidgate.client._wait import Waiter, finish

AsyncOnUpdate = Callable[[VideoStatus], Awaitable[object] | object]
AsyncOnProgress = Callable[[int, int | None], Awaitable[object] | object]


async def _call_back(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is not None:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result


class AsyncClient(BaseClient):
    """The async twin of :class:`vidgate.Client`: same constructor, same method names.

    Callbacks (``on_update``, ``on_progress``) may be plain functions or coroutines.
    Use it as an async context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s=timeout_s, max_retries=max_retries)
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport)

    @classmethod
    def from_env(cls, *, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Self:
        """A client configured from ``VIDGATE_BASE_URL`` (default ``http://127.0.0.1:8000``)
        and ``VIDGATE_API_KEY``; keyword arguments override them."""
        return cls(**{**settings_from_env(environ), **kwargs})

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- sending ----------------------------------------------------------------------

    async def _send_once(self, call: Call) -> Answer:
        request = self._build(self._http, call)
        try:
            response = await self._http.send(request)
        except httpx.RequestError as exc:
            raise connection_error(exc, call.url) from exc
        return read_answer(response)

    async def _send(self, call: Call) -> Answer:
        attempt = 0
        while True:
            try:
                return await self._send_once(call)
            except VidgateError as error:
                delay = self._retry_delay(call.retry, error, attempt)
                if delay is None:
                    raise
            await anyio.sleep(delay)
            attempt += 1

    # -- the API ------------------------------------------------------------------------

    async def generate_video(
        self,
        model: str,
        prompt: str | None = None,
        *,
        idempotency_key: str | None = None,
        **params: Any,
    ) -> AsyncRun:
        """Submit a run; see :meth:`vidgate.Client.generate_video`."""
        answer = await self._send(self._submit_call(model, prompt, params, idempotency_key))
        submission = parse_submission(answer.body, model=model)
        return AsyncRun(self, submission.run_id, submission.model, submission=submission)

    def run(self, run_id: str, model: str | None = None) -> AsyncRun:
        """A handle on an existing run, rebuilt from its id (no request is sent)."""
        return AsyncRun(self, run_id, model)

    async def get_video_status(self, run_id: str, model: str | None = None) -> VideoStatus:
        """The run's status now; see :meth:`vidgate.Client.get_video_status`."""
        answer = await self._send(self._status_call(run_id, model))
        return self._status_from(answer, run_id, model)

    async def wait_for_video(
        self,
        run_id: str,
        model: str | None = None,
        *,
        timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
        poll_interval_s: float | None = None,
        on_update: AsyncOnUpdate | None = None,
    ) -> VideoStatus:
        """Wait until the run is terminal; see :meth:`vidgate.Client.wait_for_video`."""
        waiter = Waiter(
            run_id,
            timeout_s=timeout_s,
            request_timeout_s=self.timeout_s,
            poll_interval_s=poll_interval_s,
        )
        while True:
            call = self._status_call(run_id, model, waiter.next_step())
            try:
                answer = await self._send_once(call)
                status = self._status_from(answer, run_id, model)
            except VidgateError as error:
                delay = waiter.on_error(error)
                if delay is None:
                    raise
            else:
                await _call_back(on_update, status)
                delay = waiter.on_status(status, held=answer.long_poll)
                if delay is None:
                    return finish(status)
                streamer = self._streamer_after(waiter)
                if streamer is not None:
                    try:
                        return finish(await self._follow(streamer, on_update))
                    except VidgateError as error:
                        if not offers_no_stream(error):
                            raise
                        self._streams_offered = False  # long-poll from now on
            if delay > 0:
                await anyio.sleep(delay)

    async def _follow(self, streamer: Streamer, on_update: AsyncOnUpdate | None) -> VideoStatus:
        """The run's terminal status, read from its stream."""
        async with aclosing(self._stream(streamer)) as statuses:
            async for status in statuses:
                await _call_back(on_update, status)
        assert streamer.last is not None  # a stream ends only after a terminal status
        return streamer.last

    def stream_status(
        self, run_id: str, *, timeout_s: float = DEFAULT_WAIT_TIMEOUT_S
    ) -> AsyncIterator[VideoStatus]:
        """The run's statuses as the server pushes them; see
        :meth:`vidgate.Client.stream_status`. Use ``contextlib.aclosing`` to stop early."""
        return self._stream(self._streamer(run_id, timeout_s))

    async def _stream(self, streamer: Streamer) -> AsyncGenerator[VideoStatus, None]:
        delay: float | None
        while True:
            call = self._stream_call(streamer.run_id, streamer.next_connection())
            try:
                response = await self._http.send(self._build(self._http, call), stream=True)
                try:
                    if not is_event_stream(response):
                        await response.aread()
                        refuse_stream(response)
                    async for chunk in response.aiter_bytes():
                        for event in streamer.feed(chunk):
                            status = self._status_from_event(event, streamer.run_id)
                            terminal = streamer.on_status(status, event.id)
                            yield status
                            if terminal:
                                return
                        if streamer.cut():
                            break
                finally:
                    await response.aclose()
                delay = streamer.on_end()
            except httpx.RequestError as exc:
                error = connection_error(exc, call.url)
                delay = streamer.on_error(error)
                if delay is None:
                    raise error from exc
            except VidgateError as error:
                delay = streamer.on_error(error)
                if delay is None:
                    raise
            if delay > 0:
                await anyio.sleep(delay)

    async def cancel(self, run_id: str) -> VideoStatus:
        """Ask the server to cancel the run; see :meth:`vidgate.Client.cancel`."""
        return self._status_from(await self._send(self._cancel_call(run_id)), run_id, None)

    async def list_models(self) -> list[VideoModel]:
        """The models the server offers (``GET /api/v1/video-models``)."""
        return parse_models((await self._send(self._models_call())).body)

    async def download_video(
        self,
        status_or_url: VideoStatus | str,
        path: str | os.PathLike[str],
        *,
        on_progress: AsyncOnProgress | None = None,
    ) -> Path:
        """Stream the video to ``path``; see :meth:`vidgate.Client.download_video`."""
        url = self._video_url(status_or_url)
        target = Path(path)
        part = anyio.Path(part_path(target))
        attempt = 0
        while True:
            try:
                await self._download_once(url, part, on_progress)
                break
            except VidgateError as error:
                delay = self._retry_delay(RetryMode.IDEMPOTENT, error, attempt)
                if delay is None:
                    await part.unlink(missing_ok=True)
                    raise
            await anyio.sleep(delay)
            attempt += 1
        await part.replace(target)
        return target

    async def _download_once(
        self, url: str, part: anyio.Path, on_progress: AsyncOnProgress | None
    ) -> None:
        try:
            async with self._http.stream(
                "GET",
                url,
                headers=self._download_headers(url),
                follow_redirects=True,
                timeout=httpx.Timeout(self.timeout_s),
            ) as response:
                if response.status_code >= 300:
                    await response.aread()
                    read_answer(response)  # raises the matching error
                total = content_length(response)
                received = 0
                async with await anyio.open_file(part, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        await out.write(chunk)
                        received += len(chunk)
                        await _call_back(on_progress, received, total)
                if total is not None and received < total:
                    raise APIConnectionError(f"download of {url} ended early")
        except httpx.RequestError as exc:
            raise connection_error(exc, url) from exc


class AsyncRun:
    """The async twin of :class:`vidgate.Run`. Rebuild one with ``client.run(run_id)``."""

    def __init__(
        self,
        client: AsyncClient,
        run_id: str,
        model: str | None = None,
        *,
        submission: Submission | None = None,
    ) -> None:
        self.client = client
        self.id = run_id
        self.model = model
        self.submission = submission

    def __repr__(self) -> str:
        return f"AsyncRun(id={self.id!r}, model={self.model!r})"

    async def status(self) -> VideoStatus:
        return await self.client.get_video_status(self.id)

    async def wait(
        self,
        *,
        timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
        poll_interval_s: float | None = None,
        on_update: AsyncOnUpdate | None = None,
    ) -> VideoStatus:
        return await self.client.wait_for_video(
            self.id, timeout_s=timeout_s, poll_interval_s=poll_interval_s, on_update=on_update
        )

    def stream(self, *, timeout_s: float = DEFAULT_WAIT_TIMEOUT_S) -> AsyncIterator[VideoStatus]:
        """The run's statuses as they change; see :meth:`AsyncClient.stream_status`."""
        return self.client.stream_status(self.id, timeout_s=timeout_s)

    async def download(
        self,
        path: str | os.PathLike[str],
        *,
        timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
        on_progress: AsyncOnProgress | None = None,
    ) -> Path:
        """Wait for the run (up to ``timeout_s``) and download its video to ``path``."""
        status = await self.wait(timeout_s=timeout_s)
        return await self.client.download_video(status, path, on_progress=on_progress)

    async def cancel(self) -> VideoStatus:
        return await self.client.cancel(self.id)
