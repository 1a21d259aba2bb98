"""The web board served at `/`: its assets come from the app, and a real browser signs in,
opens a pipeline's board, drags a card, moves one by keyboard, fills a missing required value
in place, reads why a move was refused, and works an item's panel; it shows the board at a
past instant (read-only, its "More" pages at the same instant, a future instant refused) and a
pipeline's forecast beside the previous period's figures."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, date, datetime, timedelta
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
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select, update

from flowkernel import SYSTEM, Actor, Flowkernel
from flowkernel.definition.pipelines.admin import StageSpec
from flowkernel.definition.pipelines.specs import ColumnSpec
from flowkernel.examples.charging_station import STATES, build_station_class
from flowkernel.examples.sales_pipeline import build_sales_pipeline
from flowkernel.store.tables import history

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


def sign_in(api: Api, browser: webdriver.Chrome) -> None:
    token = api.tokens.issue("board", account_id=1, user_id=7).token
    browser.get(api.url + "/")
    wait(browser).until(seen.visibility_of_element_located((By.ID, "token"))).send_keys(
        token, Keys.ENTER
    )
    wait(browser).until(seen.visibility_of_element_located((By.ID, "who")))


def backdate(fk: Flowkernel, path: dict[int, list[datetime]]) -> None:
    """Rewrite each item's history to the instants given, in the order of its periods."""
    with fk.engine.begin() as conn:
        for item, instants in path.items():
            rows = conn.execute(
                select(history.c.id).where(history.c.flow_item_id == item).order_by(history.c.id)
            ).scalars()
            for k, row in enumerate(list(rows)):
                later = instants[k + 1] if k + 1 < len(instants) else None
                conn.execute(
                    update(history)
                    .where(history.c.id == row)
                    .values(moved_at=instants[k], valid_to=later)
                )


def set_instant(browser: webdriver.Chrome, field: WebElement, instant: datetime) -> None:
    """Type `instant` into a datetime-local input, in the browser's own time zone."""
    browser.execute_script(
        "const d = new Date(arguments[1]);"
        "d.setMinutes(d.getMinutes() - d.getTimezoneOffset());"
        "arguments[0].value = d.toISOString().slice(0, 19);",
        field,
        instant.isoformat(),
    )


def stage_counts(browser: webdriver.Chrome) -> dict[str, str]:
    return {
        s.get_attribute("data-stage") or "": s.find_element(By.CSS_SELECTOR, ".totals").text
        for s in browser.find_elements(By.CSS_SELECTOR, ".stage")
    }


def test_the_board_at_a_past_instant(fk: Flowkernel, api: Api, browser: webdriver.Chrome) -> None:
    stages = [StageSpec("Lead"), StageSpec("Qualified"), StageSpec("Won", is_won=True)]
    columns = [ColumnSpec("amount", field_type="number")]
    pid = fk.pipelines.create_pipeline("Deals", REP, stages=stages, columns=columns).id
    now = datetime.now(UTC).replace(microsecond=0)
    # 52 deals placed five days ago, a minute apart; the first went on to Qualified three days
    # ago and to Won yesterday, the others into Qualified two hours ago
    deals = [fk.place(pid, "deal", n, REP).id for n in range(52)]
    first, rest = deals[0], deals[1:]
    fk.items.set_values(first, {"amount": 900}, REP)
    for stage in ("qualified", "won"):
        fk.move(first, stage, REP)
    for deal in rest:
        fk.move(deal, "qualified", REP)
    placed = {deal: now - timedelta(days=5) + timedelta(minutes=n) for n, deal in enumerate(deals)}
    backdate(fk, {first: [placed[first], now - timedelta(days=3), now - timedelta(days=1)]})
    backdate(fk, {deal: [placed[deal], now - timedelta(hours=2)] for deal in rest})
    between = now - timedelta(days=2)

    sign_in(api, browser)
    browser.get(f"{api.url}/#/pipelines/{pid}")
    card_in(browser, "won", first)
    assert stage_counts(browser) == {
        "lead": "0 items · 0",
        "qualified": "51 items · 0",
        "won": "1 item · 900",
    }
    assert not browser.find_elements(By.ID, "as-of-banner")
    assert "null" not in browser.find_element(By.ID, "view").text

    # the board two days ago: labelled, its counts and cards then, no sums
    picker = browser.find_element(By.ID, "as-of")
    assert picker.get_attribute("type") == "datetime-local"
    assert browser.find_element(By.CSS_SELECTOR, 'label[for="as-of"]').text == "Board at"
    set_instant(browser, picker, between)
    browser.find_element(By.ID, "as-of-show").click()
    banner = wait(browser).until(seen.visibility_of_element_located((By.ID, "as-of-banner")))
    assert banner.text.startswith("As of ") and "read-only" in banner.text
    card = card_in(browser, "qualified", first)
    assert stage_counts(browser) == {
        "lead": "51 items · —",
        "qualified": "1 item · —",
        "won": "0 items · —",
    }
    assert browser.find_element(By.ID, "board-totals").text == "52 items · amount: — · weighted: —"
    lead = browser.find_elements(By.CSS_SELECTOR, '.stage[data-stage="lead"] .card')
    assert [c.get_attribute("data-item") for c in lead] == [str(d) for d in rest[::-1][:50]]
    assert "as_of=" in browser.execute_script("return location.hash")
    shoot(browser, "web-board-past")

    # More asks for the same instant
    browser.find_element(By.CSS_SELECTOR, '.stage[data-stage="lead"] .more').click()
    card_in(browser, "lead", rest[0])
    assert len(browser.find_elements(By.CSS_SELECTOR, '.stage[data-stage="lead"] .card')) == 51
    assert not browser.find_elements(By.CSS_SELECTOR, ".more")

    # read-only: dragging, arrow keys and clicks change nothing and open nothing
    assert "readonly" in (card.get_attribute("class") or "")
    target = browser.find_element(By.CSS_SELECTOR, '.stage[data-stage="lead"]')
    ActionChains(browser).click_and_hold(card).move_by_offset(20, 0).move_to_element(
        target
    ).release().perform()
    assert "dragging" not in (card.get_attribute("class") or "")
    card.send_keys(Keys.ARROW_LEFT)
    card.send_keys(Keys.ENTER)
    card_in(browser, "qualified", first)

    # Now, by keyboard: the live board again
    browser.find_element(By.ID, "as-of-now").send_keys(Keys.ENTER)
    wait(browser).until(seen.invisibility_of_element_located((By.ID, "as-of-banner")))
    card_in(browser, "won", first)
    assert stage_counts(browser)["won"] == "1 item · 900"
    assert browser.execute_script("return location.hash") == f"#/pipelines/{pid}"
    assert browser.find_element(By.ID, "panel").get_attribute("hidden") is not None
    assert not browser.find_elements(By.CSS_SELECTOR, "dialog[open]")
    assert fk.item(first, REP).state == "won"
    assert len(fk.history(first, REP)) == 3  # nothing moved while the past was shown

    # an instant in the future: the API's refusal, and the live board stays
    picker = browser.find_element(By.ID, "as-of")
    set_instant(browser, picker, now + timedelta(days=1))
    picker.send_keys(Keys.ENTER)
    refusal = wait(browser).until(
        seen.text_to_be_present_in_element((By.ID, "as-of-error"), "in the future")
    )
    assert refusal
    assert not browser.find_elements(By.ID, "as-of-banner")
    assert "readonly" not in (card_in(browser, "won", first).get_attribute("class") or "")


def month(day: date) -> str:
    return f"{day.year}-{day.month:02d}"


def cells(row: WebElement) -> dict[str, str]:
    return {
        c.get_attribute("data-figure") or "": c.text
        for c in row.find_elements(By.CSS_SELECTOR, "td")
    }


def test_the_forecast_of_a_pipeline(fk: Flowkernel, api: Api, browser: webdriver.Chrome) -> None:
    stages = [
        StageSpec("Lead", probability=10),
        StageSpec("Qualified", probability=40),
        StageSpec("Proposal", probability=70),
        StageSpec("Won", probability=100, is_won=True),
        StageSpec("Lost", probability=0, is_lost=True),
    ]
    columns = [
        ColumnSpec("amount", field_type="number"),
        ColumnSpec("close_date", field_type="date"),
    ]
    pid = fk.pipelines.create_pipeline("Deals", REP, stages=stages, columns=columns).id
    now = datetime.now(UTC).replace(microsecond=0)
    soon, later = (now + timedelta(days=15)).date(), (now + timedelta(days=50)).date()
    # deal: amount, close date, the stages it went through and how many days ago
    script: dict[str, tuple[int, date | None, list[tuple[str, int]]]] = {
        "a": (1000, soon, [("lead", 40), ("qualified", 20), ("proposal", 5)]),
        "b": (500, later, [("lead", 25), ("qualified", 10)]),
        "c": (200, None, [("lead", 12)]),
        "d": (
            3000,
            (now - timedelta(days=10)).date(),
            [("lead", 50), ("qualified", 35), ("won", 8)],
        ),
        "e": (100, None, [("lead", 45), ("lost", 33)]),
    }
    path: dict[int, list[datetime]] = {}
    for n, (amount, close, steps) in enumerate(script.values()):
        deal = fk.place(pid, "deal", n + 1, REP).id
        values: dict[str, object] = {"amount": amount}
        if close is not None:
            values["close_date"] = close.isoformat()
        fk.items.set_values(deal, values, REP)
        for stage, _ago in steps[1:]:
            fk.move(deal, stage, REP)
        path[deal] = [now - timedelta(days=ago) for _stage, ago in steps]
    backdate(fk, path)

    sign_in(api, browser)
    browser.get(f"{api.url}/#/pipelines/{pid}")
    wait(browser).until(seen.element_to_be_clickable((By.ID, "tab-forecast"))).click()
    table = wait(browser).until(seen.visibility_of_element_located((By.ID, "by-period")))
    assert browser.find_element(By.ID, "close-column").get_attribute("value") == "close_date"
    assert "close month (close_date)" in table.text
    rows = {
        r.get_attribute("data-period"): tuple(cells(r).values())
        for r in table.find_elements(By.CSS_SELECTOR, "tr[data-period]")
    }
    # open now: a (proposal, 70%), b (qualified, 40%), c (lead, 10%, no close date); a month
    # ago: a (lead) and d (qualified); items, value, weighted, each with the month before's
    assert rows == {
        month(soon): ("1 (prev 1)", "1,000 (prev 1,000)", "700 (prev 100)"),
        month(later): ("1 (prev 0)", "500 (prev 0)", "200 (prev 0)"),
        "": ("1 (prev 0)", "200 (prev 0)", "20 (prev 0)"),
        "total": ("3 (prev 2)", "1,700 (prev 4,000)", "920 (prev 1,300)"),
    }
    figures = browser.find_element(By.ID, "stage-figures")
    lead = cells(figures.find_element(By.CSS_SELECTOR, 'tr[data-stage="lead"]'))
    assert lead["in_stage"] == "1 (prev 1)" and lead["entered"].startswith("2 (prev")
    assert lead["conversion"].startswith("50% (prev ") and lead["idle"] == "—"
    assert lead["p50_days"].startswith("15.0 d (prev") and lead["p90_days"].startswith("20.0 d")
    qualified = cells(figures.find_element(By.CSS_SELECTOR, 'tr[data-stage="qualified"]'))
    assert qualified["conversion"].startswith("50% (prev ")
    assert qualified["p90_days"].startswith("27.0 d")

    # idle after 7 days, by keyboard: c (lead, 12 days) and b (qualified, 10 days) are idle
    idle = browser.find_element(By.ID, "idle-days")
    idle.send_keys("7", Keys.ENTER)
    wait(browser).until(
        seen.text_to_be_present_in_element(
            (By.CSS_SELECTOR, '#stage-figures tr[data-stage="lead"] [data-figure="idle"]'),
            "over 7 d",
        )
    )
    figures = browser.find_element(By.ID, "stage-figures")
    idle_by_stage = {
        r.get_attribute("data-stage"): cells(r)["idle"]
        for r in figures.find_elements(By.CSS_SELECTOR, "tbody tr")
    }
    assert idle_by_stage == {
        "lead": "1 (prev 1) over 7 d",
        "qualified": "1 (prev 0) over 7 d",
        "proposal": "0 (prev 0) over 7 d",
        "won": "—",
        "lost": "—",
    }
    assert "idle_days=7" in browser.execute_script("return location.hash")
    shoot(browser, "web-forecast")

    # the figures are the API's
    token = api.tokens.issue("check", account_id=1, user_id=7).token
    with api.client(token) as client:
        answer = client.get(
            f"/v1/pipelines/{pid}/forecast", params={"close_column": "close_date", "idle_days": 7}
        ).json()
    previous = {s["code"]: s for s in answer["previous"]["stages"]}
    for s in answer["stages"]:
        row = cells(figures.find_element(By.CSS_SELECTOR, f'tr[data-stage="{s["code"]}"]'))
        assert row["entered"] == f"{s['entered']} (prev {previous[s['code']]['entered']})"
        assert row["advanced"] == f"{s['advanced']} (prev {previous[s['code']]['advanced']})"

    # by quarter; a refused idle threshold shows the API's reason
    Select(browser.find_element(By.ID, "period")).select_by_value("quarter")
    browser.find_element(By.ID, "forecast-show").click()
    wait(browser).until(
        seen.text_to_be_present_in_element((By.CSS_SELECTOR, "#by-period caption"), "quarter")
    )
    quarter = f"{soon.year}-Q{(soon.month - 1) // 3 + 1}"
    assert browser.find_elements(By.CSS_SELECTOR, f'#by-period tr[data-period="{quarter}"]')
    idle = browser.find_element(By.ID, "idle-days")
    idle.clear()
    idle.send_keys("nowhere:3", Keys.ENTER)
    wait(browser).until(seen.text_to_be_present_in_element((By.ID, "forecast-error"), "nowhere"))
    assert not browser.find_elements(By.ID, "by-period")
