"""The client CLI's pure parts: ``--param`` parsing, exit codes and their documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from vidgate import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    ContentPolicyError,
    GenerationCancelled,
    GenerationFailed,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunStatus,
    VideoNotReady,
    VideoStatus,
    WaitTimeout,
)
from vidgate.client.cli import ExitCode, exit_code_for, image_param, parse_param

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("duration=5", ("duration", 5)),
        ("resolution=720p", ("resolution", "720p")),
        ("seed=-3", ("seed", -3)),
        ("generateAudio=true", ("generateAudio", True)),
        ("duration=5s", ("duration", "5s")),
        ("prompt_suffix=a=b", ("prompt_suffix", "a=b")),
        ("empty=", ("empty", "")),
        (" aspect_ratio =16:9", ("aspect_ratio", "16:9")),
        (
            'referenceImages=[{"url": "https://x/y.png"}]',
            ("referenceImages", [{"url": "https://x/y.png"}]),
        ),
    ],
)
def test_parse_param(text: str, expected: tuple[str, object]) -> None:
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["duration", "=5", ""])
def test_parse_param_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_param(text)


def test_image_param(tmp_path: Path) -> None:
    assert image_param("https://img.example/a.png") == {"imageUrl": "https://img.example/a.png"}
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG fake")
    assert image_param(str(png)) == {"imageDataUrl": "data:image/png;base64,iVBORyBmYWtl"}
    with pytest.raises(typer.BadParameter):
        image_param(str(tmp_path / "missing.png"))


FAILED = VideoStatus("vid_x", RunStatus.FAILED, "FAILED", error="boom")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (GenerationFailed(FAILED), ExitCode.FAILED),
        (ContentPolicyError(status_code=400), ExitCode.FAILED),
        (GenerationCancelled(VideoStatus("vid_x", RunStatus.CANCELLED)), ExitCode.CANCELLED),
        (WaitTimeout("vid_x", 5, None), ExitCode.TIMEOUT),
        (AuthenticationError(status_code=401), ExitCode.AUTH),
        (PermissionDeniedError(status_code=403), ExitCode.AUTH),
        (NotFoundError(status_code=404), ExitCode.NOT_FOUND),
        (VideoNotReady(VideoStatus("vid_x", RunStatus.IN_QUEUE)), ExitCode.NOT_READY),
        (InvalidRequestError(status_code=400), ExitCode.USAGE),
        (ValueError("bad base url"), ExitCode.USAGE),
        (RateLimitError(status_code=429), ExitCode.ERROR),
        (APIStatusError(status_code=500), ExitCode.ERROR),
        (APIConnectionError(), ExitCode.ERROR),
    ],
)
def test_exit_codes(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) is code


def test_exit_codes_are_distinct_and_documented() -> None:
    section = DOCS.read_text().split("### Exit codes", 1)[1]
    documented = {int(n) for n in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}
    assert len({int(code) for code in ExitCode}) == len(ExitCode)
