"""Webhooks against a real ``vidgate serve`` and a real receiver on loopback: signatures that
an independent Standard Webhooks library accepts, retries with one webhook-id, 410, slow
receivers, event subscriptions, secret rotation, and the delivery log routes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

import vidgate.webhooks
from tests.api_helpers import (
    assert_status_error,
    assert_submit_error,
    submit,
    submit_ok,
    unified,
    wait_for,
    wait_terminal,
)
from tests.servers import TEST_CONFIG, LiveServer, run_cli, running_server
from tests.webhook_receiver import HANG, RESET, Received, WebhookReceiver

HOOKS_CONFIG = (
    TEST_CONFIG
    + """
[webhooks]
allow_private_hosts = true
timeout_s = 1
first_retry_s = 0.2
max_retry_s = 1
"""
)


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module whose webhooks may go to loopback, retried quickly."""
    with running_server(tmp_path_factory.mktemp("hooks") / "data", HOOKS_CONFIG) as server:
        yield server


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def path(request: pytest.FixtureRequest) -> str:
    """A receiver path of this test's own."""
    return "/" + request.node.name.replace("[", "-").rstrip("]")


def secret_of(server: LiveServer, name: str = "test") -> str:
    args = ["keys", "webhook-secret", name]
    result = run_cli(args, data_dir=server.data_dir, config=server.config)
    return result.stdout.strip().splitlines()[-1]


def log_of(server: LiveServer, run_id: str, key: str | None = None) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/api/generate-video/webhooks",
        params={"runId": run_id},
        headers=server.headers(key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_log(
    server: LiveServer,
    run_id: str,
    condition: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30,
    key: str | None = None,
) -> list[dict[str, Any]]:
    """The run's deliveries, once ``condition`` holds for them."""
    deadline = time.monotonic() + timeout
    while True:
        deliveries: list[dict[str, Any]] = log_of(server, run_id, key)["deliveries"]
        if condition(deliveries):
            return deliveries
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries of {run_id} still {deliveries}")
        time.sleep(0.1)


def iso_s(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def settled(deliveries: list[dict[str, Any]]) -> bool:
    return bool(deliveries) and all(d["status"] != "pending" for d in deliveries)


def hmac_matches(secret: str, got: Received, signature: str) -> bool:
    """The Standard Webhooks signature computed here, by hand, from the spec."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{got.webhook_id}.{got.headers['webhook-timestamp']}.".encode() + got.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(signature, "v1," + expected)


def assert_verifies(secret: str, got: Received) -> dict[str, Any]:
    """Every independent check accepts the delivery; returns its body."""
    body: dict[str, Any] = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    signatures = got.headers["webhook-signature"].split(" ")
    assert any(hmac_matches(secret, got, s) for s in signatures)
    event = vidgate.webhooks.verify(got.body, got.headers, secret)  # the SDK's own
    assert event.id == got.webhook_id and event.type == body["type"]
    assert event.data.run_id == body["data"]["requestId"]
    return body


def test_deliveries_are_signed_the_standard_webhooks_way(
    hooks: LiveServer, receiver: WebhookReceiver, path: str
) -> None:
    secret = secret_of(hooks)
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    run_id = submit_ok(hooks, "signed", webhookUrl=receiver.url(path))
    [got] = receiver.wait_for(lambda r: len(r) == 1, path=path)
    assert got.headers["content-type"] == "application/json"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
    body = assert_verifies(secret, got)
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "video.completed"
    data = body["data"]
    assert data["requestId"] == run_id and data["status"] == "completed"
    assert data["data"]["status"] == "COMPLETED"
    assert httpx.get(data["videoUrl"], timeout=30).status_code == 200
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(got.body + b" ", got.headers)
    other = "whsec_" + base64.b64encode(b"\x01" * 32).decode()
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(got.body, got.headers)
    [delivery] = wait_log(hooks, run_id, settled)
    assert delivery["id"] == got.webhook_id and delivery["status"] == "delivered"


def test_failed_attempts_are_retried_with_the_same_webhook_id(
    hooks: LiveServer, receiver: WebhookReceiver, path: str
) -> None:
    receiver.script(path, [503, HANG, RESET])
    run_id = submit_ok(hooks, "retried", webhookUrl=receiver.url(path))
    got = receiver.wait_for(lambda r: any(x.accepted for x in r), path=path, timeout=60)
    assert [g.answer for g in got] == [503, HANG, RESET, 200]
    assert len({g.webhook_id for g in got}) == 1
    assert len({g.body for g in got}) == 1, "every retry sends the same bytes"
    secret = secret_of(hooks)
    for attempt in got:  # each attempt is signed afresh, with its own timestamp
        assert_verifies(secret, attempt)
    [delivery] = wait_log(hooks, run_id, settled)
    assert delivery["id"] == got[0].webhook_id
    assert delivery["status"] == "delivered" and delivery["attempts"] == 4
    assert delivery["lastStatusCode"] == 200 and delivery["lastError"] is None
    assert delivery["deliveredAt"] is not None and delivery["nextAttemptAt"] is None
    log = delivery["log"]
    assert [a["statusCode"] for a in log] == [503, None, None, 200]
    assert "HTTP 503" in log[0]["error"]
    assert "no answer within 1 s" in log[1]["error"]
    assert log[2]["error"]  # the reset, as the HTTP client words it
    assert log[3]["error"] is None
    assert all(isinstance(a["durationMs"], float | int) for a in log)
    assert [a["at"] for a in log] == sorted(a["at"] for a in log)
    time.sleep(1.5)
    assert len(receiver.received(path)) == 4, "nothing is sent after a delivery"


def test_410_gone_stops_retries(hooks: LiveServer, receiver: WebhookReceiver, path: str) -> None:
    receiver.script(path, [410])
    run_id = submit_ok(hooks, "gone", webhookUrl=receiver.url(path))
    [delivery] = wait_log(hooks, run_id, settled)
    assert delivery["status"] == "gone" and delivery["lastStatusCode"] == 410
    assert delivery["attempts"] == 1 and delivery["nextAttemptAt"] is None
    time.sleep(1.5)  # several retry intervals
    assert len(receiver.received(path)) == 1


def test_started_and_throttled_progress_events_when_subscribed(
    hooks: LiveServer, receiver: WebhookReceiver, path: str
) -> None:
    events = ["video.started", "video.progress"]
    run_id = submit_ok(
        hooks, "sandbox:slow=6 progress", webhookUrl=receiver.url(path), webhookEvents=events
    )
    wait_terminal(hooks, run_id)
    final = unified(hooks, run_id)["data"]
    assert final["status"] == "COMPLETED", final
    rendering_s = iso_s(final["completedAt"]) - iso_s(final["startedAt"])

    def done(deliveries: list[dict[str, Any]]) -> bool:
        return settled(deliveries) and deliveries[-1]["type"] == "video.completed"

    deliveries = wait_log(hooks, run_id, done)
    types = [d["type"] for d in deliveries]
    assert types[0] == "video.started" and types[-1] == "video.completed"
    assert types.count("video.started") == 1 and types.count("video.completed") == 1
    progress = [d for d in deliveries if d["type"] == "video.progress"]
    assert 2 <= len(progress) <= rendering_s / 2 + 1, types  # at most one per 2 s
    times = [iso_s(d["createdAt"]) for d in progress]
    assert all(b - a >= 1.99 for a, b in itertools.pairwise(times)), times
    assert all(d["status"] == "delivered" for d in deliveries)
    got = receiver.wait_for(lambda r: len(r) == len(deliveries), path=path)
    secret = secret_of(hooks)
    bodies = [assert_verifies(secret, g) for g in got]
    by_id = {g.webhook_id: b for g, b in zip(got, bodies, strict=True)}
    assert set(by_id) == {d["id"] for d in deliveries}
    for d in progress:
        data = by_id[d["id"]]["data"]
        assert data["status"] == "processing" and 0 <= data["progress"] <= 100
    assert by_id[deliveries[0]["id"]]["data"]["status"] == "processing"


def test_a_receiver_that_never_answers_delays_nobody(
    server_factory: Callable[..., LiveServer], receiver: WebhookReceiver, path: str
) -> None:
    # A long timeout: the hung deliveries are in flight when the other run completes.
    server = server_factory(HOOKS_CONFIG.replace("timeout_s = 1", "timeout_s = 30"))
    receiver.default(path + "/dead", HANG)
    dead = [
        submit_ok(server, f"to a dead receiver {n}", webhookUrl=receiver.url(path + "/dead"))
        for n in range(3)
    ]
    receiver.wait_for(lambda r: len(r) == len(dead), path=path + "/dead", timeout=60)
    run_id = submit_ok(server, "to a live receiver", webhookUrl=receiver.url(path + "/live"))
    [got] = receiver.wait_for(lambda r: len(r) == 1, path=path + "/live")
    data = json.loads(got.body)["data"]
    assert data["requestId"] == run_id
    completed_at = iso_s(data["completedAt"])
    assert got.at - completed_at < 1.0, f"told {got.at - completed_at:.2f} s after completion"
    assert len(receiver.received(path + "/dead")) == len(dead)  # still hanging, not retried


def test_every_run_with_a_webhook_ends_with_a_delivery(
    hooks: LiveServer, receiver: WebhookReceiver, path: str
) -> None:
    url = receiver.url(path)
    expected = {
        submit_ok(hooks, "completes", webhookUrl=url): "video.completed",
        submit_ok(hooks, "sandbox:fail fails", webhookUrl=url): "video.failed",
        submit_ok(hooks, "sandbox:cancel cancels", webhookUrl=url): "video.cancelled",
    }
    rendering = submit_ok(hooks, "sandbox:slow=30 cancelled by the client", webhookUrl=url)
    queued = submit_ok(hooks, "sandbox:queue=30 cancelled while queued", webhookUrl=url)
    wait_for(hooks, rendering, {"IN_PROGRESS"})
    for run_id in (rendering, queued):
        response = httpx.post(
            f"{hooks.base_url}/api/generate-video/cancel",
            json={"runId": run_id},
            headers=hooks.headers(),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        expected[run_id] = "video.cancelled"
    for run_id, kind in expected.items():
        wait_terminal(hooks, run_id)
        log = log_of(hooks, run_id)
        assert log["runId"] == run_id and log["webhookUrl"] == url
        [delivery] = wait_log(hooks, run_id, settled)
        assert delivery["type"] == kind and delivery["status"] == "delivered", delivery
        assert len(delivery["log"]) == delivery["attempts"] == 1
    got = receiver.wait_for(lambda r: len(r) == len(expected), path=path)
    told = {json.loads(g.body)["data"]["requestId"]: json.loads(g.body)["type"] for g in got}
    assert told == expected


def test_a_run_without_webhook_has_an_empty_log(hooks: LiveServer) -> None:
    run_id = submit_ok(hooks, "no webhook")
    wait_terminal(hooks, run_id)
    assert log_of(hooks, run_id) == {"runId": run_id, "webhookUrl": None, "deliveries": []}


def test_redeliver_sends_the_newest_delivery_again_with_its_webhook_id(
    hooks: LiveServer, receiver: WebhookReceiver, path: str
) -> None:
    run_id = submit_ok(hooks, "again", webhookUrl=receiver.url(path))
    [first] = receiver.wait_for(lambda r: len(r) == 1, path=path)
    wait_log(hooks, run_id, settled)
    response = httpx.post(
        f"{hooks.base_url}/api/generate-video/webhooks/redeliver",
        json={"runId": run_id},
        headers=hooks.headers(),
        timeout=30,
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["id"] == first.webhook_id and answer["status"] == "pending"
    assert answer["type"] == "video.completed" and answer["attempts"] == 1
    both = receiver.wait_for(lambda r: len(r) == 2, path=path)
    assert both[1].webhook_id == first.webhook_id and both[1].body == first.body
    assert_verifies(secret_of(hooks), both[1])
    [delivery] = wait_log(hooks, run_id, lambda d: settled(d) and d[0]["attempts"] == 2)
    assert delivery["status"] == "delivered" and len(delivery["log"]) == 2


def test_log_and_redeliver_errors(hooks: LiveServer, receiver: WebhookReceiver) -> None:
    base = f"{hooks.base_url}/api/generate-video/webhooks"
    mine = submit_ok(hooks, "mine", webhookUrl=receiver.url("/errors"))
    other_key = hooks.create_key("webhooks-other")
    assert_status_error(
        httpx.get(base, params={"runId": mine}, headers=hooks.headers(other_key)), 404
    )
    assert_status_error(httpx.get(base, params={"runId": mine}), 401)
    assert "'runId' is required" in assert_status_error(
        httpx.get(base, headers=hooks.headers()), 400
    )
    assert_status_error(httpx.get(base, params={"runId": "vid_nope"}, headers=hooks.headers()), 404)

    def redeliver(body: Any, key: str | None = None) -> httpx.Response:
        return httpx.post(f"{base}/redeliver", json=body, headers=hooks.headers(key), timeout=30)

    assert_status_error(redeliver({"runId": "vid_nope"}), 404)
    assert_status_error(redeliver({"runId": mine}, other_key), 404)
    assert "runId" in assert_status_error(redeliver({"model": "x"}), 400)
    assert "runId" in assert_status_error(redeliver(["not", "an", "object"]), 400)
    plain = submit_ok(hooks, "no webhook here")
    message = assert_status_error(redeliver({"runId": plain}), 409)
    assert "submitted without a 'webhookUrl'" in message
    queued = submit_ok(hooks, "sandbox:queue=30 not yet", webhookUrl=receiver.url("/errors"))
    message = assert_status_error(redeliver({"runId": queued}), 409)
    assert "no webhook delivery yet" in message and "IN_QUEUE" in message
    httpx.post(
        f"{hooks.base_url}/api/generate-video/cancel",
        json={"runId": queued},
        headers=hooks.headers(),
    )


def test_secret_rotation_signs_with_both_secrets(
    hooks: LiveServer, receiver: WebhookReceiver, path: str
) -> None:
    key = hooks.create_key("rotating")
    old = secret_of(hooks, "rotating")
    rotated = run_cli(
        ["keys", "webhook-secret", "rotating", "--rotate"],
        data_dir=hooks.data_dir,
        config=hooks.config,
    )
    new = rotated.stdout.strip().splitlines()[-1]
    assert new != old and new.startswith("whsec_") and secret_of(hooks, "rotating") == new
    assert "86400 s" in rotated.stderr and "secret_overlap_s" in rotated.stderr
    submit_ok(hooks, "rotated", key=key, webhookUrl=receiver.url(path))
    [got] = receiver.wait_for(lambda r: len(r) == 1, path=path)
    signatures = got.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert [hmac_matches(new, got, s) for s in signatures] == [True, False]
    assert [hmac_matches(old, got, s) for s in signatures] == [False, True]
    assert_verifies(new, got)
    assert_verifies(old, got)


def test_key_default_webhook_url(
    hooks: LiveServer, receiver: WebhookReceiver, path: str, tmp_path: Path
) -> None:
    created = run_cli(
        ["keys", "create", "with-default", "--webhook-url", receiver.url(path)],
        data_dir=hooks.data_dir,
        config=hooks.config,
    )
    key = created.stdout.strip().splitlines()[-1]
    run_id = submit_ok(hooks, "told by default", key=key)
    [got] = receiver.wait_for(lambda r: len(r) == 1, path=path)
    assert json.loads(got.body)["data"]["requestId"] == run_id
    assert log_of(hooks, run_id, key)["webhookUrl"] == receiver.url(path)
    own = submit_ok(hooks, "told elsewhere", key=key, webhookUrl=receiver.url(path + "/own"))
    [got] = receiver.wait_for(lambda r: len(r) == 1, path=path + "/own")
    assert json.loads(got.body)["data"]["requestId"] == own


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/hook",
    ],
)
def test_private_webhook_targets_are_refused_at_submit(live_server: LiveServer, url: str) -> None:
    body = {"model": "testcard-video", "prompt": "x", "webhookUrl": url}
    message = assert_submit_error(submit(live_server, body), 400, "invalid_request_error")
    assert "not a public address" in message
    assert "allow_private_hosts = true" in message


def test_openapi_documents_the_delivery_routes(hooks: LiveServer) -> None:
    spec = httpx.get(f"{hooks.base_url}/openapi.json").json()
    paths = spec["paths"]
    log = paths["/api/generate-video/webhooks"]["get"]
    assert set(log["responses"]) == {"200", "400", "401", "404", "503"}
    assert log["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WebhookDeliveries"
    }
    again = paths["/api/generate-video/webhooks/redeliver"]["post"]
    assert set(again["responses"]) == {"202", "400", "401", "404", "409", "503"}
    assert "requestBody" in again
    schemas = spec["components"]["schemas"]
    assert set(schemas["WebhookDelivery"]["properties"]) == {
        "id",
        "type",
        "status",
        "attempts",
        "createdAt",
        "nextAttemptAt",
        "deliveredAt",
        "lastStatusCode",
        "lastError",
        "log",
    }
    assert set(schemas["WebhookAttempt"]["properties"]) == {
        "at",
        "statusCode",
        "error",
        "durationMs",
    }
