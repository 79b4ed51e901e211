"""The HTTP pieces every remote adapter shares, without a network (httpx.MockTransport)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from vidgate.backends._answers import (
    is_transient,
    milliseconds_header_s,
    retry_after_s,
    same_origin,
    scrub,
)
from vidgate.backends._http import ProviderHTTP
from vidgate.backends._mapping import format_duration, percent
from vidgate.backends.base import (
    GenerationFailed,
    ProviderSettings,
    ProviderUnavailable,
    SubmitOutcomeUnknown,
)

KEY = "sk-test-SECRET/key+0123456789"
API = "https://api.provider.test"


def headers(**values: str) -> httpx.Headers:
    return httpx.Headers({k.replace("_", "-"): v for k, v in values.items()})


# -- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), (" 1.5 ", 1.5), ("0", 0.0), ("-4", 0.0), ("nan", None), ("inf", None)],
)
def test_retry_after_in_seconds(value: str, expected: float | None) -> None:
    assert retry_after_s(headers(retry_after=value)) == expected


def test_retry_after_as_an_http_date() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_s(headers(retry_after=soon)) or 0) <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_s(headers(retry_after=past)) == 0.0
    # "-0000" parses to a naive datetime: it is UTC all the same.
    naive = format_datetime(datetime.now(UTC) + timedelta(seconds=60)).replace("+0000", "-0000")
    assert 55 < (retry_after_s(headers(retry_after=naive)) or 0) <= 60


@pytest.mark.parametrize("value", ["soon", "", "Mon, 99 Foo 2024 00:00:00 GMT"])
def test_unreadable_or_absent_retry_after_is_none(value: str) -> None:
    assert retry_after_s(headers(retry_after=value)) is None
    assert retry_after_s(httpx.Headers()) is None


def test_millisecond_headers() -> None:
    assert (
        milliseconds_header_s(headers(openai_poll_after_ms="2500"), "openai-poll-after-ms") == 2.5
    )
    assert milliseconds_header_s(headers(retry_after_ms="x"), "retry-after-ms") is None
    assert milliseconds_header_s(httpx.Headers(), "retry-after-ms") is None


# -- scrubbing and the same-origin rule ------------------------------------------------------


def test_scrub_removes_every_copy_of_the_key_plain_and_url_encoded() -> None:
    text = f"Bearer {KEY} was refused; retry with ?key={httpx.QueryParams({'k': KEY})} or {KEY}"
    scrubbed = scrub(text, KEY)
    assert KEY not in scrubbed
    assert "sk-test-SECRET" not in scrubbed
    assert scrubbed.count("[redacted]") == 3


@pytest.mark.parametrize("secret", [None, ""])
def test_scrub_without_a_key_changes_nothing(secret: str | None) -> None:
    assert scrub("nothing to hide", secret) == "nothing to hide"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{API}/v1/files/a.mp4", True),
        ("HTTPS://API.Provider.test/x", True),
        ("https://api.provider.test:443/x", True),
        ("https://api.provider.test:8443/x", False),
        ("http://api.provider.test/x", False),
        ("https://cdn.provider.test/x", False),
        ("https://api.provider.test.evil.example/x", False),
        ("https://api.provider.test@evil.example/x", False),
        ("/v1/files/a.mp4", False),
        ("https://api.provider.test:notaport/x", False),
    ],
)
def test_same_origin(url: str, expected: bool) -> None:
    assert same_origin(url, API) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [(code, True) for code in (408, 409, 425, 429, 500, 503)]
    + [(code, False) for code in (200, 400, 401, 403, 404, 422)],
)
def test_transient_statuses(status: int, expected: bool) -> None:
    assert is_transient(status) is expected


def test_duration_and_percent_formats() -> None:
    assert format_duration(5.0, "string") == "5"
    assert format_duration(5.5, "number") == 5.5
    assert format_duration(8, "seconds") == "8s"
    assert format_duration(None, "string") is None
    with pytest.raises(GenerationFailed, match="duration_format"):
        format_duration(5, "minutes")
    assert percent(0.42, scale=100) == 42.0
    assert percent(140) == 100.0
    assert percent(True) is None
    assert percent(float("nan")) is None


# -- the submit policy -----------------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def provider(client: httpx.AsyncClient) -> ProviderHTTP:
    settings = ProviderSettings(name="test", base_url=API, api_key=KEY, timeout_s=1.0)
    return ProviderHTTP(
        client,
        settings,
        label="Test",
        root=API,
        headers={"Authorization": f"Bearer {KEY}"},
        describe=lambda body: None,
    )


def rejected(response: httpx.Response) -> GenerationFailed:
    return GenerationFailed(f"rejected with HTTP {response.status_code}")


def raising(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error(f"failed talking to {request.url} with {KEY}", request=request)

    return handler


async def submit_through(handler: Handler) -> tuple[str, object]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await provider(client).submit(
            f"{API}/jobs", json={}, id_keys=("id", "runId"), rejected=rejected
        )


@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError],
)
async def test_a_fault_after_sending_is_submit_outcome_unknown(
    error: type[httpx.TransportError],
) -> None:
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        await submit_through(raising(error))
    assert error.__name__ in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError],
)
async def test_no_connection_at_submit_is_plain_provider_unavailable(
    error: type[httpx.TransportError],
) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        await submit_through(raising(error))
    assert type(caught.value) is ProviderUnavailable
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("status", [409, 425, 429, 503])
async def test_a_clear_refusal_at_submit_is_plain_provider_unavailable(status: int) -> None:
    answer = httpx.Response(status, headers={"Retry-After": "3"}, json={"error": "busy"})
    with pytest.raises(ProviderUnavailable) as caught:
        await submit_through(lambda request: answer)
    assert type(caught.value) is ProviderUnavailable
    assert caught.value.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (408, {}),
        (500, {"Retry-After": "3"}),
        (502, {}),
        (503, {}),  # without Retry-After: a proxy's reset, maybe after the job was created
        (504, {"Retry-After": "3"}),
        (599, {}),
    ],
)
async def test_a_passing_fault_that_may_follow_the_job_is_submit_outcome_unknown(
    status: int, headers: dict[str, str]
) -> None:
    answer = httpx.Response(status, headers=headers, json={"error": "gateway"})
    with pytest.raises(
        SubmitOutcomeUnknown, match=f"HTTP {status}: .* .the provider may have created the job"
    ):
        await submit_through(lambda request: answer)


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
async def test_a_refusal_at_submit_is_left_to_the_adapter(status: int) -> None:
    with pytest.raises(GenerationFailed, match=f"rejected with HTTP {status}"):
        await submit_through(lambda request: httpx.Response(status, json={}))


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(httpx.Response(200, text="<html>OK</html>"), id="not-json"),
        pytest.param(httpx.Response(200, json=["id", "x"]), id="not-an-object"),
        pytest.param(httpx.Response(201, json={"status": "queued"}), id="no-id"),
        pytest.param(httpx.Response(202, json={"id": ""}), id="empty-id"),
    ],
)
async def test_an_unusable_success_answer_is_submit_outcome_unknown(answer: httpx.Response) -> None:
    with pytest.raises(SubmitOutcomeUnknown):
        await submit_through(lambda request: answer)


async def test_a_usable_answer_gives_the_first_id_found_and_sends_the_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"runId": "run_1", "cost": 1})

    assert await submit_through(handler) == ("run_1", {"runId": "run_1", "cost": 1})
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


async def test_outside_a_submit_a_timeout_is_plain_provider_unavailable() -> None:
    handler = raising(httpx.ReadTimeout)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ProviderUnavailable, match="no answer within 1s") as caught:
            await provider(client).send("status", "GET", f"{API}/jobs/1")
    assert type(caught.value) is ProviderUnavailable


async def test_a_refused_key_names_the_problem_and_keeps_the_key_out() -> None:
    answer = httpx.Response(401, json={"detail": f"bad key {KEY}"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: answer)) as client:
        api = provider(client)
        response = await api.send("status", "GET", f"{API}/jobs/1")
        error = api.poll_error(response, "status")
    assert isinstance(error, ProviderUnavailable)
    assert "refused our API key" in str(error) and "'test'" in str(error)
    assert KEY not in str(error)


# -- downloads -------------------------------------------------------------------------------


async def test_a_download_sends_the_key_to_the_api_origin_only() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.provider.test":
            return httpx.Response(302, headers={"Location": "https://cdn.provider.test/v.mp4"})
        return httpx.Response(200, content=b"video-bytes")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        chunks = [c async for c in provider(client).download("/content?id=1")]
    assert b"".join(chunks) == b"video-bytes"
    assert [str(r.url) for r in seen] == [f"{API}/content?id=1", "https://cdn.provider.test/v.mp4"]
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert "authorization" not in seen[1].headers


async def test_download_failures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/loop":
            return httpx.Response(302, headers={"Location": "/loop"})
        return httpx.Response(404, text=f"gone {KEY}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        api = provider(client)
        with pytest.raises(ProviderUnavailable, match="redirects"):
            _ = [c async for c in api.download("/loop")]
        with pytest.raises(GenerationFailed, match=r"HTTP 404.*\(kept one hour\)") as caught:
            _ = [c async for c in api.download("/v.mp4?sig=abc", expired_note="kept one hour")]
    assert "sig=abc" not in str(caught.value)
    assert KEY not in str(caught.value)
