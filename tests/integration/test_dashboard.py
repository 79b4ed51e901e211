"""The dashboard over plain HTTP, on SQLite and PostgreSQL: signing in (refusals, cookie
attributes, the form token, the brake on guessing), sessions (signed, shared by the
processes of one database, ended by revoking the key), escaping of what clients sent, the
runs listing's filters and pages, and the routes' absence from ``/openapi.json``. The
browser test (live updates, the video playing) is ``tests/e2e/test_dashboard_browser.py``."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import serving
from vidgate.config import Settings
from vidgate.server.app import VidgateApp, create_app
from vidgate.store.sql import SQLStore
from vidgate.ui import live, sessions

pytestmark = pytest.mark.timeout(60)
PAGE = 4
"""Runs per page in the listing test (``per_page``)."""
SMALL = {"model": "testcard-video", "resolution": "240p", "duration": 1}


def _settings(database_url: str, tmp_path: Path, **sections: Any) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "database_url": database_url,
            "limits": {"submits_per_minute": 100000},
            **sections,
        }
    )


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[str, SQLStore]]:
    """The API process without a worker (runs stay queued) on SQLite, served on loopback:
    for what does not depend on the database."""
    async for served in _serve(f"sqlite:///{tmp_path / 'vidgate.db'}", tmp_path):
        yield served


@pytest.fixture
async def app_on_each_database(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[str, SQLStore]]:
    """The same on SQLite and on PostgreSQL: for the dashboard's queries."""
    async for served in _serve(database_url, tmp_path):
        yield served


async def _serve(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, SQLStore]]:
    application = create_app(_settings(database_url, tmp_path))
    async with serving(application) as base:
        yield base, _store(application)


def _store(application: VidgateApp) -> SQLStore:
    store: SQLStore = application.state.vidgate.store
    return store


def _cookie(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of the cookie ``name`` that the response sets (its value as
    ``value``; flag attributes as "true")."""
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        if name in parsed:
            morsel = parsed[name]
            found = {k.lower(): "true" if v is True else str(v) for k, v in morsel.items() if v}
            found["value"] = morsel.value
            return found
    raise AssertionError(f"no {name} cookie set: {response.headers.get_list('set-cookie')}")


async def _form_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/ui/login")
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None, page.text
    return match.group(1)


async def _sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    token = await _form_token(client)
    return await client.post("/ui/login", data={"csrf": token, "key": key})


def _alert(response: httpx.Response) -> str:
    """The message a page shows in its alert box, as the reader sees it."""
    match = re.search(r'role="alert"[^>]*>(.*?)</p>', response.text, re.S)
    assert match is not None, response.text
    return html.unescape(match.group(1))


async def test_signing_in_refusals_cookies_and_the_form_token(
    app: tuple[str, SQLStore],
) -> None:
    base, store = app
    _, admin = await store.create_key("ops", admin=True)
    _, plain = await store.create_key("client")
    async with httpx.AsyncClient(base_url=base) as client:
        first = await client.get("/ui")
        assert first.status_code == 303 and first.headers["location"] == "/ui/login"
        login_page = await client.get("/ui/login")
        csrf = _cookie(login_page, sessions.CSRF_COOKIE)
        assert csrf["httponly"] == "true" and csrf["samesite"].lower() == "strict"
        assert csrf["path"] == "/ui" and "secure" not in csrf  # plain http on loopback
        token = await _form_token(client)

        missing = await client.post("/ui/login", data={"key": admin})
        assert missing.status_code == 403 and "security token" in _alert(missing)
        forged = await client.post("/ui/login", data={"key": admin, "csrf": "x" * 43})
        assert forged.status_code == 403
        elsewhere = await client.post(
            "/ui/login",
            data={"key": admin, "csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403 and "evil.example" in _alert(elsewhere)

        wrong = await client.post("/ui/login", data={"key": "vg_nope", "csrf": token})
        assert wrong.status_code == 401 and "not valid" in _alert(wrong)
        assert "--admin" in _alert(wrong)
        not_admin = await client.post("/ui/login", data={"key": plain, "csrf": token})
        assert not_admin.status_code == 403
        assert "'client'" in _alert(not_admin) and "not an admin key" in _alert(not_admin)
        assert "vidgate_session" not in not_admin.headers.get("set-cookie", "")

        signed_in = await client.post("/ui/login", data={"key": admin, "csrf": token})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui"
        cookie = _cookie(signed_in, sessions.SESSION_COOKIE)
        assert cookie["httponly"] == "true" and cookie["samesite"].lower() == "strict"
        assert cookie["path"] == "/ui" and "secure" not in cookie
        assert cookie["max-age"] == str(12 * 3600)
        assert admin not in cookie["value"] and admin[3:] not in cookie["value"]
        listing = await client.get("/ui")
        assert listing.status_code == 200 and "signed in as ops" in listing.text
        for path in ("/ui/providers", "/ui/usage"):
            assert (await client.get(path)).status_code == 200

        refused = await client.post("/ui/logout", data={"csrf": "stale" * 9})
        assert refused.status_code == 403
        assert (await client.get("/ui")).status_code == 200  # still signed in
        out = await client.post("/ui/logout", data={"csrf": token})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert (await client.get("/ui")).status_code == 303


async def test_the_cookies_are_secure_behind_https(app: tuple[str, SQLStore]) -> None:
    """A proxy on loopback that terminates TLS says so (``X-Forwarded-Proto``)."""
    base, store = app
    _, admin = await store.create_key("ops", admin=True)
    https = {"X-Forwarded-Proto": "https"}
    async with httpx.AsyncClient(base_url=base, headers=https) as client:
        page = await client.get("/ui/login")
        assert _cookie(page, sessions.CSRF_COOKIE)["secure"] == "true"
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        client.cookies.set(sessions.CSRF_COOKIE, token.group(1))  # httpx keeps Secure ones off http
        signed_in = await client.post("/ui/login", data={"key": admin, "csrf": token.group(1)})
        assert signed_in.status_code == 303, signed_in.text
        assert _cookie(signed_in, sessions.SESSION_COOKIE)["secure"] == "true"


async def test_failed_sign_ins_are_braked(app: tuple[str, SQLStore]) -> None:
    base, store = app
    _, admin = await store.create_key("ops", admin=True)
    async with httpx.AsyncClient(base_url=base) as client:
        token = await _form_token(client)
        for _ in range(sessions.FAILURES_ALLOWED):
            wrong = await client.post("/ui/login", data={"key": "vg_guess", "csrf": token})
            assert wrong.status_code == 401
        braked = await client.post("/ui/login", data={"key": admin, "csrf": token})
        assert braked.status_code == 429 and "try again in" in _alert(braked)
        assert 1 <= int(braked.headers["retry-after"]) <= sessions.FAILURE_WINDOW_S


async def test_sessions_are_signed_shared_by_processes_and_end_with_the_key(
    database_url: str, tmp_path: Path
) -> None:
    """Two API processes on one database (two apps here): a session made by one is honoured
    by the other, whose secret comes from the database; a tampered cookie or a revoked key
    ends it."""
    one, two = (create_app(_settings(database_url, tmp_path / n)) for n in ("a", "b"))
    async with serving(one) as base_one, serving(two) as base_two:
        secrets = await asyncio.gather(
            *(_store(a).shared_secret(sessions.SECRET_NAME) for a in (one, two))
        )
        assert secrets[0] == secrets[1] and len(secrets[0]) == 32
        _, admin = await _store(one).create_key("ops", admin=True)
        async with httpx.AsyncClient(base_url=base_one) as client:
            assert (await _sign_in(client, admin)).status_code == 303
            session = client.cookies[sessions.SESSION_COOKIE]
        async with httpx.AsyncClient(base_url=base_two) as other:
            other.cookies.set(sessions.SESSION_COOKIE, session, path="/ui")
            assert (await other.get("/ui")).status_code == 200
            payload, _, signature = session.rpartition(".")
            tampered = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
            other.cookies.set(sessions.SESSION_COOKIE, tampered, path="/ui")
            assert (await other.get("/ui")).status_code == 303
            other.cookies.set(sessions.SESSION_COOKIE, session, path="/ui")
            await _store(two).revoke_key("ops")
            assert (await other.get("/ui")).status_code == 303
            events = await other.get("/ui/events")
            assert events.status_code == 401 and "sign in" in events.text


async def test_an_open_event_stream_ends_when_its_key_is_revoked(
    app: tuple[str, SQLStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "RECHECK_S", 0.2)
    base, store = app
    _, admin = await store.create_key("watcher", admin=True)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await _sign_in(client, admin)).status_code == 303
        async with client.stream("GET", "/ui/events") as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith("retry:")
            await store.revoke_key("watcher")
            seen = [line async for line in lines]  # the stream ends by itself
    assert "event: signed-out" in seen


async def test_what_clients_sent_is_escaped_and_no_inline_script_may_run(
    app: tuple[str, SQLStore],
) -> None:
    base, store = app
    _, admin = await store.create_key("ops<b>", admin=True)
    prompt = "<script>alert('x')</script> & \"quotes\""
    async with httpx.AsyncClient(base_url=base) as client:
        submitted = await client.post(
            "/api/generate-video",
            json={**SMALL, "prompt": prompt},
            headers={"x-api-key": admin},  # an admin key works as an API key too
        )
        assert submitted.status_code == 202, submitted.text
        run_id = submitted.json()["runId"]
        await _sign_in(client, admin)
        for path in ("/ui", f"/ui/runs/{run_id}", "/ui/usage"):
            page = await client.get(path)
            assert page.status_code == 200, page.text
            assert "<script>alert" not in page.text and "ops<b>" not in page.text
            assert "ops&lt;b&gt;" in page.text
            policy = page.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert page.headers["x-frame-options"] == "DENY"
            assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None  # no inline script
        run_page = await client.get(f"/ui/runs/{run_id}")
        escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;quotes&#34;"
        assert escaped in run_page.text
        missing = await client.get("/ui/runs/vid_nothing")
        assert missing.status_code == 404 and "vid_nothing" in _alert(missing)


async def test_filters_and_pages(app_on_each_database: tuple[str, SQLStore]) -> None:
    base, store = app_on_each_database
    _, admin = await store.create_key("ops", admin=True)
    _, other = await store.create_key("other")
    async with httpx.AsyncClient(base_url=base) as client:

        async def submit(key: str, prompt: str) -> str:
            answer = await client.post(
                "/api/generate-video", json={**SMALL, "prompt": prompt}, headers={"x-api-key": key}
            )
            assert answer.status_code == 202, answer.text
            return str(answer.json()["runId"])

        mine = [await submit(admin, f"mine {i}") for i in range(PAGE)]
        theirs = await submit(other, "theirs")
        cancelled = await client.post(
            "/api/generate-video/cancel", json={"runId": mine[0]}, headers={"x-api-key": admin}
        )
        assert cancelled.status_code == 200
        await _sign_in(client, admin)

        def shown(page: httpx.Response) -> list[str]:
            assert page.status_code == 200, page.text
            return re.findall(r'<tr id="run-([^"]+)"', page.text)

        assert shown(await client.get("/ui")) == [theirs, *reversed(mine)]
        first = await client.get("/ui", params={"per_page": PAGE})
        assert shown(first) == [theirs, *reversed(mine[1:])]
        older = re.search(r'href="(/ui\?[^"]+)" rel="next"', first.text)
        assert older is not None
        assert shown(await client.get(html.unescape(older.group(1)))) == [mine[0]]
        assert 'rel="next"' not in (await client.get(html.unescape(older.group(1)))).text
        by_key = await client.get("/ui", params={"key": "other"})
        assert shown(by_key) == [theirs] and 'rel="next"' not in by_key.text
        by_status = await client.get("/ui", params={"status": "cancelled"})
        assert shown(by_status) == [mine[0]]
        assert shown(await client.get("/ui", params={"status": "CANCELLED"})) == [mine[0]]
        assert shown(await client.get("/ui", params={"model": "testcard-image-video"})) == []
        bad_status = await client.get("/ui", params={"status": "done"})
        assert bad_status.status_code == 400 and "queued, processing" in _alert(bad_status)
        bad_key = await client.get("/ui", params={"key": "nobody"})
        assert bad_key.status_code == 400 and "vidgate keys list" in _alert(bad_key)
        bad_size = await client.get("/ui", params={"per_page": "0"})
        assert bad_size.status_code == 400 and "from 1 to 500" in _alert(bad_size)
        bad_days = await client.get("/ui/usage", params={"days": "0"})
        assert bad_days.status_code == 400 and "from 1 to 366" in _alert(bad_days)
        usage = await client.get("/ui/usage")
        assert re.search(rf"<td>ops</td><td>all</td><td>{PAGE}</td>", usage.text), usage.text
        assert re.search(r"<td>other</td><td>all</td><td>1</td>", usage.text), usage.text
        providers = await client.get("/ui/providers")
        row = re.search(r"<tr><td>testcard</td><td>(\d+)</td><td>(\d+)</td>", providers.text)
        assert row is not None and row.groups() == (str(PAGE), "0"), providers.text
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not [path for path in paths if path.startswith("/ui")]


async def test_the_dashboard_can_be_turned_off(tmp_path: Path) -> None:
    settings = _settings(f"sqlite:///{tmp_path / 'vidgate.db'}", tmp_path, ui={"enabled": False})
    transport = httpx.ASGITransport(create_app(settings))  # no lifespan: no route answers
    async with httpx.AsyncClient(transport=transport, base_url="http://vidgate") as client:
        for path in ("/ui", "/ui/login", "/ui/events", "/ui/static/live.js"):
            answer = await client.get(path)
            assert answer.status_code == 404 and "no route" in answer.json()["message"], path
