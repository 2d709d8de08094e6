"""/docs and /redoc render with no network (issue 15): a real browser, real `items serve`.

Headless Debian chromium, driven by selenium through chromium-driver, resolves no host
but the service's loopback address, so a script or a style from a CDN cannot load: the
page renders its operations only if the service serves every asset itself. Every
resource the page fetched is checked to come from the service, too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium
from tests.servers import LiveServer, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(database_url: str, server_urls: tuple[str, str]) -> Iterator[LiveServer]:
    with serving(database_url, server_urls[1]) as live:
        yield live


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    yield from chromium(tmp_path_factory.mktemp("chromium"))


def _assets(browser: webdriver.Chrome) -> list[str]:
    """Every script, style, font and API document the page fetched. Images are left
    out: ReDoc's bundle links its "API docs by Redocly" footer logo to cdn.redoc.ly,
    which offline shows as a missing picture and nothing else."""
    names: list[str] = browser.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.initiatorType !== 'img').map(e => e.name)"
    )
    return names


def test_swagger_ui_lists_the_operations_offline(
    server: LiveServer, browser: webdriver.Chrome
) -> None:
    browser.get(server.url + "/docs")
    wait = WebDriverWait(browser, 20)
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path")))
    paths = {
        e.text.replace("\u200b", "")
        for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert {"/api/v1/items", "/api/v1/items/{item_id}"} <= paths, paths
    methods = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-method")}
    assert {"GET", "POST", "PATCH", "DELETE"} <= methods, methods
    outside = [url for url in _assets(browser) if not url.startswith(server.url)]
    assert not outside, f"/docs fetched from elsewhere: {outside}"


def test_redoc_renders_the_operations_offline(
    server: LiveServer, browser: webdriver.Chrome
) -> None:
    browser.get(server.url + "/redoc")
    wait = WebDriverWait(browser, 20)
    wait.until(
        ready.presence_of_element_located((By.CSS_SELECTOR, "[data-section-id^='operation/']"))
    )
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "/api/v1/items" in text or "Create" in text, text[:2000]
    outside = [url for url in _assets(browser) if not url.startswith(server.url)]
    assert not outside, f"/redoc fetched from elsewhere: {outside}"
