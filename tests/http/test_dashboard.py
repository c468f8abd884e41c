"""The dashboard in a real headless browser: Debian's ``chromium`` driven by Playwright through
``executable_path`` (no browser download). It signs in with the token once, shows a completed
task without a reload, pauses a swarm with its button, and leaves a screenshot behind.

The screenshot goes to ``$MULTISWARM_ARTIFACTS`` (CI keeps that directory) or the test's temp
dir; the README's copy (docs/dashboard.png) is refreshed by hand from it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from multiswarm.api import Multiswarm
from multiswarm.breakers import BreakerConfig, BreakerRegistry

from .conftest import ADMIN, FAIL, NOOP, STEPS, System

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # as root (containers, CI) chromium refuses to start with its sandbox on
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield b
        finally:
            b.close()


def artifact_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("MULTISWARM_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


async def trip_breaker(system: System) -> None:
    async with await Multiswarm.connect(settings=system.settings) as ms:
        breaker = await BreakerRegistry(ms.scripts, ms.keys).get_or_create(
            "llm", BreakerConfig(failure_threshold=1)
        )
        await breaker.failure(await breaker.acquire(), "upstream timeout")


def count(page: Any, status: str) -> int:
    return int(page.inner_text(f"#count-{status}"))


def test_dashboard_signs_in_updates_live_and_pauses(
    system: System, browser: Any, tmp_path: Path
) -> None:
    import httpx

    # bypass_csp: the page's policy forbids eval, which Playwright's wait_for_function uses
    page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(system.url + "/")
    # a token is required: the page asks for it once, then keeps it in an HttpOnly cookie
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#token", "wrong-token-wrong-token")
    page.click("#login button[type=submit]")
    page.wait_for_function("document.querySelector('#login-error').textContent !== ''")
    page.fill("#token", ADMIN)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#board:not([hidden])")
    page.wait_for_selector("#swarms tbody tr[data-swarm=beta]")
    cookie = next(c for c in page.context.cookies() if c["name"] == "multiswarm_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # page scripts cannot read the token
    page.evaluate("window.notReloaded = true")

    # a task submitted through the API shows up as completed without a reload
    page.wait_for_selector("#count-completed")
    before = count(page, "completed")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=system.url, headers=headers) as http:
        for i in range(3):
            resp = http.post(
                "/api/v1/tasks",
                json={"handler": NOOP, "payload": {"i": i}, "capabilities": ["work"]},
            )
            assert resp.status_code == 201, resp.text
        doomed = http.post(
            "/api/v1/tasks", json={"handler": FAIL, "capabilities": ["work"], "max_attempts": 1}
        ).json()["id"]
    page.wait_for_function(
        f"Number(document.querySelector('#count-completed').textContent) >= {before + 3}",
        timeout=30_000,
    )
    # the dead task reaches the dead-letter table, the open breaker the breakers table
    page.wait_for_selector(f"#dead-letters tbody tr >> text={doomed}", timeout=30_000)
    # Playwright's sync API runs an event loop in this thread: the facade runs in another
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, trip_breaker(system)).result()
    page.wait_for_selector("#breakers tbody tr[data-breaker=llm] .state-open", timeout=15_000)
    assert page.evaluate("window.notReloaded") is True

    # pause beta with its button: its status cell turns 'paused', and the swarm is paused
    row = "#swarms tbody tr[data-swarm=beta]"
    assert page.inner_text(f"{row} .status") == "active"
    page.click(f"{row} button.toggle-pause")
    page.wait_for_function(
        f"document.querySelector('{row} .status').textContent === 'paused'", timeout=15_000
    )
    with httpx.Client(base_url=system.url, headers=headers) as http:
        assert http.get("/api/v1/swarms/beta").json()["paused"] is True
    assert page.inner_text(f"{row} button.toggle-pause") == "resume"
    assert page.evaluate("window.notReloaded") is True
    assert errors == []

    # a long task's progress reports show in its row as it runs (decision 128)
    with httpx.Client(base_url=system.url, headers=headers) as http:
        long = http.post(
            "/api/v1/tasks",
            json={"handler": STEPS, "payload": {"steps": 40}, "capabilities": ["work"]},
        ).json()["id"]
    page.wait_for_selector(f"#tasks tbody tr[data-task='{long}'] >> text=/% step \\d+ of 40/")
    with httpx.Client(base_url=system.url, headers=headers) as http:
        assert http.post(f"/api/v1/tasks/{long}/cancel").status_code == 200

    # a task no swarm can take waits; its cancel button ends it
    with httpx.Client(base_url=system.url, headers=headers) as http:
        waiting = http.post(
            "/api/v1/tasks", json={"handler": NOOP, "capabilities": ["nowhere"]}
        ).json()["id"]
    task_row = f"#tasks tbody tr[data-task='{waiting}']"
    page.click(f"{task_row} button.cancel", timeout=15_000)
    page.wait_for_selector(f"{task_row} .status-cancelled", timeout=15_000)
    assert page.query_selector(f"{task_row} button.cancel") is None
    with httpx.Client(base_url=system.url, headers=headers) as http:
        assert http.get(f"/api/v1/tasks/{waiting}").json()["status"] == "cancelled"

    shot = artifact_dir(tmp_path) / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.click(f"{row} button.toggle-pause")  # leave beta as it was
    page.wait_for_function(
        f"document.querySelector('{row} .status').textContent === 'active'", timeout=15_000
    )
    page.close()


def _signed_in(browser: Any, system: System, token: str) -> Any:
    """A new page of the dashboard, signed in with ``token``, its swarms table drawn."""
    page = browser.new_page(bypass_csp=True)
    page.goto(system.url + "/")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#swarms tbody tr[data-swarm=alpha]")
    return page


def test_dashboard_with_read_token_has_no_buttons(system: System, browser: Any) -> None:
    from .conftest import READ

    page = _signed_in(browser, system, READ)
    assert page.inner_text("#role") == "read"
    assert page.query_selector_all("#swarms button") == []
    # logging out forgets the cookie: the page asks for a token again, also after a reload
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")
    assert [c for c in page.context.cookies() if c["name"] == "multiswarm_token"] == []
    page.reload()
    page.wait_for_selector("#login:not([hidden])")
    page.close()


def test_signing_in_again_adds_no_second_refresh_when_the_tab_shows(
    system: System, browser: Any
) -> None:
    """Each sign-in from the form added one more `visibilitychange` listener (found in review):
    after two, showing the tab refreshed three times at once."""
    page = browser.new_page(bypass_csp=True)
    page.goto(system.url + "/")
    for _ in range(2):
        page.wait_for_selector("#login:not([hidden])")
        page.fill("#token", ADMIN)
        page.click("#login button[type=submit]")
        page.wait_for_selector("#board:not([hidden])")
        page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#token", ADMIN)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#board:not([hidden])")
    for _ in range(2):  # the first refresh, then a poll: its timer is set
        with page.expect_request(lambda r: r.url.endswith("/api/v1/status"), timeout=15_000):
            pass
    shown = page.evaluate(
        """() => {
        window.shown = 0;
        const real = window.refresh;
        window.refresh = () => { window.shown += 1; return real(); };
        document.dispatchEvent(new Event("visibilitychange"));
        return window.shown;
    }"""
    )
    assert shown == 1
    page.close()


def test_a_slow_api_gets_one_refresh_at_a_time(system: System, browser: Any) -> None:
    """Found in the HTTP review: the page polled with ``setInterval``, 5 requests a second
    whether or not the last ones had answered; with replies taking 5 s (Redis away) one tab had
    up to 30 requests in flight, and the backlog grew for as long as the outage lasted."""
    page = _signed_in(browser, system, ADMIN)
    # every request of the page now takes 5 s more, as each did while Redis was away
    page.evaluate(
        """() => {
        window.flight = { now: 0, max: 0, sent: 0 };
        const real = window.fetch;
        window.fetch = async (...args) => {
            const f = window.flight;
            f.now += 1; f.sent += 1; f.max = Math.max(f.max, f.now);
            try {
                await new Promise((done) => setTimeout(done, 5000));
                return await real(...args);
            } finally { f.now -= 1; }
        };
    }"""
    )
    page.wait_for_timeout(12_000)
    flight = page.evaluate("window.flight")
    assert flight["max"] <= 5, flight
    assert flight["sent"] >= 10, flight  # and it kept polling: two refreshes at least
    page.close()
