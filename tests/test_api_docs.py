"""The API's documentation pages render with no internet access: every asset is served by the
app itself, and a real browser (Debian's chromium, headless) draws both pages."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import httpx
import pytest
from http_fixtures import Api, api
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

__all__ = ["api"]

PAGES = ("/docs", "/redoc")


def test_the_pages_load_their_assets_from_the_app(api: Api) -> None:
    with httpx.Client(base_url=api.url) as client:
        for page in PAGES:
            answer = client.get(page)
            assert answer.status_code == 200, page
            assert "text/html" in answer.headers["content-type"]
            urls = re.findall(
                r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", answer.text
            )
            found = [u for pair in urls for u in pair if u]
            assert found, page
            for url in found:
                assert url.startswith("/"), (page, url)  # nothing from another host
                assert client.get(url).status_code == 200, (page, url)
        script = client.get("/docs-assets/swagger-ui-bundle.js")
        assert "javascript" in script.headers["content-type"] and len(script.content) > 100_000
        assert client.get("/docs-assets/nothing.js").status_code == 404


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        message = "Debian's chromium and chromium-driver are needed for the browser tests"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (.ci/run installs them)")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def test_swagger_ui_renders_every_operation(api: Api, browser: webdriver.Chrome) -> None:
    browser.get(api.url + "/docs")
    WebDriverWait(browser, 60).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) > 20
    )
    title = browser.find_element(By.CSS_SELECTOR, ".info .title").text
    assert title.startswith("Flowkernel")
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/items", "/v1/items/{item_id}/history", "/v1/health"} <= paths


def test_redoc_renders_the_document(api: Api, browser: webdriver.Chrome) -> None:
    browser.get(api.url + "/redoc")
    WebDriverWait(browser, 60).until(
        lambda b: any("Flowkernel" in h.text for h in b.find_elements(By.TAG_NAME, "h1"))
    )
    WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "h2")) > 20)
