"""The API's documentation pages render with no internet access: every asset is served by the
app itself, and a real browser (Debian's chromium, headless) draws both pages."""

from __future__ import annotations

import re

import httpx
from browser_fixtures import browser
from http_fixtures import Api, api
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

__all__ = ["api", "browser"]

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
