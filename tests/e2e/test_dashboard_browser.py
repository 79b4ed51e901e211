"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright by its
path (no browser is downloaded), against a real ``vidgate serve`` with its worker.

It signs in through the form with an admin key made by ``vidgate keys create --admin``,
watches a run submitted after the page loaded appear and go from queued to completed
without the page reloading, then opens the run and plays its video: the ``<video>`` loads
the H.264 MP4 from its signed URL and reports a duration. Screenshots of both pages go to
``tests/artifacts/`` (ignored by git). ``make test`` installs Chromium when it is missing
(``scripts/chromium-for-tests.sh``); elsewhere the test skips, saying so."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.api_helpers import SMALL
from tests.servers import LiveServer
from vidgate import cli

pytestmark = pytest.mark.timeout(120)
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
H264 = 'video/mp4; codecs="avc1.64001e"'
"""What the test card renders: H.264 (High profile) in MP4."""


RECORD_STATUSES = """() => {
    // Marks this page (a reload would lose the mark) and records every status each row
    // shows, in order, as the live updates change them.
    window.stayedOnThisPage = true;
    window.statusesSeen = {};
    const record = () => {
        for (const cell of document.querySelectorAll("#runs td.status")) {
            const id = cell.parentElement.id.slice("run-".length);
            const seen = (window.statusesSeen[id] = window.statusesSeen[id] || []);
            if (seen[seen.length - 1] !== cell.textContent) { seen.push(cell.textContent); }
        }
    };
    new MutationObserver(record).observe(
        document.getElementById("runs"), { subtree: true, childList: true, characterData: true }
    );
}"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "Debian's chromium is not installed (scripts/chromium-for-tests.sh installs it; "
            "`make test` runs that)"
        )
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """``vidgate serve``, not started yet: it starts while the browser does."""
    server = LiveServer(tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


def _admin_key(server: LiveServer) -> str:
    """``vidgate keys create ops --admin`` (in this process: a CLI process would cost a
    second of start-up); ``keys list`` marks it."""
    runner = CliRunner()
    where = ["--data-dir", str(server.data_dir), "--config", str(server.config)]
    made = runner.invoke(cli.app, ["keys", "create", "ops", "--admin", *where])
    assert made.exit_code == 0, made.output
    assert "Created admin key (API and dashboard) 'ops'" in made.stderr
    listed = runner.invoke(cli.app, ["keys", "list", *where])
    assert re.search(r"^ops\t.*\tactive\tadmin$", listed.stdout, re.M), listed.output
    return made.stdout.strip().splitlines()[-1]


def test_an_admin_watches_a_run_complete_live_and_plays_its_video(server: LiveServer) -> None:
    chromium = _chromium()
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright, ThreadPoolExecutor(1) as starter:
        # The server starts and the key is made (in a thread without the event loop that
        # Playwright runs here) while the browser starts.
        starting = starter.submit(lambda: _admin_key(server.start()))
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            admin = starting.result()
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{server.base_url}/ui")
            assert page.url.endswith("/ui/login")
            page.fill("#key", admin)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.base_url}/ui")
            expect(page.locator("#live")).to_have_text("live")  # the event stream is open
            page.evaluate(RECORD_STATUSES)

            answer = httpx.post(
                f"{server.base_url}/api/generate-video",
                json={
                    **SMALL,
                    "model": "testcard-video",
                    "prompt": "dash sandbox:queue=1 sandbox:slow=1",
                },
                headers={"x-api-key": admin},
                timeout=30,
            )
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["runId"]
            expect(page.locator(f"#run-{run_id} td.status")).to_have_text(
                "completed", timeout=30_000
            )
            seen = page.evaluate(f"window.statusesSeen['{run_id}']")
            assert seen == ["queued", "processing", "completed"], seen
            assert page.evaluate("window.stayedOnThisPage") is True  # never reloaded
            expect(page.locator(f"#run-{run_id}")).to_contain_text("dash")
            page.screenshot(path=str(ARTIFACTS / "dashboard-runs.png"), full_page=True)

            page.click(f"a[href='/ui/runs/{run_id}']")
            page.wait_for_url(f"**/ui/runs/{run_id}")
            assert (
                page.evaluate(f"document.createElement('video').canPlayType('{H264}')")
                == "probably"
            )
            duration = page.evaluate(
                """() => new Promise((resolve, reject) => {
                    const video = document.getElementById("video");
                    const told = () => resolve(video.duration);
                    if (video.readyState >= 1) { told(); return; }
                    video.addEventListener("loadedmetadata", told);
                    video.addEventListener("error", () => reject(
                        new Error("video error " + (video.error && video.error.code))));
                })"""
            )
            assert 0.5 < duration < 5, duration  # a 1-second test card
            assert page.evaluate("document.getElementById('video').src").startswith(
                f"{server.base_url}/files/"
            )
            poster = page.evaluate("document.getElementById('video').poster")
            assert poster.startswith(f"{server.base_url}/files/") and ".thumb.jpg" in poster
            assert httpx.get(poster).headers["content-type"] == "image/jpeg"  # no key needed
            page.screenshot(path=str(ARTIFACTS / "dashboard-run.png"), full_page=True)

            page.goto(f"{server.base_url}/ui/providers")
            backend = page.locator("#backends tr", has_text="testcard")
            expect(backend.locator("td").nth(3)).to_have_text("1")  # completed
            page.goto(f"{server.base_url}/ui/usage")
            expect(page.locator("#usage tr.total", has_text="ops")).to_contain_text("1.00 s")
        finally:
            browser.close()
