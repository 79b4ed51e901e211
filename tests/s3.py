"""An S3-compatible server for tests: moto's server mode, one process per session, a fresh
bucket per test."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import httpx

from tests.servers import free_port, spawn

REGION = "us-east-1"
S3_XML = "{http://s3.amazonaws.com/doc/2006-03-01/}"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class S3Server:
    """``python -m moto.server`` on a free loopback port."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, log_path: Path, timeout: float = 30) -> S3Server:
        port = free_port()
        with log_path.open("ab") as log:
            process = spawn(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = cls(f"http://127.0.0.1:{port}", process, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the S3 emulator exited early:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.endpoint}/", timeout=1).status_code == 200:
                    return server
            time.sleep(0.1)
        server.stop()
        raise RuntimeError(f"the S3 emulator did not start:\n{log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def new_bucket(self) -> Bucket:
        """A new, empty bucket (the emulator takes unsigned requests)."""
        name = f"vidgate-{secrets.token_hex(6)}"
        response = httpx.put(f"{self.endpoint}/{name}", timeout=10)
        response.raise_for_status()
        return Bucket(self, name)


@dataclass(frozen=True)
class Bucket:
    server: S3Server
    name: str

    def url(self, prefix: str = "videos") -> str:
        return f"s3://{self.name}/{prefix}"

    def env(self, prefix: str = "videos") -> dict[str, str]:
        """What ``vidgate`` needs in its environment to keep its videos here."""
        return {
            "VIDGATE_STORAGE_URL": self.url(prefix),
            "AWS_ENDPOINT_URL": self.server.endpoint,
            "AWS_REGION": REGION,
            **CREDENTIALS,
        }

    def keys(self) -> list[str]:
        """Every key in the bucket, read from the emulator's listing."""
        response = httpx.get(f"{self.server.endpoint}/{self.name}", timeout=10)
        response.raise_for_status()
        listing = ElementTree.fromstring(response.content)
        return sorted(key.text or "" for key in listing.iter(f"{S3_XML}Key"))
