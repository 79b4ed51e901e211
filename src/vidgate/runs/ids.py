"""Run identifiers: ``vid_`` + 26 lowercase base32 characters of a UUIDv7.

The Crockford base32 alphabet is used (as ULID does) because, unlike RFC 4648's, its
characters sort in the order of the values they encode: ids sort by creation time as
plain strings.
"""

from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RUN_ID_RE = re.compile(r"^vid_[0-9a-hjkmnp-tv-z]{26}$")


def uuid7_bytes(now_ms: int | None = None) -> bytes:
    """16 bytes laid out as RFC 9562 UUIDv7: 48-bit ms timestamp, version, variant, randomness."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    raw = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return bytes(raw)


def _encode128(raw: bytes) -> str:
    value = int.from_bytes(raw, "big")
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


_last_run_id = 0
_run_id_lock = threading.Lock()


def new_run_id(now_ms: int | None = None) -> str:
    """A new run id; ids made in a later millisecond sort after earlier ones, and a
    process's ids sort in the order it made them (within a millisecond, one more than the
    last: RFC 9562's monotonic random)."""
    global _last_run_id
    value = int.from_bytes(uuid7_bytes(now_ms), "big")
    with _run_id_lock:
        if value <= _last_run_id:
            value = _last_run_id + 1
        _last_run_id = value
    return "vid_" + _encode128(value.to_bytes(16, "big"))


def new_message_id() -> str:
    """A webhook message id (``webhook-id``): ``msg_`` + the same time-ordered encoding."""
    return "msg_" + _encode128(uuid7_bytes())


def is_run_id(value: str) -> bool:
    return RUN_ID_RE.fullmatch(value) is not None
