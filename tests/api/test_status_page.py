"""/admin/status in a real browser (headless Debian chromium) against a real `items
serve` with API keys: the browser signs in through the form once (an HttpOnly cookie,
never the key in a URL), sees the page, a write is made, and the checkpoint on the page
moves at the next reload. Without a key the page is refused.

STATUS_SCREENSHOT=path saves a screenshot of the page there (the README's)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium
from tests.servers import LiveServer, serving

pytestmark = pytest.mark.slow

KEY = "status-page-key-0123456789"


@pytest.fixture(scope="module")
def server(database_url: str, server_urls: tuple[str, str]) -> Iterator[LiveServer]:
    with serving(database_url, server_urls[1], API_KEYS=KEY) as live:
        yield live


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    yield from chromium(tmp_path_factory.mktemp("chromium"))


def _checkpoint(browser: webdriver.Chrome) -> int:
    return int(browser.find_element(By.ID, "checkpoint").text)


def test_sign_in_see_the_page_and_watch_the_checkpoint_move(
    server: LiveServer, browser: webdriver.Chrome
) -> None:
    assert httpx.get(server.url + "/admin/status").status_code == 401
    browser.get(server.url + "/admin/status")
    wait = WebDriverWait(browser, 20)
    wait.until(ready.presence_of_element_located((By.NAME, "key")))  # sent to sign in
    assert KEY not in browser.current_url
    browser.find_element(By.NAME, "key").send_keys(KEY)
    browser.find_element(By.ID, "sign-in").click()
    wait.until(ready.presence_of_element_located((By.ID, "checkpoint")))
    cookie = browser.get_cookie("items_admin")
    assert cookie is not None
    assert cookie["httpOnly"]
    assert KEY not in cookie["value"]
    before = _checkpoint(browser)
    assert "partition" in browser.page_source

    made = httpx.post(
        server.url + "/api/v1/items",
        json={"name": "seen on the page", "price": "1"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert made.status_code == 201
    deadline = time.monotonic() + 15
    while _checkpoint(browser) <= before:  # the page reloads itself every few seconds
        assert time.monotonic() < deadline, "the checkpoint on the page did not move"
        time.sleep(0.5)
    assert browser.find_element(By.ID, "checkpoint-0").text == str(_checkpoint(browser))
    if shot := os.environ.get("STATUS_SCREENSHOT"):
        time.sleep(6)  # two more reloads: the sparkline has points
        browser.save_screenshot(shot)


def test_a_wrong_key_is_refused_with_the_form_again(server: LiveServer) -> None:
    refused = httpx.post(server.url + "/admin/login", data={"key": "not-a-key"})
    assert refused.status_code == 403
    assert "not one of the API keys" in refused.text
    assert "items_admin" not in refused.headers.get("set-cookie", "")
    with_bearer = httpx.get(
        server.url + "/admin/status", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert with_bearer.status_code == 200
    assert 'id="checkpoint"' in with_bearer.text
