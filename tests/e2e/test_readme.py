"""The README's examples are executed: its Python blocks against a live server, its webhook
receiver against real deliveries, and its provider configuration blocks (only ``base_url``
swapped for an emulator's) end to end."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.api_helpers import submit_ok, wait_terminal
from tests.emulators.harness import Fault
from tests.providers import all_cases, emulators_running, provider_env
from tests.servers import TEST_CONFIG, LiveServer, free_port, run_cli, spawn
from vidgate.store.sql import SQLStore

README = Path(__file__).resolve().parents[2] / "README.md"


RECEIVER = "# webhook_receiver.py\n"
"""The first line of the README's webhook receiver: a server, run by its own test."""


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run(live_server: LiveServer, tmp_path: Path) -> None:
    examples = [b for b in blocks("python") if not b.startswith(RECEIVER)]
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


def test_readme_webhook_receiver_accepts_verified_deliveries(
    server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    [code] = [b for b in blocks("python") if b.startswith(RECEIVER)]
    server = server_factory(TEST_CONFIG + "\n[webhooks]\nallow_private_hosts = true\n")
    secret = run_cli(
        ["keys", "webhook-secret", "test"], data_dir=server.data_dir, config=server.config
    ).stdout.strip()
    port = free_port()
    output = tmp_path / "receiver.out"
    env = {**os.environ, "PORT": str(port), "VIDGATE_WEBHOOK_SECRET": secret}
    with output.open("wb") as out:
        receiver = spawn([sys.executable, "-c", code], env=env, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}/hooks/vidgate"
        deadline = time.monotonic() + 30
        while True:  # until it listens
            assert receiver.poll() is None, output.read_text()
            try:
                forged = httpx.post(url, content=b"{}", headers={"webhook-id": "msg_x"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.1)
        assert forged.status_code == 400
        run_id = submit_ok(server, "told by webhook", webhookUrl=url)
        assert wait_terminal(server, run_id)["status"] == "COMPLETED"
        deadline = time.monotonic() + 30
        while f"video.completed {run_id} http" not in output.read_text():
            assert receiver.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.1)
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    assert "rejected:" in output.read_text()  # the forged one
    deliveries = httpx.get(
        f"{server.base_url}/api/generate-video/webhooks",
        params={"runId": run_id},
        headers=server.headers(),
    ).json()["deliveries"]
    assert [(d["type"], d["status"], d["lastStatusCode"]) for d in deliveries] == [
        ("video.completed", "delivered", 204)
    ]


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
                allowed = model["supported_parameters"]["durations"]  # the README's lists
                duration = 5 if 5 in allowed else allowed[0]
                body = {"model": slug, "prompt": "a lighthouse in a storm", "duration": duration}
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


ROUTING = "# Routing:"
"""The first line of the README's routing example (a model with three routes)."""


async def narrow_key(database: Path) -> str:
    """A key restricted to fal and OpenRouter, made in this process (the ``keys create
    --providers`` command is tested in tests/integration/test_routing.py)."""
    store = await SQLStore.open(f"sqlite:///{database.resolve()}")
    try:
        _, secret = await store.create_key("narrow", providers="fal,openrouter")
    finally:
        await store.close()
    return secret


def test_readme_routing_example_fails_over_and_takes_preferences(tmp_path: Path) -> None:
    """The example as written, each provider's base_url swapped for its emulator (and its
    polls made quick), with a key restricted to fal and OpenRouter: a refusal by fal hands
    the run to OpenRouter (Replicate is not the key's); preferences are honoured, or refused
    with what to change."""
    [block] = [b for b in blocks("toml") if b.startswith(ROUTING)]
    cases = [c for c in all_cases() if c.name in ("fal", "replicate", "openrouter")]
    with emulators_running(cases) as running:
        by_name = {c.name: c for c in running}
        for case in running:
            case.state.queue_s, case.state.run_s = 0.05, 0.05

        def local(match: re.Match[str]) -> str:
            return (
                f'[providers.{match[1]}]\nbase_url = "{by_name[match[1]].base_url}"\n'
                "poll_interval_s = 0.1\noptions = { min_poll_interval_s = 0.1 }"
            )

        text = re.sub(r'\[providers\.(\w+)\]\nbase_url = "[^"]+"', local, block)
        server = LiveServer(tmp_path / "data", text, env=provider_env(running))
        server.api_key = asyncio.run(narrow_key(server.data_dir / "vidgate.db"))
        server.start()
        try:
            catalog = httpx.get(f"{server.base_url}/api/v1/video-models").json()["data"]
            assert [m["id"] for m in catalog].count("wan-2.2") == 1

            def run(**body: object) -> httpx.Response:
                return httpx.post(
                    f"{server.base_url}/api/generate-video",
                    json={"model": "wan-2.2", "prompt": "a heron", "duration": 5, **body},
                    headers=server.headers(),
                )

            def provider_of(response: httpx.Response) -> object:
                assert response.status_code == 202, response.text
                final = wait_terminal(server, response.json()["runId"], model="wan-2.2")
                assert final["status"] == "COMPLETED", final
                return final["provider"], final["cost"]

            by_name["fal"].state.faults.push("submit", Fault(status=429))
            assert provider_of(run()) == ("openrouter", 0.25)  # 5 s at $0.05
            ready = httpx.get(f"{server.base_url}/readyz").json()
            assert ready["routes"] == {"wan-2.2/fal": {"state": "closed", "recentFailures": 1}}
            assert provider_of(run(provider={"order": ["openrouter"]})) == ("openrouter", 0.25)
            assert provider_of(run(provider={"ignore": ["openrouter"]})) == ("fal", 0.4)
            unknown = run(provider={"order": ["runway"]})
            assert unknown.status_code == 400
            assert "'provider.order' names 'runway', not a provider" in unknown.text
            refused = run(provider={"only": ["replicate"]})
            assert refused.status_code == 403, refused.text
            assert "this API key may use only the providers fal, openrouter" in refused.text
            assert "routes" not in httpx.get(f"{server.base_url}/readyz").json()  # fal took one
        finally:
            server.stop()
    assert [by_name[n].state.submits for n in ("fal", "replicate", "openrouter")] == [1, 0, 2]
