"""Running wrk and reading what it measured.

Every load is bounded in time (``-d``) and aimed at 127.0.0.1. The Lua scripts in ``lua/``
end with ``done()`` from ``lua/report.lua``, which prints one line ``WRK_JSON {...}``:
requests, duration, latency percentiles and wrk's error counts. A run with any answer of
status 400 or more, or any socket error, is *broken*: it gives no figure.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).parent / "lua"
MARKER = "WRK_JSON "


class WrkError(RuntimeError):
    """wrk did not run, or printed no report."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_errors: int
    """Answers with status 400 or more (wrk counts these; 3xx are not errors)."""
    socket_errors: int
    """connect, read, write and timeout errors together."""

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def broken(self) -> str | None:
        """Why this run gives no figure, or None if it is a figure."""
        if self.status_errors or self.socket_errors:
            return (
                f"broken: {self.status_errors} non-2xx/3xx answers, "
                f"{self.socket_errors} socket errors in {self.requests} requests"
            )
        if self.requests == 0:
            return "broken: no request completed"
        return None

    def latency(self) -> str:
        return f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, max {self.max_ms:.1f} ms"


def parse(output: str) -> WrkResult:
    """The report of ``lua/report.lua`` in wrk's standard output."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            break
    else:
        raise WrkError(f"wrk printed no {MARKER.strip()} line:\n{output[-2000:]}")
    errors = data["errors"]
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        status_errors=int(errors["status"]),
        socket_errors=sum(int(errors[k]) for k in ("connect", "read", "write", "timeout")),
    )


def command(
    url: str,
    *,
    connections: int,
    seconds: float,
    script: str = "plain.lua",
    script_args: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> list[str]:
    """A wrk command line: one thread, ``connections`` keep-alive connections."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"loads are aimed at 127.0.0.1 only, not {url}")
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += ["-s", str(LUA / script), url]
    if script_args:
        cmd += ["--", *script_args]
    return cmd


def run(cmd: Sequence[str], seconds: float) -> WrkResult:
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WrkError(f"{shlex.join(cmd)}: {exc}") from exc
    if done.returncode != 0:
        raise WrkError(f"{shlex.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return parse(done.stdout)


def version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0].strip()
