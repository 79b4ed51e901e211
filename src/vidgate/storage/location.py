"""What ``storage.url`` names: a local directory, or an S3 bucket and a prefix in it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

S3_MAX_URL_TTL_S = 7 * 24 * 3600
"""The longest lifetime S3 allows a presigned URL (SigV4: seven days)."""
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


def storage_location(
    url: str | None, path: Path | None, kind: str | None, url_ttl_s: int
) -> Path | S3Location | None:
    """What the ``[storage]`` keys name together (None: the default directory); ValueError
    where they contradict each other or S3's limits."""
    location = path if url is None else parse_storage_url(url)
    found = "s3" if isinstance(location, S3Location) else "local"
    if kind not in (None, found):
        fix = "set storage.url = 's3://bucket/prefix'" if kind == "s3" else "remove it"
        raise ValueError(
            f"storage.kind is {kind!r} but storage.url names {found} storage "
            f"({url or 'the default directory'}); storage.url alone chooses: {fix}"
        )
    if isinstance(location, S3Location):
        if path is not None:
            raise ValueError(
                f"storage.path ({path}) is for a local directory, but storage.url is {url!r}: "
                "remove one of them"
            )
        if url_ttl_s > S3_MAX_URL_TTL_S:
            raise ValueError(
                f"storage.url_ttl_s ({url_ttl_s}) is longer than the {S3_MAX_URL_TTL_S} s "
                "(7 days) S3 allows a presigned URL; lower it"
            )
    elif path is not None and location != path:
        raise ValueError(
            f"storage.url ({url!r}) and storage.path ({path}) name two directories: keep "
            "one of them"
        )
    return location
