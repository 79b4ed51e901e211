"""Every error path of the contract, each checked by the helper for its wire shape."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.api_helpers import (
    SMALL,
    assert_status_error,
    assert_submit_error,
    submit,
    submit_ok,
)
from tests.servers import LiveServer

SUBMIT = "/api/generate-video"


def post_raw(
    server: LiveServer, content: bytes | str, key: str | None = None, path: str = SUBMIT
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}{path}",
        content=content,
        headers={**server.headers(key), "content-type": "application/json"},
        timeout=30,
    )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "'model' is required"),
        ({"prompt": "no model"}, "'model' is required"),
        ({"model": "no-such-model", "prompt": "x"}, "unknown model"),
        ({"model": "testcard-video"}, "'prompt' is required"),
        ({"model": "testcard-video", "prompt": "   "}, "'prompt' is required"),
        ({"model": 5, "prompt": "x"}, "'model' must be a string"),
        ({"model": "testcard-video", "prompt": ["a"]}, "'prompt' must be a string"),
        ({"model": "testcard-video", "prompt": "x", "duration": "five"}, "'duration'"),
        ({"model": "testcard-video", "prompt": "x", "duration": True}, "'duration'"),
        ({"model": "testcard-video", "prompt": "x", "duration": -3}, "'duration'"),
        ({"model": "testcard-video", "prompt": "x", "duration": 21}, "between 1 and 20"),
        ({"model": "testcard-video", "prompt": "x", "aspect_ratio": "2:1"}, "'aspect_ratio'"),
        ({"model": "testcard-video", "prompt": "x", "resolution": "4k"}, "'resolution'"),
        ({"model": "testcard-video", "prompt": "x", "resolution": "huge"}, "'resolution'"),
        ({"model": "testcard-video", "prompt": "x", "seed": "abc"}, "'seed'"),
        ({"model": "testcard-video", "prompt": "x", "seed": 2**70}, "'seed'"),
        ({"model": "testcard-video", "prompt": "x" * 4001}, "limit is 4000"),
        ({"model": "testcard-image-video", "prompt": "x"}, "animates an image"),
        ({"model": "testcard-video", "prompt": "x", "imageUrl": "ftp://a/b.png"}, "imageUrl"),
        ({"model": "testcard-video", "prompt": "x", "webhookUrl": "nope"}, "webhookUrl"),
    ],
)
def test_invalid_submits_are_400_with_a_clear_message(
    live_server: LiveServer, body: dict[str, object], needle: str
) -> None:
    message = assert_submit_error(submit(live_server, body), 400, "invalid_request_error")
    assert needle in message


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b'{"model": "testcard-video", "prompt": "x"', "not valid JSON"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'"just a string"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"\xff\xfe\x00garbage", "UTF-8"),
        (b'{"model": "testcard-video", "prompt": "\\ud800"}', ""),
    ],
)
def test_malformed_bodies_never_500(live_server: LiveServer, content: bytes, needle: str) -> None:
    response = post_raw(live_server, content)
    assert response.status_code in (400, 202), response.text
    if response.status_code == 400:
        assert needle in assert_submit_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        ("data:image/png;base64,!!!notbase64!!!", "valid base64"),
        ("data:text/html;base64,PGgxPg==", "data URL"),
        ("http://not-a-data-url", "imageUrl"),
        ("data:image/png,rawbytes", "data URL"),
        (
            "data:image/png;base64," + base64.b64encode(b"\0" * (4 * 1024 * 1024 + 10)).decode(),
            "limit is",
        ),
    ],
)
def test_bad_data_urls_are_400(live_server: LiveServer, image: str, needle: str) -> None:
    body = {"model": "testcard-image-video", "prompt": "x", "imageDataUrl": image, **SMALL}
    if image.startswith("http"):
        body = {"model": "testcard-image-video", "prompt": "x", "imageUrl": image, **SMALL}
        body["imageUrl"] = "ftp://x"
    message = assert_submit_error(submit(live_server, body), 400, "invalid_request_error")
    assert needle in message


def test_undecodable_image_fails_the_run_not_the_server(live_server: LiveServer) -> None:
    not_an_image = "data:image/png;base64," + base64.b64encode(b"hello world").decode()
    run_id = submit_ok(live_server, "x", model="testcard-image-video", imageDataUrl=not_an_image)
    from tests.api_helpers import wait_terminal

    data = wait_terminal(live_server, run_id, model="testcard-image-video")
    assert data["status"] == "FAILED" and data["error"]


def test_huge_bodies_are_refused_before_reading_them(live_server: LiveServer) -> None:
    huge = json.dumps({"model": "testcard-video", "prompt": "x", "pad": "y" * 9_000_000})
    response = post_raw(live_server, huge)
    assert "limit" in assert_submit_error(response, 400, "invalid_request_error")

    def chunks():  # no Content-Length: the limit holds while streaming
        yield b'{"model": "testcard-video", "pad": "'
        for _ in range(100):
            yield b"z" * 100_000
        yield b'"}'

    streamed = httpx.post(
        f"{live_server.base_url}{SUBMIT}",
        content=chunks(),
        headers=live_server.headers(),
        timeout=30,
    )
    assert_submit_error(streamed, 400, "invalid_request_error")


def test_unknown_keys_are_ignored(live_server: LiveServer) -> None:
    response = submit(
        live_server,
        {
            "model": "testcard-video",
            "prompt": "x",
            "frobnicate": 1,
            "conversationUUID": "abc",
            **SMALL,
        },
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "wrong"},
        {"Authorization": "Bearer no"},
        {"Authorization": "Basic abc"},
        {"x-api-key": ""},
    ],
)
def test_bad_keys_are_401_on_every_route(live_server: LiveServer, headers: dict[str, str]) -> None:
    base = live_server.base_url
    message = assert_submit_error(
        httpx.post(f"{base}{SUBMIT}", json={"model": "testcard-video"}, headers=headers),
        401,
        "authentication_error",
    )
    assert "API key" in message
    for path, params in [
        ("/api/generate-video/status", {"runId": "x", "modelSlug": "m"}),
        ("/api/video/status", {"runId": "x"}),
        ("/api/generate-video/content", {"runId": "x", "model": "m"}),
    ]:
        assert_status_error(httpx.get(f"{base}{path}", params=params, headers=headers), 401)
    assert_status_error(
        httpx.post(f"{base}/api/generate-video/cancel", json={"runId": "x"}, headers=headers), 401
    )


def test_revoked_key_is_401(live_server: LiveServer) -> None:
    from tests.servers import run_cli

    key = live_server.create_key("to-revoke")
    assert (
        submit(live_server, {"model": "testcard-video", "prompt": "x", **SMALL}, key).status_code
        == 202
    )
    run_cli(
        ["keys", "revoke", "to-revoke"], data_dir=live_server.data_dir, config=live_server.config
    )
    assert_submit_error(
        submit(live_server, {"model": "testcard-video", "prompt": "x"}, key),
        401,
        "authentication_error",
    )


def test_status_routes_missing_params_are_400(live_server: LiveServer) -> None:
    base, headers = live_server.base_url, live_server.headers()
    cases = [
        ("/api/generate-video/status", {}, "'runId' is required"),
        ("/api/generate-video/status", {"runId": "vid_x"}, "'modelSlug' is required"),
        ("/api/video/status", {}, "'requestId'"),
        ("/api/video/status", {"runId": "x", "waitSeconds": "soon"}, "waitSeconds"),
        ("/api/video/status", {"runId": "x", "waitSeconds": "-1"}, "waitSeconds"),
        ("/api/generate-video/content", {}, "'runId' is required"),
    ]
    for path, params, needle in cases:
        message = assert_status_error(
            httpx.get(f"{base}{path}", params=params, headers=headers), 400
        )
        assert needle in message, (path, message)
    for content in (b"{}", b"[]", b"nope", b'{"runId": 5}'):
        response = post_raw(live_server, content, path="/api/generate-video/cancel")
        assert_status_error(response, 400)


def test_unknown_and_foreign_runs_are_404(live_server: LiveServer) -> None:
    base = live_server.base_url
    other = live_server.create_key("foreign")
    mine = submit_ok(live_server, "mine")
    for run_id, key in (("vid_00000000000000000000000000", None), ("garbage", None), (mine, other)):
        headers = live_server.headers(key)
        assert_status_error(
            httpx.get(
                f"{base}/api/generate-video/status",
                params={"runId": run_id, "modelSlug": "testcard-video"},
                headers=headers,
            ),
            404,
        )
        assert_status_error(
            httpx.get(f"{base}/api/video/status", params={"runId": run_id}, headers=headers), 404
        )
        assert_status_error(
            httpx.post(
                f"{base}/api/generate-video/cancel", json={"runId": run_id}, headers=headers
            ),
            404,
        )
        assert_status_error(
            httpx.get(
                f"{base}/api/generate-video/content", params={"runId": run_id}, headers=headers
            ),
            404,
        )
    # A model slug that does not match the run's model: 404 as well.
    assert_status_error(
        httpx.get(
            f"{base}/api/generate-video/status",
            params={"runId": mine, "modelSlug": "testcard-image-video"},
            headers=live_server.headers(),
        ),
        404,
    )
    # Content before completion: 404.
    slow = submit_ok(live_server, "sandbox:queue=30 not yet")
    assert "no video yet" in assert_status_error(
        httpx.get(
            f"{base}/api/generate-video/content",
            params={"runId": slow},
            headers=live_server.headers(),
        ),
        404,
    )
    httpx.post(
        f"{base}/api/generate-video/cancel", json={"runId": slow}, headers=live_server.headers()
    )


def test_blocked_prompt_is_content_policy_violation(live_server: LiveServer) -> None:
    for prompt in ("please sandbox:blocked", "SANDBOX:BLOCKED now"):
        response = submit(live_server, {"model": "testcard-video", "prompt": prompt, **SMALL})
        message = assert_submit_error(response, 400, "CONTENT_POLICY_VIOLATION")
        assert "content policy" in message


def test_configured_words_are_blocked(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(
        '[moderation]\nblocked_words = ["badword"]\nblocked_patterns = ["wea+pon"]\n'
    )
    for prompt in ("a badword here", "a weaaapon"):
        assert_submit_error(
            submit(server, {"model": "testcard-video", "prompt": prompt}),
            400,
            "CONTENT_POLICY_VIOLATION",
        )
    assert (
        submit(
            server, {"model": "testcard-video", "prompt": "badwords are fine", **SMALL}
        ).status_code
        == 202
    )


def test_over_limit_submits_get_429_with_retry_after(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory("[limits]\nsubmits_per_minute = 3\n")
    body = {"model": "testcard-video", "prompt": "x", **SMALL}
    codes = [submit(server, body).status_code for _ in range(3)]
    assert codes == [202, 202, 202]
    limited = submit(server, body)
    message = assert_submit_error(limited, 429, "RATE_LIMITED")
    assert "Polling is not limited" in message
    assert 1 <= int(limited.headers["retry-after"]) <= 20
    # Another key has its own bucket, and polling is never limited.
    other = server.create_key("second")
    assert submit(server, body, other).status_code == 202
    run_id = submit(server, body, other).json()["runId"]
    for _ in range(30):
        assert (
            httpx.get(
                f"{server.base_url}/api/video/status",
                params={"runId": run_id},
                headers=server.headers(other),
            ).status_code
            == 200
        )


def test_idempotency_key_reused_with_another_body_is_409(live_server: LiveServer) -> None:
    headers = {"Idempotency-Key": "conflict-1"}
    body = {"model": "testcard-video", "prompt": "a", **SMALL}
    assert submit(live_server, body, headers=headers).status_code == 202
    response = submit(live_server, {**body, "prompt": "b"}, headers=headers)
    assert "Idempotency-Key" in assert_submit_error(response, 409, "conflict_error")


def test_file_urls_need_a_valid_unexpired_signature(live_server: LiveServer) -> None:
    from tests.api_helpers import wait_terminal

    url = wait_terminal(live_server, submit_ok(live_server, "sig"))["output"]["video"]["url"]
    path = url.split("?")[0]
    for bad in (
        path,
        path + "?exp=1&sig=abc",
        url.replace("sig=", "sig=x"),
        path + "?exp=99999999999&sig=abc",
        url + "x",
    ):
        assert_status_error(httpx.get(bad), 403)
    expired = httpx.get(path + "?exp=1&sig=x")
    assert_status_error(expired, 403)
    # A key that climbs out of the storage directory never verifies.
    traversal = f"{live_server.base_url}/files/..%2Fsecret.key?" + url.split("?")[1]
    assert_status_error(httpx.get(traversal), 403)


def test_unknown_routes_and_methods_use_the_error_shape(live_server: LiveServer) -> None:
    assert_status_error(httpx.get(f"{live_server.base_url}/api/nope"), 404)
    assert_status_error(httpx.delete(f"{live_server.base_url}/api/video/status"), 405)


@pytest.mark.parametrize(
    ("content", "headers", "needle"),
    [
        (
            b'{"model": "testcard-video", "prompt": "\\ud800 lone surrogate"}',
            {"Idempotency-Key": "surrogate"},
            "",
        ),
        (b"[" * 200_000, {}, "nested too deeply"),
        (b'{"model": "testcard-video", "prompt": "x", "n": NaN}', {}, "NaN"),
        (b'{"model": "testcard-video", "prompt": "x", "n": -Infinity}', {}, "Infinity"),
    ],
)
def test_hostile_bodies_never_500(
    live_server: LiveServer, content: bytes, headers: dict[str, str], needle: str
) -> None:
    response = httpx.post(
        f"{live_server.base_url}{SUBMIT}",
        content=content,
        headers={**live_server.headers(), **headers, "content-type": "application/json"},
    )
    assert response.status_code in (202, 400), response.text
    if response.status_code == 400:
        assert needle in assert_submit_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize("exp", ["²", "1" * 5000, "-5", "12.5"])
def test_odd_file_expiries_are_403(live_server: LiveServer, exp: str) -> None:
    response = httpx.get(
        f"{live_server.base_url}/files/a/video.mp4", params={"exp": exp, "sig": "x"}
    )
    assert_status_error(response, 403)


def test_wait_seconds_above_60_is_400(live_server: LiveServer) -> None:
    response = httpx.get(
        f"{live_server.base_url}/api/video/status",
        params={"runId": "x", "waitSeconds": 61},
        headers=live_server.headers(),
    )
    assert "waitSeconds" in assert_status_error(response, 400)
