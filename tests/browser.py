"""A headless Debian chromium driven by selenium through chromium-driver, for the tests
that need a real browser (/docs and /redoc offline, /admin/status). It resolves no
host but the loopback address: a page that reached for a CDN would show it.

A module that imports this is skipped when either program is missing (.ci/run
installs both: apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "needs chromium and chromium-driver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )


def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """A browser for the block; `profile` is its own --user-data-dir."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        # No network: every name but the loopback address fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=direct://",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
