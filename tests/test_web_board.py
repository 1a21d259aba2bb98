"""The web board served at `/`: its assets come from the app, and a real browser signs in,
opens a pipeline's board, drags a card, moves one by keyboard, fills a missing required value
in place, reads why a move was refused, and works an item's panel."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from browser_fixtures import browser
from http_fixtures import Api, api
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from flowkernel import SYSTEM, Actor, Flowkernel
from flowkernel.examples.charging_station import STATES, build_station_class
from flowkernel.examples.sales_pipeline import build_sales_pipeline

__all__ = ["api", "browser"]

REP = Actor.user(7, 1)
WAIT = 30


def test_the_page_loads_its_assets_from_the_app(api: Api) -> None:
    with httpx.Client(base_url=api.url) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        found = re.findall(r"""(?:src|href)=["']([^"'#]+)["']""", page.text)
        assert {"/web-assets/board.js", "/web-assets/board.css"} <= set(found)
        for url in found:
            assert url.startswith("/"), url  # nothing from another host
            assert client.get(url).status_code == 200, url
        assert client.get("/web-assets/nothing.js").status_code == 404
        assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"


def wait(browser: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(browser, WAIT)


def card_in(browser: webdriver.Chrome, stage: str, item: int) -> WebElement:
    """The item's card once the board shows it in `stage`."""
    selector = f'.stage[data-stage="{stage}"] .card[data-item="{item}"]'
    return wait(browser).until(seen.presence_of_element_located((By.CSS_SELECTOR, selector)))


def shoot(browser: webdriver.Chrome, name: str) -> None:
    """Keep a screenshot for docs/ when FLOWKERNEL_SCREENSHOTS names a folder."""
    folder = os.environ.get("FLOWKERNEL_SCREENSHOTS")
    if folder:
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_a_board_worked_in_the_browser(fk: Flowkernel, api: Api, browser: webdriver.Chrome) -> None:
    sales = build_sales_pipeline(fk)
    deal = fk.place(sales.id, "crm_opportunity", 100, REP).id
    fk.items.set_values(deal, {"contract_value": 25000}, REP)
    late = fk.place(sales.id, "crm_opportunity", 101, REP).id
    fk.sla.scan(now=datetime.now(UTC) + timedelta(days=30))
    token = api.tokens.issue("board", account_id=1, user_id=7).token

    browser.get(api.url + "/")
    field = wait(browser).until(seen.visibility_of_element_located((By.ID, "token")))
    field.send_keys("not a token", Keys.ENTER)
    refusal = wait(browser).until(seen.visibility_of_element_located((By.CSS_SELECTOR, ".error")))
    assert "not accepted" in refusal.text
    browser.find_element(By.ID, "token").send_keys(token, Keys.ENTER)
    link = wait(browser).until(
        seen.element_to_be_clickable((By.CSS_SELECTOR, f'a[data-pipeline="{sales.id}"]'))
    )
    assert browser.find_element(By.ID, "who").text == "user 7 of account 1"
    link.click()

    card = card_in(browser, "lead", deal)
    stages = browser.find_elements(By.CSS_SELECTOR, ".stage")
    assert [s.get_attribute("data-stage") for s in stages] == [
        "lead", "qualified", "proposal", "won", "lost",
    ]  # fmt: skip
    assert "2 items" in stages[0].text and "25,000" in card.text
    breached = browser.find_element(By.CSS_SELECTOR, f'.card[data-item="{late}"]')
    assert "breached" in (breached.get_attribute("class") or "")
    assert "SLA breached" in breached.text
    shoot(browser, "web-board")

    # drag the deal to Qualified
    target = browser.find_element(By.CSS_SELECTOR, '.stage[data-stage="qualified"]')
    ActionChains(browser).click_and_hold(card).move_by_offset(20, 0).move_to_element(
        target
    ).release().perform()
    card = card_in(browser, "qualified", deal)
    assert fk.item(deal, REP).state == "qualified"

    # by keyboard into Proposal: the close date is missing; fill it in place and move on
    card.send_keys(Keys.ARROW_RIGHT)
    dialog = wait(browser).until(seen.visibility_of_element_located((By.ID, "dialog")))
    assert "Fill in the required values" in dialog.text and "Expected Close" in dialog.text
    assert fk.item(deal, REP).state == "qualified"  # refused: nothing changed
    shoot(browser, "web-board-fill")
    date = dialog.find_element(By.NAME, "close_date")
    assert date.get_attribute("type") == "date"
    browser.execute_script("arguments[0].value = '2026-07-01'", date)
    dialog.find_element(By.CSS_SELECTOR, "button.primary").click()
    card = card_in(browser, "proposal", deal)
    assert fk.item(deal, REP).state == "proposal"
    assert {v.name: v.value for v in fk.items.values(deal, REP)}["close_date"] == "2026-07-01"

    # into Won: the proposal's checklist is open, and the board says why
    card.send_keys(Keys.ARROW_RIGHT)
    dialog = wait(browser).until(seen.visibility_of_element_located((By.ID, "dialog")))
    wait(browser).until(lambda b: "Proposal sent to client" in dialog.text)
    assert "The move was refused" in dialog.text
    assert dialog.find_element(By.CSS_SELECTOR, "[data-code]").get_attribute("data-code") == (
        "checklist_incomplete"
    )
    dialog.find_element(By.CSS_SELECTOR, "button.primary").click()
    assert fk.item(deal, REP).state == "proposal"

    # the item's panel: values, checklist, methods, watchers and history
    card = card_in(browser, "proposal", deal)
    card.send_keys(Keys.ENTER)
    panel = wait(browser).until(seen.visibility_of_element_located((By.ID, "panel")))
    wait(browser).until(lambda b: "History" in panel.text)
    rows = panel.find_elements(By.CSS_SELECTOR, "#history tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows[1:]] == [
        "lead", "qualified", "proposal",
    ]  # fmt: skip
    assert panel.find_element(By.NAME, "contract_value").get_attribute("value") == "25000"
    for key in ("proposal_sent", "budget_confirmed"):
        panel.find_element(By.CSS_SELECTOR, f'input[data-key="{key}"]').click()
        wait(browser).until(
            lambda b, key=key: any(
                e.key == key and e.completed for e in fk.items.checklist(deal, REP)
            )
        )
    watcher = panel.find_element(By.ID, "watcher")
    watcher.send_keys("9", Keys.ENTER)
    wait(browser).until(lambda b: fk.items.watchers(deal, REP) == [9])
    wait(browser).until(  # the panel, drawn again, lists the watcher
        seen.text_to_be_present_in_element((By.ID, "watchers"), "user 9")
    )
    shoot(browser, "web-board-item")
    browser.find_element(By.CSS_SELECTOR, '#panel button[data-method="move_to_won"]').click()
    card_in(browser, "won", deal)
    assert fk.item(deal, REP).state == "won"
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait(browser).until(seen.invisibility_of_element_located((By.ID, "panel")))

    # signing out forgets the token
    browser.find_element(By.ID, "sign-out").click()
    wait(browser).until(seen.visibility_of_element_located((By.ID, "token")))
    assert browser.execute_script("return sessionStorage.length") == 0


def test_a_kernel_class_and_its_diagram_in_the_browser(
    fk: Flowkernel, api: Api, browser: webdriver.Chrome
) -> None:
    build_station_class(fk)
    station = fk.place("station", "charging_station", 300, SYSTEM, account_id=1).id
    fk.execute(station, "enable", SYSTEM)
    token = api.tokens.issue("board", account_id=1, user_id=7).token

    browser.get(api.url + "/")
    wait(browser).until(seen.visibility_of_element_located((By.ID, "token"))).send_keys(
        token, Keys.ENTER
    )
    wait(browser).until(
        seen.element_to_be_clickable((By.CSS_SELECTOR, 'a[data-class="station"]'))
    ).click()
    card = card_in(browser, "unavailable", station)
    states = [
        s.get_attribute("data-stage") for s in browser.find_elements(By.CSS_SELECTOR, ".stage")
    ]
    assert states == [code for _type, code, _label, _seq in STATES]

    browser.find_element(By.ID, "show-diagram").click()
    image = wait(browser).until(seen.visibility_of_element_located((By.ID, "diagram-image")))
    wait(browser).until(lambda b: b.execute_script("return arguments[0].naturalWidth", image) > 100)
    shoot(browser, "web-class")

    card.send_keys(Keys.ENTER)
    panel = wait(browser).until(seen.visibility_of_element_located((By.ID, "panel")))
    disable = wait(browser).until(
        lambda b: panel.find_element(By.CSS_SELECTOR, 'button[data-method="disable"]')
    )
    assert not panel.find_elements(By.CSS_SELECTOR, 'button[data-method="heartbeat"]')
    disable.click()
    card_in(browser, "disabled", station)
    assert fk.item(station, SYSTEM).state == "disabled"


def test_class_board_and_diagram_over_http(fk: Flowkernel, api: Api) -> None:
    build_station_class(fk)
    station = fk.place("station", "charging_station", 300, SYSTEM, account_id=1).id
    sales = build_sales_pipeline(fk)
    token = api.tokens.issue("board", account_id=1, user_id=7).token
    with api.client(token) as client:
        board = client.get("/v1/classes/station/board")
        assert board.status_code == 200, board.text
        by_state = {s["code"]: [i["id"] for i in s["items"]] for s in board.json()["stages"]}
        assert by_state["created"] == [station] and board.json()["value_column"] is None

        drawn = client.get(
            "/v1/classes/station/diagram", params={"format": "mermaid", "counts": True}
        )
        assert drawn.status_code == 200 and drawn.headers["content-type"].startswith("text/plain")
        assert 's_created("Created<br/>1 item")' in drawn.text
        svg = client.get(f"/v1/classes/{sales.id}/diagram")
        if shutil.which("dot") is not None:
            assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
            assert svg.text.lstrip().startswith("<?xml") and "Sales Pipeline" in svg.text
        else:
            assert svg.status_code == 503
            assert svg.json()["error"]["code"] == "graphviz_unavailable"
        for path, status in [
            ("/v1/classes/nothing/board", 404),
            ("/v1/classes/nothing/diagram", 404),
            ("/v1/classes/station/diagram?format=png", 422),
            ("/v1/classes/station/board?per_stage=0", 422),
        ]:
            assert client.get(path).status_code == status, path
