"""The operator dashboard in a real browser (Debian's chromium, driven by Playwright).

An admin signs in through the page's form, the charts fill from the real live feed
(``GET /api/v1/admin/live``, every 0.5 s here), messages flow through the API and a
WebSocket listener, and the page's figures and charts follow. A member sees "admins only".
The screenshot is saved to ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Route,
    ViewportSize,
    async_playwright,
)

from tests.auth.factories import PASSWORD, login, register
from tests.dashboard.conftest import NOTES, create_admin
from tests.support.server import Node
from tests.support.wsclient import RealtimeClient

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Headless and offline: no sandbox (we run as root), no GPU, /tmp instead of a small
# /dev/shm, and none of the background fetches (updates, field trials, translation) that
# would wait on a network this machine does not have.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]
MESSAGES = 300
CHARTS = 7
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}

pytestmark = pytest.mark.timeout(900)  # the first run may install chromium (apt) first


@pytest.fixture(scope="module")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            await browser.close()


class PageProblems:
    """Console errors, uncaught exceptions and CSP violations seen by one page."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.seen.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.seen.append(f"console {message.type}: {message.text}")


async def new_page(browser: Browser) -> tuple[Page, PageProblems]:
    page = await browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(20_000)
    return page, PageProblems(page)


async def sign_in(page: Page, node: Node, username: str, password: str) -> None:
    await page.goto(node.http + "/admin")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#signin-submit")


async def metric(page: Page, key: str) -> float:
    """The current value the page shows for one series (its data-value)."""
    raw = await page.get_attribute(f'[data-metric="{key}"]', "data-value")
    return float(raw) if raw else 0.0


async def points(page: Page, chart: str) -> int:
    return int(await page.get_attribute(f"#chart-{chart}", "data-points") or 0)


async def send_messages(node: Node, token: str, channel_id: str) -> None:
    """MESSAGES sends over about three seconds, a batch of 25 every quarter second."""
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/v1/channels/{channel_id}/messages"
    async with httpx.AsyncClient(base_url=node.http, headers=headers, timeout=10) as client:
        for batch in range(MESSAGES // 25):
            sends = [client.post(url, json={"body": f"load {batch}.{i}"}) for i in range(25)]
            for response in await asyncio.gather(*sends):
                assert response.status_code == 201, response.text
            await asyncio.sleep(0.25)


async def test_an_admin_watches_the_charts_move(browser: Browser, dashboard_node: Node) -> None:
    node = dashboard_node
    admin = f"ops_{secrets.token_hex(3)}"
    await asyncio.to_thread(create_admin, node, admin, PASSWORD)
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as api:
        _, sender = await register(api)
        tokens = await login(api, sender)
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        created = await api.post(
            "/api/v1/channels", json={"name": "load", "kind": "public"}, headers=headers
        )
        assert created.status_code == 201, created.text
        channel_id = created.json()["id"]
    # A WebSocket client in the channel: a connection to count, deliveries to make.
    listener = RealtimeClient(node.ws, tokens["access_token"])
    await listener.connect()

    page, problems = await new_page(browser)
    try:
        await sign_in(page, node, admin, PASSWORD)
        await page.wait_for_selector("#stream-state[data-state='live']")
        assert await page.text_content("#whoami") == admin
        await page.wait_for_function(
            "n => document.querySelectorAll('.chart-card .uplot canvas').length === n",
            arg=CHARTS,
        )
        await page.wait_for_function(
            "() => Number(document.querySelector('#chart-messages').dataset.points) >= 2"
        )
        before = await points(page, "messages")

        sender_task = asyncio.create_task(send_messages(node, tokens["access_token"], channel_id))
        await page.wait_for_function(
            "() => Number(document.querySelector('[data-metric=\"messages_per_s\"]')"
            ".dataset.value) > 0"
        )
        rate = await metric(page, "messages_per_s")
        assert rate > 0
        await sender_task
        await listener.wait_for(lambda: len(listener.events[channel_id]) >= MESSAGES, 20)

        # The page kept up: a new sample or two since the sends stopped, more points charted.
        await page.wait_for_function(
            "n => Number(document.querySelector('#chart-messages').dataset.points) >= n",
            arg=before + 6,
        )
        assert await points(page, "latency") == await points(page, "messages")
        assert await metric(page, "connections") >= 1
        assert await page.get_attribute("#slo-rows tr", "data-status") in (
            "pass",
            "fail",
            "no data",
        )
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        await page.screenshot(path=str(shot), full_page=True)
        NOTES.append(f"screenshot: {shot}")
        print(f"dashboard screenshot: {shot}")

        await page.click("#signout")
        await page.wait_for_selector("#signin-view:not([hidden])")
        assert "signed out" in (await page.text_content("#signin-error") or "")
        assert await page.is_hidden("#dashboard-view")
    finally:
        await page.close()
        await listener.close()
    assert problems.seen == []


async def test_a_member_sees_admins_only(browser: Browser, dashboard_node: Node) -> None:
    node = dashboard_node
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as api:
        _, member = await register(api)
        tokens = await login(api, member)
        # What the message stands for: the live feed refuses members.
        live = await api.get(
            "/api/v1/admin/live", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert live.status_code == 403, live.text
        assert live.json()["error"]["code"] == "forbidden"

    page, problems = await new_page(browser)
    try:
        await sign_in(page, node, member, PASSWORD)
        denied = page.locator("#denied")
        await denied.wait_for(state="visible")
        assert "admins only" in (await denied.inner_text()).lower()
        assert await page.text_content("#denied-user") == member
        assert await page.is_hidden("#dashboard-view")
        assert await page.is_hidden("#session")
    finally:
        await page.close()
    assert problems.seen == []


async def test_a_wrong_password_is_told_plainly(browser: Browser, dashboard_node: Node) -> None:
    page, problems = await new_page(browser)
    try:
        await sign_in(page, dashboard_node, "nobody_here", "not-the-password")
        await page.wait_for_selector("#signin-error:not([hidden])")
        assert await page.text_content("#signin-error") == "Wrong username or password."
        assert await page.is_hidden("#dashboard-view")
    finally:
        await page.close()
    # The 401 of the login request is the browser's own console line, not the page's fault.
    assert [p for p in problems.seen if "401" not in p] == []


async def test_a_dropped_stream_reconnects_with_backoff(
    browser: Browser, dashboard_node: Node
) -> None:
    node = dashboard_node
    admin = f"ops_{secrets.token_hex(3)}"
    await asyncio.to_thread(create_admin, node, admin, PASSWORD)
    page, problems = await new_page(browser)
    attempts: list[float] = []

    async def drop_the_first_two(route: Route) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) <= 2:
            await route.abort("connectionreset")
        else:
            await route.continue_()

    try:
        await page.route("**/api/v1/admin/live", drop_the_first_two)
        await sign_in(page, node, admin, PASSWORD)
        await page.wait_for_selector("#stream-state[data-state='reconnecting']")
        assert "retry in" in (await page.text_content("#stream-state") or "")
        await page.wait_for_selector("#stream-state[data-state='live']")
        await page.wait_for_function(
            "() => Number(document.querySelector('#chart-messages').dataset.points) >= 2"
        )
    finally:
        await page.close()
    assert len(attempts) == 3
    # Backoff: about 1 s, then about 2 s (each ±25% jitter; generous upper bounds for a
    # loaded machine, the lower bounds are the point).
    first, second = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert 0.7 < first < 2.5, attempts
    assert 1.4 < second < 4.5, attempts
    # The two aborted requests are the browser's own console lines, not the page's fault.
    assert [p for p in problems.seen if "ERR_CONNECTION_RESET" not in p] == []
