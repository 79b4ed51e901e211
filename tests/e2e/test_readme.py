"""The README's examples are executed: its Python blocks against a live server, and its
provider configuration blocks (only ``base_url`` swapped for an emulator's) end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api_helpers import wait_terminal
from tests.providers import all_cases, emulators_running, provider_env
from tests.servers import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run(live_server: LiveServer, tmp_path: Path) -> None:
    examples = blocks("python")
    assert len(examples) >= 2
    env = {
        **os.environ,
        "VIDGATE_BASE_URL": live_server.base_url,
        "VIDGATE_API_KEY": live_server.api_key,
        "PYTHONWARNINGS": "error",
    }
    for number, code in enumerate(examples, 1):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"README python block {number}:\n{code}\n{result.stderr}"
    assert (tmp_path / "fox.mp4").stat().st_size > 1000
    assert "failed: The video could not be generated" in result.stdout


def test_readme_provider_configs_work_end_to_end(tmp_path: Path, png_data_url: str) -> None:
    configs = [b for b in blocks("toml") if b.startswith("[providers.")]
    names = [re.match(r"\[providers\.(\w+)\]", b).group(1) for b in configs]  # type: ignore[union-attr]
    assert sorted(names) == sorted(c.name for c in all_cases())
    with emulators_running(all_cases()) as cases:
        by_name = {c.name: c for c in cases}
        text = "[limits]\nsubmits_per_minute = 1000\n\n" + "\n".join(
            re.sub(r'base_url = "[^"]+"', f'base_url = "{by_name[n].base_url}"', b)
            for n, b in zip(names, configs, strict=True)
        )
        server = LiveServer(tmp_path / "data", text, env=provider_env(cases))
        server.api_key = server.create_key("readme")
        server.start()
        try:
            catalog = httpx.get(f"{server.base_url}/api/v1/video-models").json()["data"]
            models = {m["id"]: m for m in catalog if not m["id"].startswith("testcard")}
            assert len(models) == len(configs)
            runs = {}
            for slug, model in models.items():
                body = {"model": slug, "prompt": "a lighthouse in a storm", "duration": 5}
                if not model["capabilities"]["text_to_video"]:
                    body["imageDataUrl"] = png_data_url
                response = httpx.post(
                    f"{server.base_url}/api/generate-video", json=body, headers=server.headers()
                )
                assert response.status_code == 202, response.text
                runs[response.json()["runId"]] = slug
            started = time.monotonic()
            for run_id, slug in runs.items():
                final = wait_terminal(server, run_id, timeout=120, model=slug)
                assert final["status"] == "COMPLETED", (slug, final)
                assert httpx.get(final["output"]["video"]["url"]).status_code == 200
            assert time.monotonic() - started < 120
        finally:
            server.stop()
    for case in cases:
        assert case.state.submits == 1, case.name
