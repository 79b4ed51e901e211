"""``vidgate serve`` with its database out of reach says so in a line and exits, instead of
a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.servers import VIDGATE, free_port


def test_serve_without_its_database_says_what_is_wrong(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/vidgate"  # nothing listens
    result = subprocess.run(
        [*VIDGATE, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VIDGATE_DATABASE_URL": url},
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the database is unavailable: it cannot be reached"), last
    assert last.endswith("check database_url, then try again"), last
    assert "Traceback" not in result.stderr
