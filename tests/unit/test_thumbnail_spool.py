"""The copy a provider's video is teed into for its poster is a nicety: when it cannot be
made or written (a full or unwritable temporary directory), the video's chunks still flow
whole and no error reaches the copy into storage."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vidgate.worker.thumbnails import spool, tee

CHUNKS = [b"a" * 1000, b"b" * 1000, b"c" * 10]


async def _source() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        yield chunk


async def test_no_temporary_directory_means_no_copy_and_every_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with spool("vid_x") as copy:
        assert copy is None
        assert [chunk async for chunk in tee(_source(), copy, "vid_x")] == CHUNKS


async def test_a_copy_that_cannot_be_opened_still_passes_every_chunk(tmp_path: Path) -> None:
    in_the_way = tmp_path / "video.mp4"
    in_the_way.mkdir()  # a directory where the copy's file should be
    assert [chunk async for chunk in tee(_source(), in_the_way, "vid_x")] == CHUNKS


async def test_a_writable_copy_gets_every_byte(tmp_path: Path) -> None:
    with spool("vid_x") as copy:
        assert copy is not None
        assert [chunk async for chunk in tee(_source(), copy, "vid_x")] == CHUNKS
        assert copy.read_bytes() == b"".join(CHUNKS)
    assert not copy.parent.exists()  # removed on leaving
