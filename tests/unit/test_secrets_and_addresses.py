"""Which addresses count as public, how a URL is checked (with a resolver the test holds),
and how secrets are kept out of texts and log lines. No I/O."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from vidgate import logs
from vidgate.backends._answers import scrub
from vidgate.config import load_settings
from vidgate.netguard import Unresolved, UnsafeTarget, check_public, is_public


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.100.100.200", False),  # shared address space (a metadata address too)
        ("0.0.0.0", False),
        ("::1", False),
        ("fd00:ec2::254", False),  # a metadata address over IPv6
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:93.184.215.14", True),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::5db8:d70e", True),  # NAT64 of 93.184.215.14
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated)
        ("::93.184.215.14", True),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:5db8:d70e::1", True),  # 6to4 of 93.184.215.14
        ("64:ff9b:1::7f00:1", False),  # local-use NAT64 (RFC 8215)
        ("fec0::1", False),  # site-local
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def _never(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} should not have been resolved")


async def test_urls_are_checked_without_resolving_written_addresses() -> None:
    with pytest.raises(UnsafeTarget, match=r"points to 10\.9\.8\.7"):
        await check_public("http://10.9.8.7:8080/a", resolve=_never)
    with pytest.raises(UnsafeTarget, match="not an http or https URL"):
        await check_public("file:///etc/passwd", resolve=_never)
    with pytest.raises(UnsafeTarget, match="has no host name"):
        await check_public("http:///a", resolve=_never)
    await check_public("https://93.184.215.14/a.png", resolve=_never)


async def test_a_name_must_resolve_in_time() -> None:
    async def nothing(host: str, port: int) -> list[str]:
        return []

    async def slow(host: str, port: int) -> list[str]:
        import asyncio

        await asyncio.sleep(5)
        return ["93.184.215.14"]

    with pytest.raises(Unresolved, match=r"does not resolve \(x\.test\)"):
        await check_public("http://x.test/", resolve=nothing)
    with pytest.raises(Unresolved, match=r"did not resolve within 0\.05 s \(x\.test\)"):
        await check_public("http://x.test/", resolve=slow, timeout_s=0.05)


KEY = "sk-live-Secret/+=42"
ODD = "sk-odd\x01Secret\u00e9"  # characters a header refuses, and repr escapes


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (KEY, f"Bearer {KEY}"),
        (KEY, "https://api.test/?key=sk-live-Secret%2F%2B%3D42"),
        (KEY, repr((KEY + "\n").encode())),
        (ODD, f"Illegal header value {ODD.encode()!r}"),  # as h11 quotes a header it refuses
        (ODD, f"bad key {ODD!r}"),
        (ODD + "\n", f"bad key {ODD}"),  # a key read with its newline
    ],
)
def test_every_form_of_a_key_is_scrubbed(key: str, text: str) -> None:
    scrubbed = scrub(text, key)
    assert "Secret" not in scrubbed and "[redacted]" in scrubbed


def test_provider_keys_come_without_surrounding_whitespace() -> None:
    settings = load_settings(
        overrides={"providers": {"fal": {"base_url": "https://fal.test", "api_key_env": "K"}}},
        env={"K": f"  {KEY}\n"},
    )
    assert settings.provider_api_key("fal", {"K": f"  {KEY}\n"}) == KEY
    assert settings.provider_api_keys({"K": "\n"}) == []


def test_no_log_line_shows_a_configured_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    factory = logging.getLogRecordFactory()
    logs.configure("INFO", secrets=[KEY + "\n", ""])  # as read, with its newline
    try:
        log = logging.getLogger("vidgate.test")
        logs.event(log, "provider.poll_failed", error=f"HTTP 401: bad key {KEY}")
        log.info("access %s %s", "GET", "/healthz")  # left as it was made
        try:
            raise RuntimeError(f"Illegal header value {(KEY + chr(10)).encode()!r}")
        except RuntimeError:
            log.exception("poller.operation_crashed run_id=%s", "vid_1")
    finally:
        logging.setLogRecordFactory(factory)
    text = caplog.text
    assert "Secret" not in text, text
    assert text.count("[redacted]") == 2  # the event, the exception's text
    assert caplog.records[1].args == ("GET", "/healthz")
