"""Rate limiting, URL signing and the wire views, without I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgate.runs.status import Status
from vidgate.server.ratelimit import TokenBucketLimiter
from vidgate.storage.base import BadSignature
from vidgate.storage.local import LocalStorage, load_or_create_secret
from vidgate.store.records import RunRecord
from vidgate.views import OutputLink, OutputLinks, legacy_status, unified_status


async def test_token_bucket() -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=2)
    assert await limiter.take("k", now=0) is None
    assert await limiter.take("k", now=0) is None
    wait = await limiter.take("k", now=0)
    assert wait == pytest.approx(1.0)
    assert await limiter.take("other", now=0) is None
    assert await limiter.take("k", now=1.01) is None


def test_signed_urls(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, b"s" * 32)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "v.mp4").write_bytes(b"x")
    url, expires = storage.signed_url("a/v.mp4", "http://h/", 100, issued_from=1000, now=1000)
    assert url.startswith("http://h/files/a/v.mp4?exp=") and expires == 1100
    # Stable for half the TTL, then rolls forward; always valid for at least half the TTL.
    assert storage.signed_url("a/v.mp4", "http://h", 100, issued_from=1000, now=1049)[1] == 1100
    assert storage.signed_url("a/v.mp4", "http://h", 100, issued_from=1000, now=1051)[1] == 1150
    fresh, exp = storage.signed_url("a/v.mp4", "http://h", 3600)
    sig = fresh.split("sig=")[1]
    assert storage.open_signed("a/v.mp4", str(exp), sig) == tmp_path / "a" / "v.mp4"
    with pytest.raises(BadSignature, match="expired"):
        storage.open_signed("a/v.mp4", "1100", url.split("sig=")[1])
    with pytest.raises(BadSignature):
        storage.open_signed("a/other.mp4", str(exp), sig)
    with pytest.raises(BadSignature):
        storage.open_signed("../a/v.mp4", str(exp), sig)


def test_secret_is_created_once_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first and len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600


def _run(status: Status, **values: object) -> RunRecord:
    base = dict(
        id="vid_x",
        api_key_id="k",
        model="m",
        backend="testcard",
        status=status,
        request={},
        cost=0.5,
        created_at=0.0,
        updated_at=0.0,
        available_at=0.0,
    )
    return RunRecord(**{**base, **values})  # type: ignore[arg-type]


def test_views_leave_out_what_does_not_apply() -> None:
    queued = legacy_status(_run(Status.IN_QUEUE), None, 3)["data"]
    assert queued == {
        "status": "IN_QUEUE",
        "request_id": "vid_x",
        "cost": 0.5,
        "progress": 0,
        "queuePosition": 3,
        "createdAt": "1970-01-01T00:00:00.000Z",
    }
    failed = legacy_status(
        _run(
            Status.FAILED,
            error="e",
            is_nsfw=True,
            user_friendly_error="nope",
            provider_request_id="req-1",
        ),
        None,
    )
    assert failed["data"]["request_id"] == "req-1"
    assert failed["data"]["isNSFWError"] is True and failed["data"]["userFriendlyError"] == "nope"
    assert None not in failed["data"].values()
    link = OutputLinks(OutputLink("http://h/f", 100.0))
    done = unified_status(_run(Status.COMPLETED, completed_at=1.0), link)
    assert done["status"] == "completed" and done["videoUrl"] == "http://h/f"
    assert done["data"]["output"] == {"video": {"url": "http://h/f"}}
    assert done["error"] is None and None not in done["data"].values()
    assert "thumbnailUrl" not in done and "videoDeleted" not in done
    posters = OutputLinks(OutputLink("http://h/f", 100.0), OutputLink("http://h/t", 100.0))
    assert unified_status(_run(Status.COMPLETED, completed_at=1.0), posters)["thumbnailUrl"] == (
        "http://h/t"
    )
    swept = _run(Status.COMPLETED, completed_at=1.0, output_key="k", output_deleted_at=86400.0)
    for body in (unified_status(swept, None), legacy_status(swept, None)["data"]):
        assert body["videoDeleted"] is True and body["videoDeletedAt"] == "1970-01-02T00:00:00.000Z"
        assert "retention policy" in body["videoDeletedReason"]
        assert "output" not in body.get("data", body) and body.get("videoUrl") is None


async def test_a_webhook_url_that_is_not_a_valid_url_is_unsafe_not_an_error() -> None:
    from vidgate.netguard import UnsafeTarget, check_public

    for url in ("http://a..b/hook", "http://exa\u0000mple.com/", "http:///nohost"):
        with pytest.raises(UnsafeTarget):
            await check_public(url)
