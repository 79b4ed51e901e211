"""What every remote adapter does the same way over HTTP, written once.

An adapter knows its provider's protocol (URLs, bodies, statuses, error envelopes); this
module knows how to talk HTTP to a provider safely:

* :class:`ProviderHTTP` sends every call with a timeout and the provider's headers, turns
  transport faults and answers into :class:`ProviderUnavailable`,
  :class:`SubmitOutcomeUnknown` or :class:`GenerationFailed`, scrubs the API key from every
  message, and streams outputs, following redirects by hand so the key only ever goes to
  the provider's own origin;
* reading answers (statuses, ``Retry-After``, key scrubbing, origins) is in
  :mod:`vidgate.backends._answers`; the request mapping the generic adapters share, in
  :mod:`vidgate.backends._mapping`.

The error policy, in one place:

=====================================================  ==================================
what happened                                          raised
=====================================================  ==================================
no connection could be made (connect error/timeout,    ``ProviderUnavailable``: nothing
pool timeout, proxy)                                   reached the provider
a timeout or a drop after the request was sent         ``ProviderUnavailable``; at submit
                                                       ``SubmitOutcomeUnknown``
a 2xx answer that is not the expected JSON             ``ProviderUnavailable``; at submit
                                                       ``SubmitOutcomeUnknown``
HTTP 408, 409, 425, 429 or 5xx                         ``ProviderUnavailable`` with
                                                       ``retry_after_s``; at submit, see
                                                       below
HTTP 401/403 while following a job                     ``ProviderUnavailable`` naming the
                                                       key problem (the job is likely fine)
any other refusal of a submit                          ``GenerationFailed``
=====================================================  ==================================

At submit, a passing fault is only a refusal (``ProviderUnavailable``: nothing was created,
send it again later) when the answer says so for certain: ``409`` (conflict), ``425`` (too
early), ``429`` (rate limited) and ``503`` *with* ``Retry-After`` (the service itself asks to
come back later). Every other one (``408``, ``500``, ``502``, ``504``, a ``503`` without
``Retry-After``, any other ``5xx``) may come after the provider accepted the job, as a
gateway's ``502``/``504`` often does: it is ``SubmitOutcomeUnknown``, like a lost answer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from vidgate.backends._answers import (
    exception_text,
    is_transient,
    json_or_none,
    refused_submit,
    refuses_key,
    response_retry_after_s,
    same_origin,
    scrub,
)
from vidgate.backends.base import (
    EXPIRED_FRIENDLY,
    FAILED_FRIENDLY,
    GenerationFailed,
    ProviderSettings,
    ProviderUnavailable,
    ProviderUpdate,
    SubmitOutcomeUnknown,
    SubmitRefused,
)
from vidgate.logs import event
from vidgate.netguard import Unresolved, UnsafeTarget

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
MAX_REDIRECTS = 5
SNIPPET_CHARS = 300
NEVER_SENT: tuple[type[httpx.RequestError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)
"""Transport errors raised before any byte of the request left: safe to send it again."""


Describe = Callable[[object], str | None]
"""The provider's own account of an error, from the parsed JSON body (``None`` if not JSON)."""

RetryAfter = Callable[[httpx.Response], float | None]
"""When to try again after this answer, in seconds."""

KeyRefused = Callable[[httpx.Response], bool]
"""Whether an error answer says the provider refused our API key."""

BackendFailure = ProviderUnavailable | GenerationFailed


class ProviderHTTP:
    """One provider's HTTP: its root URL, headers, timeout, key scrubbing and error mapping.

    ``label`` names the provider in messages; ``headers`` (auth, API version) go with every
    call and, for downloads, only to ``root``'s origin; ``describe`` reads the provider's
    error envelope; ``retry_after`` reads its back-off hints; ``key_refused`` tells an
    answer refusing the key (401/403 unless the provider says so otherwise).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: ProviderSettings,
        *,
        label: str,
        root: str,
        headers: Mapping[str, str],
        describe: Describe,
        retry_after: RetryAfter = response_retry_after_s,
        key_refused: KeyRefused = refuses_key,
    ) -> None:
        self._label = label
        self._root = root.rstrip("/")
        self._http = http
        self._provider = settings.name
        self._key = settings.api_key
        self._timeout_s = settings.timeout_s
        self._headers = dict(headers)
        self._describe = describe
        self._retry_after = retry_after
        self._key_refused = key_refused

    # -- calls -------------------------------------------------------------------------------

    async def send(
        self,
        what: str,
        method: str,
        url: str,
        *,
        json: object = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call; any answer is returned. Transport faults raise ProviderUnavailable."""
        request = self._http.build_request(
            method,
            url,
            json=json,
            params=params,
            headers=self._headers | dict(headers or {}),
            timeout=self._timeout_s,
        )
        return await self._send(request, what)

    async def submit(
        self,
        url: str,
        *,
        json: object,
        id_keys: Sequence[str],
        rejected: Callable[[httpx.Response], GenerationFailed],
        headers: Mapping[str, str] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """POST a new job; its id (the first of ``id_keys`` in the answer) and the answer.

        Raises :class:`SubmitOutcomeUnknown` when the provider may have created a job but no
        usable answer came back (a timeout or drop after sending, a 2xx answer without the
        expected JSON, a 408 or 5xx that is not a clear refusal); :class:`ProviderUnavailable`
        when nothing was created for certain (no connection, or a refusal: see
        :func:`refused_submit`); and ``rejected(response)`` for any other refusal.
        """
        request = self._http.build_request(
            "POST",
            url,
            json=json,
            headers=self._headers | dict(headers or {}),
            timeout=self._timeout_s,
        )
        response = await self._send(request, "submit", submitting=True)
        if not response.is_success:
            if refused_submit(response):
                raise self.unavailable(response, "submit")
            if is_transient(response.status_code):
                unclear = self.unavailable(response, "submit")
                raise SubmitOutcomeUnknown(
                    f"{unclear} (the provider may have created the job before this answer)",
                    retry_after_s=unclear.retry_after_s,
                )
            refusal = rejected(response)
            if self._key_refused(response) and not refusal.is_nsfw:
                raise SubmitRefused(
                    f"{refusal} (the provider refused our API key: check the key configured "
                    f"for provider {self._provider!r})",
                    user_friendly=refusal.user_friendly,
                    provider_status=refusal.provider_status,
                ) from refusal
            raise refusal
        data = json_or_none(response)
        if not isinstance(data, dict):
            raise SubmitOutcomeUnknown(self._not_json(response, "submit"))
        for key in id_keys:
            job_id = data.get(key)
            if isinstance(job_id, str) and job_id:
                return job_id, data
        raise SubmitOutcomeUnknown(
            f"{self._label} submit: HTTP {response.status_code} answer has no "
            f"{' or '.join(id_keys)}: {self.detail(response)}"
        )

    async def download(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        expired_note: str = "",
        expired_statuses: Collection[int] = (404, 410),
    ) -> AsyncIterator[bytes]:
        """Stream one output, following redirects by hand: the provider's headers go to
        ``root``'s origin only, never along a redirect elsewhere.

        A 408/409/425/429/5xx answer or a transport fault raises ProviderUnavailable; other
        answers raise GenerationFailed (``expired_statuses`` add ``expired_note``).
        """
        target = urljoin(self._root + "/", url)
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers or {})
            if same_origin(target, self._root):
                sent |= self._headers
            request = self._http.build_request("GET", target, headers=sent, timeout=self._timeout_s)
            response = await self._send(request, "download", stream=True)
            try:
                if response.is_redirect and "location" in response.headers:
                    target = urljoin(str(response.url), response.headers["location"])
                    continue
                if not response.is_success:
                    await response.aread()
                    raise self._download_error(
                        response, target, expired_note, response.status_code in expired_statuses
                    )
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    yield chunk
                return
            except (httpx.RequestError, httpx.StreamError) as exc:
                raise self.transport_error(exc, "download") from exc
            finally:
                await response.aclose()
        raise ProviderUnavailable(f"{self._label} download: more than {MAX_REDIRECTS} redirects")

    def settle_cancel(
        self, response: httpx.Response, request_id: str, *, refusals: Collection[int] = ()
    ) -> None:
        """Accept a cancel's answer: a 2xx, or a lasting refusal (logged as
        ``provider.cancel_refused``). A passing fault that is not one of ``refusals`` raises
        ProviderUnavailable, so the caller may try again.
        """
        code = response.status_code
        if response.is_success:
            return
        if is_transient(code) and code not in refusals:
            raise self.unavailable(response, "cancel")
        event(
            log,
            "provider.cancel_refused",
            provider=self._provider,
            request_id=request_id,
            http_status=code,
        )

    # -- answers to errors -------------------------------------------------------------------

    def json_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The answer's JSON object; any other body raises ProviderUnavailable."""
        data = json_or_none(response)
        if not isinstance(data, dict):
            raise ProviderUnavailable(
                self._not_json(response, what), retry_after_s=self._retry_after(response)
            )
        return data

    def unavailable(self, response: httpx.Response, what: str) -> ProviderUnavailable:
        """A passing fault, with the provider's back-off hint; a refused key is named."""
        code = response.status_code
        problem = ""
        if self._key_refused(response):
            problem = (
                "the provider refused our API key; the job itself is probably fine, so check "
                f"the key configured for provider {self._provider!r}: "
            )
        return ProviderUnavailable(
            f"{self._label} {what}: HTTP {code}: {problem}{self.detail(response)}",
            retry_after_s=self._retry_after(response),
        )

    def poll_error(self, response: httpx.Response, what: str) -> BackendFailure:
        """A non-2xx poll answer: a passing fault or a refused key is ProviderUnavailable
        (an operator can fix the key; the job is probably fine), anything else
        GenerationFailed."""
        if is_transient(response.status_code) or self._key_refused(response):
            return self.unavailable(response, what)
        return self.rejection(response, what)

    def rejection(
        self,
        response: httpx.Response,
        what: str,
        *,
        user_friendly: str | None = None,
        is_nsfw: bool = False,
        provider_status: str | None = None,
    ) -> GenerationFailed:
        """The provider refused for good: GenerationFailed with its detail, key-free."""
        code = response.status_code
        return GenerationFailed(
            f"{self._label} {what}: HTTP {code}: {self.detail(response)}",
            user_friendly=None if user_friendly is None else self.scrub(user_friendly),
            is_nsfw=is_nsfw,
            provider_status=provider_status or f"HTTP {code}",
        )

    def transport_error(
        self, exc: httpx.RequestError | httpx.StreamError, what: str, *, submitting: bool = False
    ) -> ProviderUnavailable:
        """A fault below HTTP. While ``submitting``, one that may come after the request was
        sent is :class:`SubmitOutcomeUnknown`: the provider may have created a job."""
        if isinstance(exc, httpx.TimeoutException):
            waited = "no connection" if isinstance(exc, NEVER_SENT) else "no answer"
            text = f"{waited} within {self._timeout_s:g}s ({type(exc).__name__})"
        else:
            text = exception_text(exc)
        message = self.scrub(f"{self._label} {what}: {text}")
        if submitting and not isinstance(exc, NEVER_SENT):
            return SubmitOutcomeUnknown(message)
        return ProviderUnavailable(message)

    # -- key-free text -----------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return scrub(text, self._key)

    def scrub_update(self, update: ProviderUpdate) -> ProviderUpdate:
        """The update with the provider's own error texts key-free, should they echo it."""
        error, friendly = update.error, update.user_friendly_error
        return dataclasses.replace(
            update,
            error=error and self.scrub(error),
            user_friendly_error=friendly and self.scrub(friendly),
        )

    def detail(self, response: httpx.Response) -> str:
        """A short, key-free account of an answer's body: the provider's own if it has one."""
        text = self._describe(json_or_none(response)) or response.text
        return self.scrub(text.strip())[:SNIPPET_CHARS]

    # -- plumbing ----------------------------------------------------------------------------

    async def _send(
        self, request: httpx.Request, what: str, *, submitting: bool = False, stream: bool = False
    ) -> httpx.Response:
        try:
            if stream:
                return await self._http.send(request, stream=True, follow_redirects=False)
            return await self._http.send(request)
        except httpx.RequestError as exc:
            raise self.transport_error(exc, what, submitting=submitting) from exc
        except Unresolved as exc:  # outside the provider's origin; perhaps a passing fault
            raise ProviderUnavailable(self.scrub(f"{self._label} {what}: the URL {exc}")) from exc
        except UnsafeTarget as exc:  # outside the provider's origin, into our network
            raise GenerationFailed(
                self.scrub(f"{self._label} {what}: refused: the URL {exc}"),
                user_friendly=FAILED_FRIENDLY,
            ) from exc

    def _not_json(self, response: httpx.Response, what: str) -> str:
        snippet = self.scrub(response.text.strip())[:SNIPPET_CHARS]
        return (
            f"{self._label} {what}: HTTP {response.status_code} with a body that is not a JSON "
            f"object: {snippet!r}"
        )

    def _download_error(
        self, response: httpx.Response, url: str, expired_note: str, expired: bool
    ) -> BackendFailure:
        code = response.status_code
        if is_transient(code):
            return self.unavailable(response, "download")
        where = self.scrub(urlsplit(url)._replace(query="", fragment="").geturl())
        message = f"{self._label} download of {where}: HTTP {code}: {self.detail(response)}"
        if expired and expired_note:
            message += f" ({expired_note})"
        return GenerationFailed(
            message,
            user_friendly=EXPIRED_FRIENDLY if expired else FAILED_FRIENDLY,
            provider_status=f"HTTP {code}",
        )
