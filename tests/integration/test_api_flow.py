"""The happy paths of the HTTP API against a real ``vidgate serve`` process."""

from __future__ import annotations

import itertools

import httpx

from tests.api_helpers import decode_mp4, status, submit, submit_ok, unified, wait_terminal
from tests.servers import LiveServer


def test_submit_answers_the_upstream_shape(live_server: LiveServer) -> None:
    response = submit(
        live_server,
        {"model": "testcard-video", "prompt": "shape", "resolution": "240p", "duration": "1s"},
    )
    assert response.status_code == 202
    body = response.json()
    assert body["runId"] == body["id"] and body["runId"].startswith("vid_")
    assert len(body["runId"]) == 4 + 26
    assert body["status"] == "pending" and body["model"] == "testcard-video"
    assert body["cost"] == 0 and body["paymentSource"] == "USD"
    assert "remainingBalance" in body


def test_run_completes_with_a_real_video_of_the_requested_size(live_server: LiveServer) -> None:
    run_id = submit_ok(
        live_server, "a red fox", resolution="360p", duration="2", aspect_ratio="9:16"
    )
    data = wait_terminal(live_server, run_id)
    assert data["status"] == "COMPLETED", data
    assert data["request_id"] == run_id
    assert data["progress"] == 100
    for absent in ("error", "isNSFWError", "userFriendlyError", "queuePosition"):
        assert absent not in data
    url = data["output"]["video"]["url"]
    assert url.startswith(live_server.base_url + "/files/")
    video = httpx.get(url, timeout=30)  # no API key: the URL is signed
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    info = decode_mp4(video.content)
    assert (info.codec, info.width, info.height) == ("h264", 360, 640)
    assert abs(info.duration_s - 2.0) < 0.1 and info.frames == 48


def test_unified_route_has_flat_and_nested_fields(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "unified")
    wait_terminal(live_server, run_id)
    body = unified(live_server, run_id)
    assert body["requestId"] == run_id and body["model"] == "testcard-video"
    assert body["status"] == "completed"
    assert body["data"]["status"] == "COMPLETED" and body["data"]["requestId"] == run_id
    assert body["videoUrl"] == body["data"]["output"]["video"]["url"]
    assert body["error"] is None and body["progress"] == 100
    assert body["createdAt"].endswith("Z") and body["completedAt"].endswith("Z")
    by_request_id = httpx.get(
        f"{live_server.base_url}/api/video/status",
        params={"requestId": run_id},
        headers=live_server.headers(),
    )
    assert by_request_id.json()["requestId"] == run_id


def test_polls_get_a_stable_url_and_retry_after_while_running(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "sandbox:slow=2 stable")
    response = httpx.get(
        f"{live_server.base_url}/api/video/status",
        params={"runId": run_id},
        headers=live_server.headers(),
    )
    assert response.json()["status"] in ("queued", "processing")
    assert int(response.headers["retry-after"]) >= 1
    wait_terminal(live_server, run_id)
    first, second = (status(live_server, run_id)["output"]["video"]["url"] for _ in range(2))
    assert first == second
    done = httpx.get(
        f"{live_server.base_url}/api/video/status",
        params={"runId": run_id},
        headers=live_server.headers(),
    )
    assert "retry-after" not in done.headers


def test_range_requests_and_content_redirect(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "range")
    data = wait_terminal(live_server, run_id)
    url = data["output"]["video"]["url"]
    whole = httpx.get(url).content
    part = httpx.get(url, headers={"Range": "bytes=10-109"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-109/{len(whole)}"
    assert part.content == whole[10:110]
    redirect = httpx.get(
        f"{live_server.base_url}/api/generate-video/content",
        params={"runId": run_id, "model": "testcard-video"},
        headers=live_server.headers(),
    )
    assert redirect.status_code == 302
    assert httpx.get(redirect.headers["location"]).content == whole


def test_same_seed_and_params_give_the_same_bytes(live_server: LiveServer) -> None:
    a, b = (submit_ok(live_server, "seeded", seed=7) for _ in range(2))
    c = submit_ok(live_server, "seeded", seed=8)
    urls = [wait_terminal(live_server, r)["output"]["video"]["url"] for r in (a, b, c)]
    files = [httpx.get(u).content for u in urls]
    assert files[0] == files[1]
    assert files[0] != files[2]


def test_image_to_video_from_a_data_url(live_server: LiveServer, png_data_url: str) -> None:
    run_id = submit_ok(
        live_server,
        "animate",
        model="testcard-image-video",
        imageDataUrl=png_data_url,
        aspect_ratio="1:1",
    )
    data = wait_terminal(live_server, run_id, model="testcard-image-video")
    assert data["status"] == "COMPLETED", data
    info = decode_mp4(httpx.get(data["output"]["video"]["url"]).content)
    assert (info.width, info.height) == (240, 240)


def test_queue_switch_holds_the_run_with_a_position(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "sandbox:queue=2 waiting")
    data = status(live_server, run_id)
    assert data["status"] == "IN_QUEUE"
    assert data["queuePosition"] >= 0 and data["progress"] == 0
    assert wait_terminal(live_server, run_id)["status"] == "COMPLETED"


def test_sandbox_outcomes(live_server: LiveServer) -> None:
    failed = wait_terminal(live_server, submit_ok(live_server, "sandbox:fail"))
    assert failed["status"] == "FAILED" and failed["isNSFWError"] is False
    assert failed["userFriendlyError"] and failed["error"]
    assert "output" not in failed
    nsfw = wait_terminal(live_server, submit_ok(live_server, "sandbox:nsfw"))
    assert nsfw["status"] == "FAILED" and nsfw["isNSFWError"] is True
    assert "inappropriate" in nsfw["userFriendlyError"]
    cancelled = wait_terminal(live_server, submit_ok(live_server, "sandbox:cancel"))
    assert cancelled["status"] == "CANCELLED"


def test_long_poll_returns_on_each_change_of_the_run(live_server: LiveServer) -> None:
    """Each held poll answers at the run's next event (progress included), never with
    nothing new: the answers step through the run's states until COMPLETED."""
    run_id = submit_ok(live_server, "sandbox:slow=1 long poll")
    seen: list[tuple[str, float]] = []
    for _ in range(200):
        response = httpx.get(
            f"{live_server.base_url}/api/video/status",
            params={"runId": run_id, "waitSeconds": 30},
            headers=live_server.headers(),
            timeout=60,
        )
        data = response.json()["data"]
        seen.append((data["status"], data.get("progress", 0)))
        if data["status"] == "COMPLETED":
            break
    assert seen[-1] == ("COMPLETED", 100)
    order = ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    for before, after in itertools.pairwise(seen):
        assert before != after, seen  # every answer had news
        assert order.index(before[0]) <= order.index(after[0]), seen
        assert before[1] <= after[1], seen


def test_catalog_lists_the_configured_models(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.base_url}/api/v1/video-models")  # no key needed
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["meta"]["count"] == len(body["data"])
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == {"testcard-video", "testcard-image-video"}
    text = by_id["testcard-video"]
    assert text["object"] == "model" and text["architecture"]["output_modalities"] == ["video"]
    assert text["capabilities"]["text_to_video"] is True
    assert by_id["testcard-image-video"]["capabilities"]["image_to_video"] is True
    supported = text["supported_parameters"]
    params = supported["parameters"]
    assert params["duration"]["min"] == 1 and params["duration"]["max"] == 20
    assert "1080p" in params["resolution"]["options"]
    # The flat lists clients read, beside the nested specs and saying the same.
    assert supported["resolutions"] == params["resolution"]["options"]
    assert supported["durations"] == list(range(1, 21))
    assert supported["aspect_ratios"] == params["aspect_ratio"]["options"]
    assert supported["defaults"]["resolution"] in supported["resolutions"]
    # A free model's price map: nothing at each resolution.
    assert text["pricing"] == {
        "currency": "USD",
        "per_video": {resolution: 0.0 for resolution in supported["resolutions"]},
    }


def test_both_auth_headers_work_and_runs_are_per_key(live_server: LiveServer) -> None:
    other = live_server.create_key("isolation-other")
    run_id = submit_ok(live_server, "mine")
    bearer = httpx.get(
        f"{live_server.base_url}/api/video/status",
        params={"runId": run_id},
        headers={"Authorization": f"Bearer {live_server.api_key}"},
    )
    assert bearer.status_code == 200
    theirs = httpx.get(
        f"{live_server.base_url}/api/video/status",
        params={"runId": run_id},
        headers={"x-api-key": other},
    )
    assert theirs.status_code == 404


def test_idempotency_key_returns_the_first_run(live_server: LiveServer) -> None:
    body = {"model": "testcard-video", "prompt": "once", "resolution": "240p", "duration": 1}
    headers = {"Idempotency-Key": "idem-1"}
    first = submit(live_server, body, headers=headers)
    again = submit(live_server, body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["runId"] == again.json()["runId"]
    assert again.headers["idempotent-replayed"] == "true"


def test_openapi_describes_every_route_with_upstream_schemas(live_server: LiveServer) -> None:
    spec = httpx.get(f"{live_server.base_url}/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/api/generate-video", "post"): {"202", "400", "401", "402", "409", "429", "503"},
        ("/api/generate-video/status", "get"): {"200", "400", "401", "404", "503"},
        ("/api/video/status", "get"): {"200", "400", "401", "404", "503"},
        ("/api/generate-video/cancel", "post"): {"200", "400", "401", "404", "503"},
        ("/api/generate-video/content", "get"): {"302", "400", "401", "404", "410", "503"},
        ("/api/v1/video-models", "get"): {"200"},
        ("/files/{key}", "get"): {"200", "206", "403", "404"},
        ("/healthz", "get"): {"200", "503"},
        ("/readyz", "get"): {"200", "503"},
        ("/api/check-balance", "post"): {"200", "401", "503"},
        ("/api/v1/usage", "get"): {"200", "400", "401", "503"},
        ("/api/generate-video/recover", "get"): {"200", "400", "401", "503"},
    }
    for (path, method), codes in expected.items():
        assert set(paths[path][method]["responses"]) == codes, (path, method)
    schemas = spec["components"]["schemas"]
    assert set(schemas["Error"]["required"]) == {"error", "message"}
    assert schemas["Error"]["properties"]["error"]["type"] == "integer"
    status_enum = schemas["Status"]["enum"]
    assert status_enum == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]
    assert "GenerateVideoStatusResponse" in schemas
    assert "HTTPValidationError" not in schemas
