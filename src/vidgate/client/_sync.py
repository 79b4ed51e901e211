"""The blocking client. Everything but the I/O lives in ``_base``, ``_parse`` and ``_wait``;
:mod:`vidgate.client._async` mirrors this module method for method."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from types import TracebackType
from typing import Any, Self

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

OnUpdate = Callable[[VideoStatus], object]
OnProgress = Callable[[int, int | None], object]


class Client(BaseClient):
    """A blocking client for vidgate and for NanoGPT's hosted video API.

    ``Client(base_url, api_key)`` reads nothing from the environment; use
    :meth:`from_env` for ``VIDGATE_BASE_URL`` / ``VIDGATE_API_KEY``. Pass ``http_client``
    (not closed by this client) or ``transport`` to control the HTTP layer.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s=timeout_s, max_retries=max_retries)
        if http_client is not None and transport is not None:
            raise ValueError("pass http_client or transport, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport)

    @classmethod
    def from_env(cls, *, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Self:
        """A client configured from ``VIDGATE_BASE_URL`` (default ``http://127.0.0.1:8000``)
        and ``VIDGATE_API_KEY``; keyword arguments override them."""
        return cls(**{**settings_from_env(environ), **kwargs})

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------

    def _send_once(self, call: Call) -> Answer:
        request = self._build(self._http, call)
        try:
            response = self._http.send(request)
        except httpx.RequestError as exc:
            raise connection_error(exc, call.url) from exc
        return read_answer(response)

    def _send(self, call: Call) -> Answer:
        attempt = 0
        while True:
            try:
                return self._send_once(call)
            except VidgateError as error:
                delay = self._retry_delay(call.retry, error, attempt)
                if delay is None:
                    raise
            time.sleep(delay)
            attempt += 1

    # -- the API ------------------------------------------------------------------------

    def generate_video(
        self,
        model: str,
        prompt: str | None = None,
        *,
        idempotency_key: str | None = None,
        **params: Any,
    ) -> Run:
        """Submit a run; returns its :class:`Run` handle at once (the run is queued).

        ``params`` are sent as they are (``duration=5``, ``resolution="720p"``...). With an
        ``idempotency_key`` the submit is retried on 5xx, 429 and broken connections, and a
        repeat of the key returns the first run; without one it is never re-sent once it
        may have reached the server, so it can never start (and charge) two runs.
        """
        submission = parse_submission(
            self._send(self._submit_call(model, prompt, params, idempotency_key)).body,
            model=model,
        )
        return Run(self, submission.run_id, submission.model, submission=submission)

    def run(self, run_id: str, model: str | None = None) -> Run:
        """A handle on an existing run, rebuilt from its id (no request is sent)."""
        return Run(self, run_id, model)

    def get_video_status(self, run_id: str, model: str | None = None) -> VideoStatus:
        """The run's status now. With ``model``, the legacy route
        ``/api/generate-video/status?runId&modelSlug`` is used; without, ``/api/video/status``."""
        return self._status_from(self._send(self._status_call(run_id, model)), run_id, model)

    def wait_for_video(
        self,
        run_id: str,
        model: str | None = None,
        *,
        timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
        poll_interval_s: float | None = None,
        on_update: OnUpdate | None = None,
    ) -> VideoStatus:
        """Wait until the run is terminal and return its COMPLETED status.

        Raises :class:`GenerationFailed` or :class:`GenerationCancelled` when it ends
        otherwise, and :class:`WaitTimeout` after ``timeout_s`` seconds (the run goes on).
        ``on_update`` is called with every status seen. See :mod:`vidgate.client._wait`
        for long-poll, ``Retry-After`` and backoff rules.
        """
        waiter = Waiter(
            run_id,
            timeout_s=timeout_s,
            request_timeout_s=self.timeout_s,
            poll_interval_s=poll_interval_s,
        )
        while True:
            call = self._status_call(run_id, model, waiter.next_step())
            try:
                answer = self._send_once(call)
                status = self._status_from(answer, run_id, model)
            except VidgateError as error:
                delay = waiter.on_error(error)
                if delay is None:
                    raise
            else:
                if on_update is not None:
                    on_update(status)
                delay = waiter.on_status(status, held=answer.long_poll)
                if delay is None:
                    return finish(status)
                streamer = self._streamer_after(waiter)
                if streamer is not None:
                    try:
                        return finish(self._follow(streamer, on_update))
                    except VidgateError as error:
                        if not offers_no_stream(error):
                            raise
                        self._streams_offered = False  # long-poll from now on
            if delay > 0:
                time.sleep(delay)

    def _follow(self, streamer: Streamer, on_update: OnUpdate | None) -> VideoStatus:
        """The run's terminal status, read from its stream."""
        with closing(self._stream(streamer)) as statuses:
            for status in statuses:
                if on_update is not None:
                    on_update(status)
        assert streamer.last is not None  # a stream ends only after a terminal status
        return streamer.last

    def stream_status(
        self, run_id: str, *, timeout_s: float = DEFAULT_WAIT_TIMEOUT_S
    ) -> Iterator[VideoStatus]:
        """The run's statuses as the server pushes them (``GET /api/video/status/stream``),
        one per change, ending after a terminal one (which is yielded, not raised).

        A dropped connection or a 5xx is resumed with ``Last-Event-ID``, with backoff;
        :class:`WaitTimeout` is raised after ``timeout_s`` seconds. A server without the
        stream route answers :class:`NotFoundError`; :meth:`wait_for_video` falls back to
        long-polling there. Close the iterator (``contextlib.closing``) to stop early.
        """
        return self._stream(self._streamer(run_id, timeout_s))

    def _stream(self, streamer: Streamer) -> Generator[VideoStatus, None, None]:
        delay: float | None
        while True:
            call = self._stream_call(streamer.run_id, streamer.next_connection())
            try:
                response = self._http.send(self._build(self._http, call), stream=True)
                try:
                    if not is_event_stream(response):
                        response.read()
                        refuse_stream(response)
                    for chunk in response.iter_bytes():
                        for event in streamer.feed(chunk):
                            status = self._status_from_event(event, streamer.run_id)
                            terminal = streamer.on_status(status, event.id)
                            yield status
                            if terminal:
                                return
                        if streamer.cut():
                            break
                finally:
                    response.close()
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
                time.sleep(delay)

    def cancel(self, run_id: str) -> VideoStatus:
        """Ask the server to cancel the run; returns its status after the request (a run
        that was already terminal keeps its status)."""
        return self._status_from(self._send(self._cancel_call(run_id)), run_id, None)

    def list_models(self) -> list[VideoModel]:
        """The models the server offers (``GET /api/v1/video-models``)."""
        return parse_models(self._send(self._models_call()).body)

    def download_video(
        self,
        status_or_url: VideoStatus | str,
        path: str | os.PathLike[str],
        *,
        on_progress: OnProgress | None = None,
    ) -> Path:
        """Stream the video to ``path`` and return it.

        Takes a COMPLETED :class:`VideoStatus` or a URL (relative URLs are resolved against
        the base URL). The file appears only once complete (it is written to
        ``path + ".part"`` first). ``on_progress(received_bytes, total_bytes_or_None)``.
        """
        url = self._video_url(status_or_url)
        target = Path(path)
        part = part_path(target)
        attempt = 0
        while True:
            try:
                self._download_once(url, part, on_progress)
                break
            except VidgateError as error:
                delay = self._retry_delay(RetryMode.IDEMPOTENT, error, attempt)
                if delay is None:
                    part.unlink(missing_ok=True)
                    raise
            time.sleep(delay)
            attempt += 1
        part.replace(target)
        return target

    def _download_once(self, url: str, part: Path, on_progress: OnProgress | None) -> None:
        try:
            with self._http.stream(
                "GET",
                url,
                headers=self._download_headers(url),
                follow_redirects=True,
                timeout=httpx.Timeout(self.timeout_s),
            ) as response:
                if response.status_code >= 300:
                    response.read()
                    read_answer(response)  # raises the matching error
                total = content_length(response)
                received = 0
                with part.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        received += len(chunk)
                        if on_progress is not None:
                            on_progress(received, total)
                if total is not None and received < total:
                    raise APIConnectionError(f"download of {url} ended early")
        except httpx.RequestError as exc:
            raise connection_error(exc, url) from exc


class Run:
    """A handle on one run. Rebuild one from a bare id with ``client.run(run_id)``.

    ``submission`` holds what the submit answered (cost, balance), when this handle came
    from :meth:`Client.generate_video`.
    """

    def __init__(
        self,
        client: Client,
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
        return f"Run(id={self.id!r}, model={self.model!r})"

    def status(self) -> VideoStatus:
        return self.client.get_video_status(self.id)

    def wait(
        self,
        *,
        timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
        poll_interval_s: float | None = None,
        on_update: OnUpdate | None = None,
    ) -> VideoStatus:
        return self.client.wait_for_video(
            self.id, timeout_s=timeout_s, poll_interval_s=poll_interval_s, on_update=on_update
        )

    def stream(self, *, timeout_s: float = DEFAULT_WAIT_TIMEOUT_S) -> Iterator[VideoStatus]:
        """The run's statuses as they change; see :meth:`Client.stream_status`."""
        return self.client.stream_status(self.id, timeout_s=timeout_s)

    def download(
        self,
        path: str | os.PathLike[str],
        *,
        timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
        on_progress: OnProgress | None = None,
    ) -> Path:
        """Wait for the run (up to ``timeout_s``) and download its video to ``path``."""
        return self.client.download_video(
            self.wait(timeout_s=timeout_s), path, on_progress=on_progress
        )

    def cancel(self) -> VideoStatus:
        return self.client.cancel(self.id)
