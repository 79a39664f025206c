"""A real headless Chromium for the tests (Selenium + Debian's chromium and chromium-driver:
`apt-get install -y chromium chromium-driver`; no browser is downloaded).

Without them a test that needs the browser skips with one line saying what to install; with
ATTNLAB_REQUIRE_BROWSER=1 (which .ci/run sets) it fails instead, so CI never skips it unseen.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE_BROWSER = os.environ.get("ATTNLAB_REQUIRE_BROWSER", "") not in ("", "0")
INSTALL = "apt-get install -y chromium chromium-driver (and pip install selenium)"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# On these machines a Chromium that may reach for the network hangs: every background fetch off.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"ATTNLAB_REQUIRE_BROWSER=1 but {reason}: {INSTALL}", pytrace=False)
    pytest.skip(f"{reason}: {INSTALL}")


def start_chromium(profile: Path) -> Any:
    """A headless Chromium driven by chromedriver, its console log kept; skips (or fails
    under ATTNLAB_REQUIRE_BROWSER=1) with one line when either is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed")
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        _unavailable(f"no {'Chromium' if binary is None else 'chromedriver'} on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}"):  # a fresh profile every time
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: Selenium Manager (which would download a driver) is not run.
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    browser = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()
