"""The input image of an image-to-video run, for the local backends: read from the request's
data URL or fetched from its ``imageUrl`` (guarded against private addresses), then checked.

Every failure is a :class:`GenerationFailed` worded for the person who sent the request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
from dataclasses import dataclass

import httpx
from PIL import Image

from vidgate.backends.base import GenerationFailed
from vidgate.netguard import GuardedTransport, Resolve, UnsafeTarget, system_resolve
from vidgate.runs.request import GenerationRequest

IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "WEBP")  # MPO: the JPEG flavour many phones write
IMAGE_MAX_PIXELS = 50_000_000
_DATA_URL_RE = re.compile(r"^data:image/[\w.+-]+(?:;[\w.+=-]+)*;base64,(.*)$", re.I | re.S)


@dataclass(frozen=True)
class ImageLimits:
    fetch_timeout_s: float = 10.0
    max_bytes: int = 4 * 1024 * 1024
    allow_private_hosts: bool = False
    """Let ``imageUrl`` reach loopback and private addresses (tests, trusted networks)."""


def invalid(message: str) -> GenerationFailed:
    """A failure caused by the request, worded for the person who sent it."""
    return GenerationFailed(message, user_friendly=message)


async def load_image(
    request: GenerationRequest, limits: ImageLimits, resolve: Resolve = system_resolve
) -> bytes:
    """The bytes of the request's image (``imageDataUrl`` first, else ``imageUrl``)."""
    if request.image_data_url:
        return decode_data_url(request.image_data_url, limits.max_bytes)
    if request.image_url is None:
        raise invalid(f"{request.model} needs an image (imageUrl or imageDataUrl)")
    return await fetch_image(request.image_url, limits, resolve)


async def fetch_image(url: str, limits: ImageLimits, resolve: Resolve = system_resolve) -> bytes:
    if not re.match(r"^https?://", url, re.IGNORECASE):
        raise invalid("could not fetch imageUrl: only http and https URLs are supported")
    # Checked as it connects, to the address it checked (no second lookup to rebind).
    transport = None if limits.allow_private_hosts else GuardedTransport(resolve=resolve)
    limit = limits.max_bytes
    too_big = f"could not fetch imageUrl: the image is larger than {limit} bytes"
    timed_out = f"could not fetch imageUrl: no answer within {limits.fetch_timeout_s:g} s"
    try:
        async with (
            asyncio.timeout(limits.fetch_timeout_s),
            httpx.AsyncClient(
                transport=transport,
                timeout=limits.fetch_timeout_s,
                follow_redirects=False,  # a redirect could lead to a private address
                trust_env=False,
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.is_redirect:
                raise invalid(
                    f"could not fetch imageUrl: it redirects (HTTP {response.status_code}); "
                    "send the final URL of the image"
                )
            if response.status_code != 200:
                raise invalid(f"could not fetch imageUrl: HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise invalid(too_big)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise invalid(too_big)
            return bytes(body)
    except UnsafeTarget as exc:  # said for the person who sent the URL
        raise invalid(f"could not fetch imageUrl: the URL {exc}") from None
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise invalid(timed_out) from exc
    except httpx.HTTPError as exc:
        raise invalid("could not fetch imageUrl: the connection failed") from exc


def decode_data_url(data_url: str, max_bytes: int) -> bytes:
    match = _DATA_URL_RE.match(data_url)
    if match is None:
        raise invalid("imageDataUrl must be a data URL like 'data:image/png;base64,...'")
    try:
        data = base64.b64decode("".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid("imageDataUrl does not hold valid base64 data") from exc
    if len(data) > max_bytes:
        raise invalid(f"imageDataUrl decodes to {len(data)} bytes; the limit is {max_bytes}")
    return data


def check_image(data: bytes) -> tuple[int, int]:
    """The displayed ``(width, height)`` of a PNG/JPEG/WebP image, else GenerationFailed."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                raise invalid(f"the input image must be PNG, JPEG or WebP; got {image.format}")
            width, height = image.size
            if width * height > IMAGE_MAX_PIXELS:
                raise invalid(f"the input image is too large ({width}x{height} pixels)")
            image.load()
            rotated = image.getexif().get(0x0112) in (5, 6, 7, 8)  # EXIF orientation
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise invalid(f"the input image could not be decoded: {exc}") from exc
    return (height, width) if rotated else (width, height)
