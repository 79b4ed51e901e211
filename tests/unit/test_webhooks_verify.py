"""Webhook signatures: our ``sign``/``verify`` round trip, every way a delivery is refused,
and both directions against the independent ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import standardwebhooks

from vidgate import RunStatus, VidgateError
from vidgate.webhooks import WebhookEvent, WebhookVerificationError, sign, verify

SECRET = "whsec_" + base64.b64encode(b"a key of thirty-two random bytes").decode()
OTHER = "whsec_" + base64.b64encode(b"another key, not the one signed").decode()
RUN = "vid_0123456789abcdef"


def body(event_type: str = "video.completed", **data: Any) -> bytes:
    status = {
        "requestId": RUN,
        "runId": RUN,
        "status": "COMPLETED",
        "model": "testcard-video",
        "progress": 100,
        "videoUrl": "https://vidgate.example/files/vid.mp4",
        "data": {"status": "COMPLETED", "requestId": RUN},
        **data,
    }
    event = {"type": event_type, "timestamp": "2026-05-07T12:00:00.000Z", "data": status}
    return json.dumps(event, separators=(",", ":")).encode()


def headers(
    payload: bytes, *, secret: str = SECRET, msg_id: str = "msg_1", at: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, payload),
    }


def refused(payload: bytes | str, hdrs: Any, secret: Any = SECRET, **kw: Any) -> str:
    with pytest.raises(WebhookVerificationError) as caught:
        verify(payload, hdrs, secret, **kw)
    return str(caught.value)


def test_round_trip_parses_the_event() -> None:
    payload = body()
    event = verify(payload, headers(payload), SECRET)
    assert isinstance(event, WebhookEvent)
    assert event.id == "msg_1"
    assert event.type == "video.completed"
    assert event.timestamp == "2026-05-07T12:00:00.000Z"
    assert event.data.run_id == RUN
    assert event.data.status is RunStatus.COMPLETED
    assert event.data.video_url == "https://vidgate.example/files/vid.mp4"
    assert event.raw == json.loads(payload)
    # A str payload and any header mapping (httpx's, mixed case) work alike.
    mixed = {k.title(): v for k, v in headers(payload).items()}
    assert verify(payload.decode(), mixed, SECRET).data == event.data
    assert verify(payload, httpx.Headers(headers(payload)), SECRET).id == "msg_1"


def test_the_signature_format() -> None:
    signature = sign(SECRET, "msg_1", 1700000000, b"{}")
    version, _, value = signature.partition(",")
    assert version == "v1"
    assert len(base64.b64decode(value, validate=True)) == 32


def test_a_failed_run_event() -> None:
    payload = body(
        "video.failed",
        status="FAILED",
        error="boom",
        userFriendlyError="Try again.",
        data={"status": "FAILED", "requestId": RUN, "isNSFWError": True},
    )
    event = verify(payload, headers(payload), SECRET)
    assert event.type == "video.failed"
    assert event.data.is_failed and event.data.is_nsfw
    assert event.data.message == "Try again."


def test_tampering_is_refused() -> None:
    payload = body()
    good = headers(payload)
    assert "no webhook signature matches" in refused(payload.replace(b"COMPLETED", b"FAILED"), good)
    assert "matches" in refused(payload, {**good, "webhook-id": "msg_2"})
    stamp = str(int(good["webhook-timestamp"]) + 1)
    assert "matches" in refused(payload, {**good, "webhook-timestamp": stamp})
    assert "matches" in refused(payload + b" ", good)


def test_stale_and_future_timestamps_are_refused() -> None:
    payload = body()
    now = int(time.time())
    assert "too old" in refused(payload, headers(payload, at=now - 301))
    assert "future" in refused(payload, headers(payload, at=now + 301))
    assert "too old" in refused(payload, headers(payload, at=now - 31), tolerance_s=30)
    assert verify(payload, headers(payload, at=now - 250), SECRET).id == "msg_1"
    assert verify(payload, headers(payload, at=now + 250), SECRET).id == "msg_1"
    assert "not a number" in refused(payload, {**headers(payload), "webhook-timestamp": "soon"})


def test_one_matching_signature_among_several_is_enough() -> None:
    payload = body()
    good = headers(payload)
    stamp = int(good["webhook-timestamp"])
    others = [sign(OTHER, "msg_1", stamp, payload), "v1a,c29tZXRoaW5n", "v1,not*base64", "junk"]
    mixed = {**good, "webhook-signature": " ".join([*others, good["webhook-signature"]])}
    assert verify(payload, mixed, SECRET).id == "msg_1"
    only_others = {**good, "webhook-signature": " ".join(others)}
    assert "matches" in refused(payload, only_others)


def test_several_secrets_during_a_rotation() -> None:
    payload = body()
    assert verify(payload, headers(payload, secret=OTHER), [SECRET, OTHER]).id == "msg_1"
    assert verify(payload, headers(payload), (OTHER, SECRET)).id == "msg_1"
    assert "no webhook secret" in refused(payload, headers(payload), [])


def test_a_wrong_secret_is_refused() -> None:
    payload = body()
    assert "matches" in refused(payload, headers(payload), OTHER)


def test_missing_headers_are_refused() -> None:
    payload = body()
    good = headers(payload)
    for name in good:
        message = refused(payload, {k: v for k, v in good.items() if k != name})
        assert f"{name} header is missing" in message
        assert "missing" in refused(payload, {**good, name: " "})


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "no-prefix",
        base64.b64encode(b"a key without its prefix").decode(),
        "whsec_",
        "whsec_not base64!",
        "whsec_YWJj-_",  # URL-safe alphabet is not standard base64
        "whsec_YWJjZA",  # padding missing
    ],
)
def test_a_malformed_secret_is_refused(secret: str) -> None:
    payload = body()
    assert "secret" in refused(payload, headers(payload), secret)
    with pytest.raises(WebhookVerificationError):
        sign(secret, "msg_1", 1, payload)


def test_a_body_that_is_not_an_event_is_refused() -> None:
    for payload in (b"not json", b"[1, 2]", b'{"data": {}}', b'{"type": "video.completed"}'):
        message = refused(payload, headers(payload))
        assert "JSON" in message or "event" in message or "status" in message


def test_the_error_is_under_the_sdk_root() -> None:
    assert issubclass(WebhookVerificationError, VidgateError)
    assert WebhookVerificationError().message == "The webhook could not be verified."


# -- the independent implementation ------------------------------------------------------


def test_a_delivery_signed_by_standardwebhooks_verifies_here() -> None:
    payload = body()
    now = datetime.now(tz=UTC)
    signature = standardwebhooks.Webhook(SECRET).sign("msg_sw", now, payload.decode())
    sent = {
        "webhook-id": "msg_sw",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert signature == sign(SECRET, "msg_sw", int(now.timestamp()), payload)
    event = verify(payload, sent, SECRET)
    assert event.id == "msg_sw" and event.data.is_completed
    with pytest.raises(WebhookVerificationError):
        verify(payload, sent, OTHER)


def test_a_delivery_signed_here_verifies_with_standardwebhooks() -> None:
    payload = body("video.progress", status="IN_PROGRESS", progress=40)
    sent = headers(payload, msg_id="msg_ours")
    assert standardwebhooks.Webhook(SECRET).verify(payload, sent) == json.loads(payload)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(OTHER).verify(payload, sent)
    tampered = payload.replace(b"40", b"41")
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(tampered, sent)
