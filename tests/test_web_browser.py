"""Headless Chromium (Debian's chromium + chromedriver, driven by selenium) on the page of the real
daemon, run as a subprocess (tests/support/daemon.py) with a watched log directory.

The daemon runs with ``[backend] type = "fake"``: this tests the page (loading, logging in, the form,
auto-refresh, escaping), not inference, which test_analysis_model.py covers with the real model.
No token is configured, so the daemon generates one into its state directory, as on a first
``make run``; the test reads it from there like a technician's administrator would.

Screenshots are saved under tests/artifacts/web/ (kept out of git) for people to look at.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.support.daemon import REPO, Daemon, query, write_config
from tests.support.wait import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING_HINT = (
    f"{CHROMIUM} or {CHROMEDRIVER} is missing: `make test` installs the Debian packages chromium and"
    " chromium-driver (or: apt-get install chromium chromium-driver)"
)
ARTIFACTS = REPO / "tests" / "artifacts" / "web"
SCRIPT_LINE = "2026-11-27 10:00:04 ERROR bad request from 10.0.0.9: <script>alert(1)</script>"

# Installed before any page script runs: an alert() that ran would be recorded, not shown, and so
# would any inline script the Content-Security-Policy had to block (there should be none at all).
TRAPS = """
window.__alerts = [];
window.alert = window.confirm = window.prompt = function (m) { window.__alerts.push(String(m)); };
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) { window.__csp.push(e.violatedDirective); });
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path, monkeypatch):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(MISSING_HINT, pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must never try to download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")),
                              options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRAPS})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def daemon(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    config = write_config(tmp_path / "edged.toml", {
        "store": {"path": str(tmp_path / "state" / "edged.db")},
        "logs": {"paths": [str(logs / "*.log")], "rescan_interval_s": 0.5},
        "backend": {"type": "fake"},
        "web": {"refresh_s": 2},
    })
    d = Daemon(tmp_path, config)
    d.start()
    try:
        yield d
    finally:
        if d.alive():
            d.terminate()


def screenshot(driver, name: str, width: int = 1280) -> Path:
    """A full-page screenshot (the window stretched to the page's height)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(width, 1000)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height, 600), 4000))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path


def text_of(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    from selenium.common.exceptions import StaleElementReferenceException

    elements = driver.find_elements(By.CSS_SELECTOR, css)
    try:
        return elements[0].text if elements else ""
    except StaleElementReferenceException:  # the page was replaced between finding and reading it
        return ""


def assert_nothing_ran(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    assert driver.execute_script("return window.__alerts") == []
    assert driver.execute_script("return window.__csp") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text


def test_technician_logs_in_reports_an_incident_and_sees_it_analyzed(daemon, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base = daemon.web_url()
    token_file = tmp_path / "state" / "web_token"
    assert str(token_file) in daemon.log_text()  # the banner says where the token is
    token = token_file.read_text().strip()

    browser.get(base + "/")
    wait_for(lambda: "Healthy" in text_of(browser, "#health"), timeout=20, what="overview says Healthy")
    assert "backlog" in text_of(browser, "main").lower()
    screenshot(browser, "overview")

    browser.get(base + "/submit")
    browser.find_element(By.LINK_TEXT, "Log in").click()
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_for(lambda: browser.find_elements(By.ID, "incident-form"), timeout=10, what="the incident form")
    browser.find_element(By.ID, "machine").send_keys("press-07")
    browser.find_element(By.ID, "text").send_keys("Hydraulic hose burst at press 7, oil on the floor, press stopped.")
    browser.find_element(By.CSS_SELECTOR, "#incident-form button").click()
    wait_for(lambda: "/records/s%3A" in browser.current_url, timeout=15, what="the record page of the report")
    record_id = unquote(browser.current_url.split("/records/")[1].split("?")[0])
    assert query(daemon.workdir / "state" / "edged.db", "SELECT kind, source FROM records WHERE record_id = ?",
                 record_id) == [("incident", "submit:web")]
    # The page refreshes itself while the report waits; no reload from the test.
    wait_for(lambda: "normal" in text_of(browser, "#analysis") and not browser.find_elements(By.CSS_SELECTOR, ".pending"),
             timeout=60, interval=0.5, what="the analyzed result on the record page")
    assert "Hydraulic hose burst" in text_of(browser, "#record-text")
    screenshot(browser, "record")

    Select(browser.find_element(By.NAME, "label")).select_by_value("fault")
    browser.find_element(By.NAME, "by").send_keys("Ana")
    browser.find_element(By.CSS_SELECTOR, "#correct-form button").click()
    wait_for(lambda: "Correction saved" in text_of(browser, "main"), timeout=10, what="the correction notice")
    assert query(daemon.workdir / "state" / "edged.db",
                 "SELECT old_label, new_label, corrected_by FROM label_corrections WHERE record_id = ?",
                 record_id) == [("normal", "fault", "Ana")]
    assert_nothing_ran(browser)


def test_a_script_in_a_log_line_is_shown_as_text_and_never_runs(daemon, browser, tmp_path):
    from selenium.webdriver.common.by import By

    base = daemon.web_url()
    db = daemon.workdir / "state" / "edged.db"
    with open(tmp_path / "logs" / "cell-4.log", "a") as f:
        f.write("2026-11-27 10:00:03 INFO cycle complete part 4411\n" + SCRIPT_LINE + "\n")
    wait_for(lambda: query(db, "SELECT count(*) FROM results r JOIN records USING (record_id) WHERE text = ?",
                           SCRIPT_LINE)[0][0], timeout=30, interval=0.3, what="the line stored and analyzed")

    browser.get(base + "/results?q=alert")
    assert SCRIPT_LINE in text_of(browser, "table.results")  # the text, visible as written
    assert not browser.find_elements(By.CSS_SELECTOR, "main script")
    assert_nothing_ran(browser)
    screenshot(browser, "results")

    browser.find_element(By.PARTIAL_LINK_TEXT, "bad request").click()
    wait_for(lambda: browser.find_elements(By.ID, "record-text"), timeout=10, what="the record page")
    assert text_of(browser, "#record-text") == SCRIPT_LINE
    # Each extracted field says where it came from: the time and the level from the line's header.
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#fields .field-source"), timeout=10,
             what="the fields with their sources")
    sources = {row.find_element(By.TAG_NAME, "th").text: row.find_element(By.CSS_SELECTOR, ".field-source")
               for row in browser.find_elements(By.CSS_SELECTOR, "#fields tr")}
    assert sources["event_time"].text == sources["level"].text == "header", {k: v.text for k, v in sources.items()}
    assert sources["level"].get_attribute("title") == "read from the line's header"
    assert {tag.text for tag in sources.values()} <= {"header", "record", "pattern", "model"}
    assert "ERROR header" in text_of(browser, "#fields")
    screenshot(browser, "record-fields")
    assert_nothing_ran(browser)

    browser.get(base + "/")
    wait_for(lambda: "Healthy" in text_of(browser, "#health"), timeout=20, what="overview")
    assert_nothing_ran(browser)
    screenshot(browser, "overview-phone", width=390)

