"""Security, against a real ``vidgate serve`` on SQLite and on PostgreSQL: URLs that point
inside the network are refused at submit, slow clients are cut off while others are served,
and a provider key never shows in a log line, a run's error, a status answer or a webhook.

The provider is the NanoGPT emulator on loopback, scripted to echo our key back in its
error answers; the key comes from the environment with a trailing newline, as a key
copied from a file does (an HTTP library refusing such a header quotes it in its error).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api_helpers import SMALL, assert_submit_error, submit, wait_terminal
from tests.emulators.harness import Fault, LoopbackServer
from tests.emulators.nanogpt import NanoGPTEmulator
from tests.servers import LiveServer
from tests.webhook_receiver import WebhookReceiver
from vidgate.store.sql import SQLStore

pytestmark = pytest.mark.timeout(120)

KEY = "sk-nano-LEAKCHECK-5f2b9c-77d1"
KEY_ENV = "VIDGATE_TEST_NANO_KEY"
MODEL = "nano-video"
CONFIG = """
[limits]
submits_per_minute = 100000

[server]
header_timeout_s = 1
body_timeout_s = 1

[worker]
concurrency = 1
heartbeat_s = 0.2
idle_poll_s = 0.05

[storage]
copy_attempts = 2

[webhooks]
allow_private_hosts = true
timeout_s = 2

[providers.nanogpt]
base_url = "{base_url}"
api_key_env = "{key_env}"
poll_interval_s = 0.1
timeout_s = 2
options = {{ min_poll_interval_s = 0.1 }}

[models."{model}"]
backend = "nanogpt"
provider_model = "veo2-video"
deadline_s = 60
"""


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[NanoGPTEmulator, str]]:
    """The NanoGPT emulator, and its URL."""
    emulator = NanoGPTEmulator(api_key=KEY, queue_s=0.05, run_s=0.1)
    with LoopbackServer(emulator.app) as server:
        yield emulator, server.base_url


@pytest.fixture
def emulator(served: tuple[NanoGPTEmulator, str]) -> NanoGPTEmulator:
    served[0].reset()
    return served[0]


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    served: tuple[NanoGPTEmulator, str],
) -> Iterator[LiveServer]:
    env = {KEY_ENV: KEY + "\n"}
    if request.param == "postgresql":
        env["VIDGATE_DATABASE_URL"] = request.getfixturevalue("module_postgres_url")
    config = CONFIG.format(base_url=served[1], key_env=KEY_ENV, model=MODEL)
    live = LiveServer(tmp_path_factory.mktemp(request.param) / "data", config, env=env)
    database = env.get("VIDGATE_DATABASE_URL") or f"sqlite:///{live.data_dir / 'vidgate.db'}"
    live.api_key = asyncio.run(_new_key(database))
    live.start()
    try:
        yield live
    finally:
        live.stop()


async def _new_key(database_url: str) -> str:
    store = await SQLStore.open(database_url)
    try:
        return (await store.create_key("test"))[1]
    finally:
        await store.close()


INSIDE = (
    "http://127.0.0.1/cat.png",
    "http://localhost:8080/cat.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/cat.png",
    "http://[::1]/cat.png",
    "http://[::ffff:127.0.0.1]/cat.png",
    "http://0.0.0.0/cat.png",
)


def test_image_urls_inside_the_network_are_refused_at_submit(server: LiveServer) -> None:
    for url in INSIDE:
        body = {"model": "testcard-image-video", "prompt": "pan", "imageUrl": url, **SMALL}
        message = assert_submit_error(submit(server, body), 400, "invalid_request_error")
        assert message.startswith("the imageUrl points to "), (url, message)
        assert "not a public address" in message and "allow_private_hosts = true" in message


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it is still open."""
    sock.settimeout(0.05)
    got = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
    return None


def test_slow_clients_are_cut_off_while_others_are_served(server: LiveServer) -> None:
    address = ("127.0.0.1", server.port)
    idle = socket.create_connection(address)
    trickle = socket.create_connection(address)
    slow_body = socket.create_connection(address)
    opened = time.monotonic()
    head = (
        f"POST /api/generate-video HTTP/1.1\r\nHost: x\r\nx-api-key: {server.api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    slow_body.sendall(head.encode() + b'{"model": ')
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100
    trickle_closed_at = None
    slowest_poll = 0.0
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        for byte in request:  # one byte every 50 ms, as long as the server listens
            try:
                trickle.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                trickle_closed_at = time.monotonic()
                break
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200  # others are served meanwhile
            slowest_poll = max(slowest_poll, time.monotonic() - started)
            time.sleep(max(0.0, 0.05 - (time.monotonic() - started)))
        else:
            # The last byte may have been taken; the server must still close the socket.
            if _closed_within(trickle, 3) is not None:
                trickle_closed_at = time.monotonic()
    assert trickle_closed_at is not None, "a client sending headers byte by byte was not cut off"
    assert 0.8 <= trickle_closed_at - opened <= 3.5
    assert slowest_poll < 1.0

    assert _closed_within(idle, 3) == b""  # a connection that never sends a byte
    answer = _closed_within(slow_body, 3)
    assert answer is not None, "a body that never finishes was not cut off"
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", answer
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    error = json.loads(payload)["error"]
    assert error["type"] == "timeout_error"
    assert error["message"].startswith("the request body did not arrive within 1 s")
    for sock in (idle, trickle, slow_body):
        sock.close()


def test_a_body_sent_in_time_is_served_on_a_kept_connection(server: LiveServer) -> None:
    """The limits stop slow clients only: a body in a few pieces, and a second request on
    the same connection after a pause shorter than the keep-alive, are served."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        queued = {"model": "testcard-video", "prompt": "sandbox:queue=600", **SMALL}  # no render
        body = json.dumps(queued).encode()
        head = (
            f"POST /api/generate-video HTTP/1.1\r\nHost: x\r\nx-api-key: {server.api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode())
        for i in range(0, len(body), 20):
            time.sleep(0.05)
            sock.sendall(body[i : i + 20])
        sock.settimeout(5)
        assert _response(sock).startswith(b"HTTP/1.1 202 ")
        time.sleep(0.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200 ")


def test_a_client_that_leaves_mid_body_is_no_server_error(server: LiveServer) -> None:
    """A client gone before its body arrived (a load tool stopping, a phone losing signal)
    gets no answer and logs no error, on the fast path (submit) and a route (cancel)."""
    for path in ("/api/generate-video", "/api/generate-video/cancel"):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {server.api_key}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                )
                sock.sendall(head.encode() + b'{"model": ')
                time.sleep(0.2)  # the server waits for the rest of the body
    time.sleep(0.5)
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        assert client.get("/healthz").status_code == 200
    lines = server.log().splitlines()
    assert not [line for line in lines if "request_failed" in line or "Traceback" in line]


def _response(sock: socket.socket) -> bytes:
    """One whole HTTP response (with a Content-Length) read from ``sock``."""
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(65536)
    head, _, body = got.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _provider_run(server: LiveServer, receiver: WebhookReceiver, prompt: str) -> str:
    body = {"model": MODEL, "prompt": prompt, "webhookUrl": receiver.url(f"/{prompt}")}
    response = submit(server, body)
    assert response.status_code == 202, response.text
    return str(response.json()["runId"])


def test_provider_keys_never_show(
    server: LiveServer, emulator: NanoGPTEmulator, receiver: WebhookReceiver
) -> None:
    echo = {"error": {"message": f"x-api-key {KEY} refused", "type": "server_error"}}
    # A run whose polls first meet 5xx answers echoing the key, then go through.
    emulator.faults.push("status", Fault(status=500, body=echo))
    emulator.faults.push("status", Fault(status=502, body=f"<html>{KEY}</html>"))
    done = _provider_run(server, receiver, f"done-{server.data_dir.parent.name}")
    assert wait_terminal(server, done, model=MODEL)["status"] == "COMPLETED"
    # A run the provider refuses (our key, it says), naming the key.
    emulator.faults.push("submit", Fault(status=401, body=echo))
    refused = _provider_run(server, receiver, f"refused-{server.data_dir.parent.name}")
    failed = wait_terminal(server, refused, model=MODEL)
    assert failed["status"] == "FAILED" and "[redacted]" in json.dumps(failed)
    assert emulator.requests["submit"] == 2 and emulator.submits == 1

    texts = [server.log()]
    for run_id in (done, refused):
        for path, params in (
            ("/api/video/status", {"runId": run_id}),
            ("/api/generate-video/status", {"runId": run_id, "modelSlug": MODEL}),
            ("/api/generate-video/webhooks", {"runId": run_id}),
        ):
            answer = httpx.get(
                server.base_url + path, params=params, headers=server.headers(), timeout=10
            )
            assert answer.status_code == 200, answer.text
            texts.append(answer.text)
    hooks = receiver.wait_for(lambda got: len(got) >= 2, path=None, timeout=30)
    texts += [hook.body.decode() for hook in hooks]
    assert texts[0].count("provider.poll_failed") >= 2 and "run.failed" in texts[0]
    for text in texts:
        assert KEY not in text and "LEAKCHECK" not in text, text
