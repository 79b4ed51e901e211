"""What ``storage.url`` names: a local directory, or an S3 bucket and a prefix in it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str
    """Keys are stored under it (no leading or trailing slash; empty for the whole bucket)."""


def parse_storage_url(url: str) -> Path | S3Location:
    """A path or ``file:///path`` names a directory, ``s3://bucket/prefix`` a bucket;
    ValueError, saying what to write instead, for anything else."""
    if "://" not in url:
        return Path(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return Path(unquote(parts.path))
    if scheme != "s3":
        raise ValueError(
            f"storage.url {url!r}: unsupported scheme {parts.scheme!r}; use a local directory "
            "(a path) or s3://bucket/prefix (AWS S3, MinIO, R2, B2 and other S3-compatible "
            "services, with storage.endpoint_url or AWS_ENDPOINT_URL)"
        )
    bucket = parts.netloc
    if not _BUCKET_RE.fullmatch(bucket):
        why = "names no bucket" if not bucket else f"has an invalid bucket name {bucket!r}"
        raise ValueError(
            f"storage.url {url!r} {why}; write s3://BUCKET/PREFIX, where BUCKET has 3 to 63 "
            "lower-case letters, digits, dots and hyphens"
        )
    return S3Location(bucket, parts.path.strip("/"))
