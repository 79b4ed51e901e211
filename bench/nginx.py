"""nginx as a baseline: one process serving a static file, started in the foreground from a
temporary directory with a generated configuration (works as root and as any other user)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bench.servers import free_port, wait_until_ready


def find() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        raise RuntimeError("nginx is missing: run scripts/bench-tools.sh (make bench does)")
    return found


def config(prefix: Path, port: int) -> str:
    """One process (no master, no daemon), no access log, keep-alive without a request
    limit (as the Python servers), every path it writes inside ``prefix``."""
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/html;
        default_type application/json;
    }}
}}
"""


@contextlib.contextmanager
def serve_file(prefix: Path, path: str, body: bytes) -> Iterator[tuple[str, list[str]]]:
    """Serve ``body`` at ``path`` (any query string is ignored); yields the base URL and the
    command line."""
    target = prefix / "html" / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(config(prefix, port))
    cmd = [find(), "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    log = (prefix / "nginx.out").open("wb")
    process = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base + path, prefix / "error.log")
        yield base, cmd
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def version() -> str:
    done = subprocess.run([find(), "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().split(": ", 1)[-1]
