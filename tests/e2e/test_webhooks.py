"""Webhooks across processes: a delivery outlives a SIGKILL of the server, a worker whose
config forbids private targets refuses them at delivery time, and the key commands."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.api_helpers import SMALL, assert_submit_error, submit, submit_ok, wait_terminal
from tests.integration.test_webhooks import HOOKS_CONFIG, settled, wait_log
from tests.servers import VIDGATE, LiveServer, run_cli, spawn
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def test_a_sigkill_between_attempts_loses_no_delivery(
    server_factory: Callable[..., LiveServer], receiver: WebhookReceiver
) -> None:
    # The first retry waits ~3 s: time to kill the server between the two attempts.
    server = server_factory(HOOKS_CONFIG.replace("first_retry_s = 0.2", "first_retry_s = 3"))
    receiver.script("/hook", [503])
    run_id = submit_ok(server, "survives a crash", webhookUrl=receiver.url("/hook"))
    wait_log(server, run_id, lambda d: len(d) == 1 and d[0]["attempts"] == 1)
    server.kill()
    assert len(receiver.received("/hook")) == 1
    server.start()
    got = receiver.wait_for(lambda r: any(x.accepted for x in r), path="/hook", timeout=60)
    [delivery] = wait_log(server, run_id, settled)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    assert [a["statusCode"] for a in delivery["log"]] == [503, 200]
    time.sleep(1.5)
    got = receiver.received("/hook")
    assert [g.answer for g in got] == [503, 200], "exactly one accepted delivery"
    assert got[0].webhook_id == got[1].webhook_id == delivery["id"]
    assert got[0].body == got[1].body


def test_a_worker_refuses_private_targets_at_delivery(
    server_factory: Callable[..., LiveServer], receiver: WebhookReceiver, tmp_path: Path
) -> None:
    # The API accepts loopback targets; the worker's configuration forbids them.
    api = server_factory(HOOKS_CONFIG, ("--no-worker",))
    strict = tmp_path / "worker.toml"
    strict.write_text(HOOKS_CONFIG.replace("allow_private_hosts = true", ""))
    worker = spawn(
        [*VIDGATE, "worker", "--data-dir", str(api.data_dir), "--config", str(strict)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run_id = submit_ok(api, "refused at delivery", webhookUrl=receiver.url("/inside"))
        assert wait_terminal(api, run_id)["status"] == "COMPLETED"
        [delivery] = wait_log(api, run_id, settled)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert delivery["status"] == "failed" and delivery["attempts"] == 1
    [attempt] = delivery["log"]
    assert attempt["statusCode"] is None
    assert attempt["error"].startswith("refused: the webhook URL points to 127.0.0.1")
    assert "not a public address" in attempt["error"]
    assert delivery["lastError"] == attempt["error"]
    assert receiver.received() == []


def test_keys_webhook_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_cli(["keys", "create", "plain"], data_dir=data)
    secret = run_cli(["keys", "webhook-secret", "plain"], data_dir=data).stdout.strip()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert run_cli(["keys", "webhook-secret", "plain"], data_dir=data).stdout.strip() == secret

    config = tmp_path / "overlap.toml"
    config.write_text("[webhooks]\nsecret_overlap_s = 600\n")
    rotated = run_cli(["keys", "webhook-secret", "plain", "--rotate"], data_dir=data, config=config)
    new = rotated.stdout.strip()
    assert new.startswith("whsec_") and new != secret
    assert "600 s" in rotated.stderr and "old" in rotated.stderr
    assert run_cli(["keys", "webhook-secret", "plain"], data_dir=data).stdout.strip() == new

    missing = run_cli(["keys", "webhook-secret", "nobody"], data_dir=data, check=False)
    assert missing.returncode == 1 and "no API key named 'nobody'" in missing.stderr

    url = "https://hooks.example.com/vidgate"
    created = run_cli(["keys", "create", "hooked", "--webhook-url", url], data_dir=data)
    assert created.stdout.strip().splitlines()[-1].startswith("vg_")
    assert run_cli(["keys", "webhook-url", "hooked"], data_dir=data).stdout.strip() == url

    other = "https://other.example.com/hook"
    changed = run_cli(["keys", "webhook-url", "plain", other], data_dir=data)
    assert other in changed.stdout
    assert run_cli(["keys", "webhook-url", "plain"], data_dir=data).stdout.strip() == other
    cleared = run_cli(["keys", "webhook-url", "plain", "--clear"], data_dir=data)
    assert "Removed" in cleared.stdout
    shown = run_cli(["keys", "webhook-url", "plain"], data_dir=data)
    assert shown.stdout == "" and "no default webhook URL" in shown.stderr

    for bad in ("ftp://example.com/x", "example.com/hook", "http://"):
        refused = run_cli(["keys", "webhook-url", "plain", bad], data_dir=data, check=False)
        assert refused.returncode == 2, bad
        assert "http:// or https://" in refused.stderr, refused.stderr
    refused = run_cli(
        ["keys", "create", "badurl", "--webhook-url", "mailto:a@b.c"], data_dir=data, check=False
    )
    assert refused.returncode == 2 and "http:// or https://" in refused.stderr
    both = run_cli(["keys", "webhook-url", "plain", other, "--clear"], data_dir=data, check=False)
    assert both.returncode == 2 and "not both" in both.stderr
    gone = run_cli(["keys", "webhook-url", "nobody", other], data_dir=data, check=False)
    assert gone.returncode == 1 and "no API key named" in gone.stderr

    inside = run_cli(["keys", "webhook-url", "plain", "http://127.0.0.1:9/hook"], data_dir=data)
    assert "warning" in inside.stderr and "allow_private_hosts" in inside.stderr
    listed = run_cli(["keys", "list"], data_dir=data).stdout
    assert "plain" in listed and "hooked" in listed and "badurl" not in listed


def test_a_key_default_url_inside_the_network_is_refused_at_submit(
    server_factory: Callable[..., LiveServer],
) -> None:
    server = server_factory()  # private targets not allowed
    run_cli(
        ["keys", "webhook-url", "test", "http://127.0.0.1:9/hook"],
        data_dir=server.data_dir,
        config=server.config,
    )
    response = submit(server, {"model": "testcard-video", "prompt": "x", **SMALL})
    message = assert_submit_error(response, 400, "invalid_request_error")
    assert "points to 127.0.0.1" in message and "allow_private_hosts = true" in message
