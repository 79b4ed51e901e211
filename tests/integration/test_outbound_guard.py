"""Outbound requests to URLs someone else chose connect only to public addresses, and to
the very address that was checked (DNS rebinding), with real loopback servers and a
resolver the test controls: the webhook sender (on SQLite and PostgreSQL), ``imageUrl``
fetches, and provider output downloads outside the provider's origin."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adapter_helpers import poll_until_terminal, read_all
from tests.emulators.harness import LoopbackServer
from tests.emulators.nanogpt import NanoGPTEmulator
from vidgate.backends.base import GenerationFailed, ProviderSettings
from vidgate.backends.nanogpt import build as build_nanogpt
from vidgate.backends.testcard import TestcardBackend
from vidgate.config import ServerSettings, WebhookSettings
from vidgate.netguard import Address, GuardedTransport, UnsafeTarget, check_public
from vidgate.runs.request import GenerationRequest
from vidgate.runs.status import Status
from vidgate.runs.webhooks import DEFAULT_EVENTS, encode_events
from vidgate.storage.local import LocalStorage
from vidgate.store.records import NewRun
from vidgate.store.sql import SQLStore
from vidgate.worker.provider_http import provider_client
from vidgate.worker.webhooks import WebhookSender


class Resolver:
    """A DNS the test controls: each name answers its scripted addresses in turn (the last
    one for ever after); every question is recorded."""

    def __init__(self, **answers: list[list[str]]) -> None:
        self.answers = {name.replace("_", "-"): list(steps) for name, steps in answers.items()}
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        steps = self.answers.get(host)
        if not steps:
            raise OSError(f"{host}: no such name")
        return steps.pop(0) if len(steps) > 1 else steps[0]


class Recorder(ThreadingHTTPServer):
    """An HTTP server on one loopback address that answers 200 and notes each Host header."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.hosts: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections open

            def _answer(self) -> None:
                recorder.hosts.append(self.headers.get("host", ""))
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__((host, port), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def outside_and_inside() -> Iterator[tuple[Recorder, Recorder]]:
    """One port on two loopback addresses: 127.0.0.1 plays a public host, 127.0.0.2 one
    inside the network."""
    outside = Recorder("127.0.0.1")
    inside = Recorder("127.0.0.2", outside.port)
    try:
        yield outside, inside
    finally:
        outside.close()
        inside.close()


def _only_outside(address: Address) -> bool:
    return address == ipaddress.ip_address("127.0.0.1")


async def test_a_name_is_resolved_once_and_its_checked_address_connected(
    outside_and_inside: tuple[Recorder, Recorder],
) -> None:
    outside, inside = outside_and_inside
    dns = Resolver(rebind_test=[["127.0.0.1"], ["127.0.0.2"]])
    url = f"http://rebind-test:{outside.port}/hook"
    transport = GuardedTransport(resolve=dns, permit=_only_outside)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.post(url, content=b"{}")).status_code == 200
        assert (await client.post(url, content=b"{}")).status_code == 200  # same connection
    assert dns.asked == ["rebind-test"]  # no second look-up that could answer otherwise
    assert outside.hosts == [f"rebind-test:{outside.port}"] * 2  # the name is kept
    # The name now resolves inside: a new connection is refused before anything is sent.
    async with httpx.AsyncClient(transport=GuardedTransport(resolve=dns)) as client:
        with pytest.raises(UnsafeTarget, match=r"points to 127\.0\.0\.2"):
            await client.post(url, content=b"{}")
    assert inside.hosts == []


async def test_tls_to_the_checked_address_keeps_the_name(tmp_path: Path) -> None:
    """Connected by address, the TLS server name and the certificate check use the name."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=pinned-test"
    name = "subjectAltName=DNS:pinned-test"
    subprocess.run(
        [*make.split(), "-addext", name, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, context: names.append(name)
    server = Recorder("127.0.0.1")
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    dns = Resolver(pinned_test=[["127.0.0.1"]], other_test=[["127.0.0.1"]])
    client_tls = ssl.create_default_context(cafile=str(cert))
    transport = GuardedTransport(resolve=dns, permit=_only_outside, verify=client_tls)
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            answer = await client.get(f"https://pinned-test:{server.port}/")
            assert answer.status_code == 200
            with pytest.raises(httpx.ConnectError, match="not valid for 'other-test'"):
                await client.get(f"https://other-test:{server.port}/")
    finally:
        server.close()
    assert names[0] == "pinned-test" and server.hosts == [f"pinned-test:{server.port}"]


async def test_every_address_of_a_name_must_be_public() -> None:
    dns = Resolver(mixed_test=[["93.184.215.14", "10.0.0.7"]])
    with pytest.raises(UnsafeTarget, match=r"points to 10\.0\.0\.7"):
        await check_public("https://mixed-test/a.png", resolve=dns)
    async with httpx.AsyncClient(transport=GuardedTransport(resolve=dns)) as client:
        with pytest.raises(UnsafeTarget, match=r"points to 10\.0\.0\.7"):
            await client.get("https://mixed-test/a.png")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SQLStore]:
    opened = await SQLStore.open(database_url)
    yield opened
    await opened.close()


async def test_a_webhook_host_that_rebinds_inside_is_refused_at_delivery(
    store: SQLStore, tmp_path: Path, outside_and_inside: tuple[Recorder, Recorder]
) -> None:
    """The submit's check saw a public address; at delivery the name points inside."""
    outside, inside = outside_and_inside
    dns = Resolver(hooks_test=[["127.0.0.2"]])
    key, _ = await store.create_key("hooks")
    url = f"http://hooks-test:{inside.port}/hook"
    run, _ = await store.submit(
        NewRun(
            id="vid_rebind" + str(time.time_ns()),
            api_key_id=key.id,
            model="testcard-video",
            backend="testcard",
            request={"model": "testcard-video", "prompt": "p"},
            cost=0.0,
            available_at=time.time(),
            webhook_url=url,
            webhook_events=encode_events(DEFAULT_EVENTS),
        ),
        idempotency_ttl_s=60,
    )
    await store.transition(run.id, Status.IN_PROGRESS)
    await store.transition(run.id, Status.FAILED, error="for the webhook")
    sender = WebhookSender(
        store,
        LocalStorage(tmp_path / "files", b"s" * 32),
        WebhookSettings(timeout_s=2),
        ServerSettings(),
        3600,
        "sender-1",
        resolve=dns,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        for _ in range(100):
            deliveries = await store.deliveries_of(run.id)
            if deliveries and deliveries[0].log:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    [attempt] = deliveries[0].log
    assert attempt["error"].startswith("refused: the webhook URL points to 127.0.0.2"), attempt
    assert deliveries[0].status == "failed"  # refused for good, not retried
    assert dns.asked == ["hooks-test"] and inside.hosts == [] and outside.hosts == []


async def test_an_image_url_whose_name_resolves_inside_is_not_fetched(
    tmp_path: Path, outside_and_inside: tuple[Recorder, Recorder]
) -> None:
    outside, _ = outside_and_inside
    dns = Resolver(images_test=[["127.0.0.1"]])
    request = GenerationRequest(
        model="testcard-image-video", image_url=f"http://images-test:{outside.port}/a.png"
    )

    async def progress(_: float) -> None:
        pass

    with pytest.raises(GenerationFailed, match=r"the URL points to 127\.0\.0\.1"):
        await TestcardBackend(resolve=dns).generate(request, {"mode": "image"}, tmp_path, progress)
    assert dns.asked == ["images-test"] and outside.hosts == []


async def test_a_provider_output_outside_its_origin_must_be_public() -> None:
    """The key goes to the provider's origin only; an output URL elsewhere that resolves
    inside the network is refused (its own origin, on loopback here, is trusted)."""
    emulator = NanoGPTEmulator(api_key="sk-guard", queue_s=0.02, run_s=0.05)
    request = GenerationRequest(model="nano", prompt="a fox")
    with LoopbackServer(emulator.app) as provider, LoopbackServer(emulator.app) as files:
        dns = Resolver(cdn_test=[["127.0.0.1"]])
        emulator.files_base_url = f"http://cdn-test:{files.port}"
        settings = ProviderSettings(name="nanogpt", base_url=provider.base_url, api_key="sk-guard")
        async with provider_client(4, [provider.base_url], resolve=dns) as http:
            backend = build_nanogpt(http, settings)
            job = await backend.submit(request, "veo2-video", {})
            done = (await poll_until_terminal(backend, job))[-1]
            with pytest.raises(GenerationFailed, match=r"refused: the URL points to 127\.0\.0\.1"):
                await read_all(backend, job, done.output_urls[0])
            emulator.files_base_url = None  # the provider's own origin: fetched
            job = await backend.submit(request, "veo2-video", {})
            done = (await poll_until_terminal(backend, job))[-1]
            assert len(await read_all(backend, job, done.output_urls[0])) > 1000
    assert dns.asked == ["cdn-test"]
