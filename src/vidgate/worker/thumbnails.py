"""Poster frames: a JPEG of a finished video's first frame, stored next to the video.

Both workers make one right after the video is stored (the local worker from its render,
the poller from the copy of a provider's video it has just streamed into storage), and
record its key on the run with the completion. A thumbnail is a nicety: one that cannot be
made or stored is logged (``thumbnail.failed``) and the run completes without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

import av
from PIL import Image

from vidgate.logs import event
from vidgate.storage.base import Storage

log = logging.getLogger("vidgate.worker")

SUFFIX = ".thumb.jpg"
CONTENT_TYPE = "image/jpeg"
MAX_WIDTH = 640
"""Wider videos get a poster scaled down to this width (the height follows)."""
JPEG_QUALITY = 85


def thumbnail_key(video_key: str) -> str:
    """Where a video's poster is stored: next to it, ``<video key>.thumb.jpg``."""
    return video_key + SUFFIX


def render_thumbnail(video: Path, target: Path, max_width: int = MAX_WIDTH) -> tuple[int, int]:
    """Write the first frame of ``video`` to ``target`` as a JPEG, at the video's size or
    scaled down to ``max_width``; returns its ``(width, height)``. Raises what PyAV or
    Pillow raise for a file without a decodable frame."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frame = next(container.decode(stream), None)
        if frame is None:
            raise ValueError(f"{video.name} has no video frame to make a poster of")
        image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
    if image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    image.convert("RGB").save(target, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return image.width, image.height


async def store_thumbnail(storage: Storage, video: Path, video_key: str, run_id: str) -> str | None:
    """Make the poster of ``video`` (stored as ``video_key``) and store it next to it; its
    key, or None when it could not be made or stored (logged: the run goes on)."""
    key = thumbnail_key(video_key)
    target = video.with_name(video.name + SUFFIX)
    try:
        width, height = await asyncio.to_thread(render_thumbnail, video, target)
        await storage.put_file(key, target, CONTENT_TYPE)
    except Exception as exc:  # any failure: the video is what counts
        event(log, "thumbnail.failed", logging.WARNING, run_id=run_id, key=key, error=repr(exc))
        return None
    finally:
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)  # put_file moved it, unless something failed
    event(log, "thumbnail.stored", run_id=run_id, key=key, width=width, height=height)
    return key


@contextlib.contextmanager
def spool(run_id: str) -> Iterator[Path | None]:
    """A temporary file to keep a copy of a streamed video in while it is stored, for its
    poster; removed with its directory on leaving. None when the temporary directory
    cannot be made (full, not writable): the video is then stored without a poster."""
    try:
        folder = tempfile.mkdtemp(prefix="vidgate-thumb-")
    except OSError as exc:
        event(log, "thumbnail.failed", logging.WARNING, run_id=run_id, error=repr(exc))
        yield None
        return
    try:
        yield Path(folder) / "video.mp4"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def tee(chunks: AsyncIterator[bytes], copy: Path | None, run_id: str) -> AsyncIterator[bytes]:
    """The chunks as they come, each also written to ``copy``. Writing the copy is only for
    the poster: if it fails (a full disk), the copy is dropped and the chunks still flow."""
    handle: BinaryIO | None = None
    if copy is not None:
        try:
            handle = copy.open("wb")
        except OSError as exc:
            event(log, "thumbnail.failed", logging.WARNING, run_id=run_id, error=repr(exc))
    try:
        async for chunk in chunks:
            if handle is not None:
                try:
                    await asyncio.to_thread(handle.write, chunk)
                except OSError as exc:
                    event(log, "thumbnail.failed", logging.WARNING, run_id=run_id, error=repr(exc))
                    handle.close()
                    handle = None
                    if copy is not None:
                        await asyncio.to_thread(copy.unlink, missing_ok=True)
            yield chunk
    finally:
        if handle is not None:
            handle.close()
