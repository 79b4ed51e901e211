"""Reading answers: every shape and variation the SDK must tolerate, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vidgate import (
    APIStatusError,
    AuthenticationError,
    ContentPolicyError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunStatus,
    UnexpectedResponseError,
)
from vidgate.client._parse import (
    error_from_response,
    normalise_status,
    parse_models,
    parse_retry_after,
    parse_status,
    parse_submission,
    resolve_url,
)

BASE = "https://vid.example"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("IN_QUEUE", RunStatus.IN_QUEUE),
        ("queued", RunStatus.IN_QUEUE),
        ("pending", RunStatus.IN_QUEUE),
        ("IN_PROGRESS", RunStatus.IN_PROGRESS),
        ("in-progress", RunStatus.IN_PROGRESS),
        ("processing", RunStatus.IN_PROGRESS),
        ("generating", RunStatus.IN_PROGRESS),
        ("COMPLETED", RunStatus.COMPLETED),
        ("completed", RunStatus.COMPLETED),
        ("succeeded", RunStatus.COMPLETED),
        ("FAILED", RunStatus.FAILED),
        ("error", RunStatus.FAILED),
        ("CANCELLED", RunStatus.CANCELLED),
        ("CANCELED", RunStatus.CANCELLED),
        ("canceled", RunStatus.CANCELLED),
        ("cancelled", RunStatus.CANCELLED),
        (" Completed ", RunStatus.COMPLETED),
        ("expired", RunStatus.UNKNOWN),
        ("aborted", RunStatus.UNKNOWN),
        ("unknown", RunStatus.UNKNOWN),
        ("", RunStatus.UNKNOWN),
        (None, RunStatus.UNKNOWN),
        (3, RunStatus.UNKNOWN),
    ],
)
def test_status_spellings(raw: object, expected: RunStatus) -> None:
    assert normalise_status(raw) is expected


def test_only_three_statuses_are_terminal() -> None:
    terminal = {s for s in RunStatus if s.is_terminal}
    assert terminal == {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}
    assert not RunStatus.UNKNOWN.is_terminal


def test_legacy_completed_shape() -> None:
    body = {
        "data": {
            "status": "COMPLETED",
            "request_id": "fal-request-abc123xyz",
            "output": {"video": {"url": "https://storage.example.com/video.mp4"}},
            "cost": 0.35,
            "progress": 100,
            "createdAt": "2026-01-17T12:34:56.000Z",
            "expiresAt": "2026-01-18T12:34:56Z",
        }
    }
    status = parse_status(body, base_url=BASE, run_id="vid_1", model="veo2-video")
    assert status.run_id == "vid_1"
    assert status.status is RunStatus.COMPLETED and status.is_completed and status.is_terminal
    assert status.video_url == "https://storage.example.com/video.mp4"
    assert status.provider_request_id == "fal-request-abc123xyz"
    assert status.model == "veo2-video"
    assert status.cost == 0.35
    assert status.created_at == datetime(2026, 1, 17, 12, 34, 56, tzinfo=UTC)
    assert status.expires_at is not None
    assert status.raw == body


def test_unified_shape_prefers_nested_status_and_reads_flat_fields() -> None:
    body = {
        "requestId": "vid_2",
        "model": "sora-2",
        "status": "processing",
        "progress": 40,
        "videoUrl": None,
        "error": None,
        "data": {"status": "IN_PROGRESS", "requestId": "vid_2"},
    }
    status = parse_status(body, base_url=BASE)
    assert status.run_id == "vid_2"
    assert status.status is RunStatus.IN_PROGRESS
    assert status.raw_status == "IN_PROGRESS"
    assert status.progress == 40
    assert status.model == "sora-2"
    assert status.error is None


def test_flat_only_lower_case_with_relative_url() -> None:
    body = {
        "requestId": "vid_3",
        "status": "completed",
        "videoUrl": "/api/generate-video/content?model=grok-imagine-video&runId=vid_3",
    }
    status = parse_status(body, base_url=BASE)
    assert status.status is RunStatus.COMPLETED
    assert status.raw_status == "completed"
    assert (
        status.video_url
        == f"{BASE}/api/generate-video/content?model=grok-imagine-video&runId=vid_3"
    )


def test_failed_with_nsfw_fields_and_error_object() -> None:
    body = {
        "data": {
            "status": "FAILED",
            "error": {"message": "Content policy violation", "type": "nsfw"},
            "isNSFWError": "true",
            "userFriendlyError": "Content flagged as inappropriate.",
        }
    }
    status = parse_status(body, base_url=BASE, run_id="vid_4")
    assert status.is_failed
    assert status.error == "Content policy violation"
    assert status.is_nsfw is True
    assert status.user_friendly_error == "Content flagged as inappropriate."
    assert status.message == "Content flagged as inappropriate."


def test_missing_fields_and_odd_values_are_tolerated() -> None:
    status = parse_status(
        {"data": {"progress": "abc", "queuePosition": "3", "createdAt": "yesterday"}},
        base_url=BASE,
        run_id="vid_5",
    )
    assert status.status is RunStatus.UNKNOWN and not status.is_terminal
    assert status.raw_status == ""
    assert status.progress is None
    assert status.queue_position == 3
    assert status.created_at is None
    assert status.video_url is None


def test_progress_is_clamped_and_output_url_variant_read() -> None:
    status = parse_status(
        {"data": {"status": "COMPLETED", "progress": 250, "output": {"url": "v.mp4"}}},
        base_url=BASE + "/",
        run_id="vid_6",
    )
    assert status.progress == 100
    assert status.video_url == f"{BASE}/v.mp4"


def test_status_without_any_run_id_or_not_an_object_is_unexpected() -> None:
    with pytest.raises(UnexpectedResponseError):
        parse_status({"data": {"status": "COMPLETED"}}, base_url=BASE)
    with pytest.raises(UnexpectedResponseError):
        parse_status(["COMPLETED"], base_url=BASE, run_id="vid_7")


def test_retry_after_is_kept_on_the_status() -> None:
    status = parse_status({"status": "queued"}, base_url=BASE, run_id="v", retry_after_s=2.0)
    assert status.retry_after_s == 2.0


def test_to_dict_leaves_out_absent_fields() -> None:
    status = parse_status({"status": "expired"}, base_url=BASE, run_id="vid_8")
    assert status.to_dict() == {"run_id": "vid_8", "status": "UNKNOWN", "raw_status": "expired"}


def test_submission_prefers_run_id_and_accepts_id_alone() -> None:
    both = parse_submission({"runId": "vid_a", "id": "vid_b", "cost": 0.35}, model="m")
    assert both.run_id == "vid_a" and both.model == "m" and both.cost == 0.35
    only_id = parse_submission(
        {
            "id": "vid_c",
            "status": "pending",
            "model": "veo2-video",
            "paymentSource": "XNO",
            "remainingBalance": 12.5,
        },
        model="x",
    )
    assert only_id.run_id == "vid_c"
    assert only_id.model == "veo2-video"
    assert only_id.payment_source == "XNO" and only_id.remaining_balance == 12.5
    assert only_id.to_dict()["run_id"] == "vid_c"


def test_submission_without_an_id_is_unexpected() -> None:
    with pytest.raises(UnexpectedResponseError, match="runId"):
        parse_submission({"status": "pending"}, model="m")


def test_models_nested_and_bare_list() -> None:
    body = {
        "object": "list",
        "data": [
            {
                "id": "testcard-video",
                "name": "Testcard",
                "architecture": {"input_modalities": ["text"]},
                "capabilities": {"text_to_video": True},
                "supported_parameters": {"parameters": {"duration": {"type": "integer"}}},
            },
            {"name": "no id: skipped"},
        ],
    }
    (model,) = parse_models(body)
    assert model.id == "testcard-video" and model.text_to_video and not model.image_to_video
    assert model.input_modalities == ("text",)
    assert set(model.parameters) == {"duration"}
    assert [m.id for m in parse_models([{"id": "x"}])] == ["x"]
    with pytest.raises(UnexpectedResponseError):
        parse_models({"data": "nope"})


@pytest.mark.parametrize(
    ("status", "body", "cls", "message", "kind"),
    [
        (
            400,
            {"error": {"message": "bad field", "type": "invalid_request_error"}, "status": 400},
            InvalidRequestError,
            "bad field",
            "invalid_request_error",
        ),
        (
            400,
            {"error": {"message": "blocked", "type": "CONTENT_POLICY_VIOLATION"}, "status": 400},
            ContentPolicyError,
            "blocked",
            "CONTENT_POLICY_VIOLATION",
        ),
        (
            400,
            {
                "error": {
                    "message": "moderated",
                    "type": "invalid_request_error",
                    "code": "content_policy_violation",
                }
            },
            ContentPolicyError,
            "moderated",
            "CONTENT_POLICY_VIOLATION",
        ),
        (
            401,
            {"error": {"message": "no key", "type": "authentication_error"}, "status": 401},
            AuthenticationError,
            "no key",
            "authentication_error",
        ),
        (403, {"error": 403, "message": "not yours"}, PermissionDeniedError, "not yours", None),
        (
            404,
            {"error": 404, "message": "run 'x' not found"},
            NotFoundError,
            "run 'x' not found",
            None,
        ),
        (
            429,
            {"error": {"message": "slow down", "type": "RATE_LIMITED"}, "status": 429},
            RateLimitError,
            "slow down",
            "RATE_LIMITED",
        ),
        (
            402,
            {"error": "Insufficient balance", "status": 402},
            APIStatusError,
            "Insufficient balance",
            None,
        ),
        (502, "<html>502 Bad Gateway</html>", APIStatusError, "<html>502 Bad Gateway</html>", None),
        (500, {}, APIStatusError, "The server answered with an error status.", None),
    ],
)
def test_error_envelopes(
    status: int, body: object, cls: type[APIStatusError], message: str, kind: str | None
) -> None:
    error = error_from_response(status, body, request_id="req-1", retry_after_s=3.0)
    assert type(error) is cls
    assert error.message == message
    assert error.status_code == status
    assert error.error_type == kind
    assert error.request_id == "req-1"
    assert error.retry_after_s == 3.0
    assert error.body == body
    assert f"HTTP {status}" in str(error)


def test_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    date = "Wed, 21 Oct 2026 07:28:10 GMT"
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(date, now=now) == 10.0


def test_resolve_url() -> None:
    assert resolve_url(BASE, "/files/a.mp4") == f"{BASE}/files/a.mp4"
    assert resolve_url(BASE, "https://cdn.example/a.mp4") == "https://cdn.example/a.mp4"
    assert resolve_url(BASE + "/", " files/a.mp4 ") == f"{BASE}/files/a.mp4"
