"""The rating page in a real browser: Debian's headless Chromium, driven through chromedriver by Selenium.

Two raters rate from the keyboard, one closes the browser half-way and resumes; every rating
lands in the SQLite file once, mapped to the right system; no page shows a system name; a score
outside 1-10 and a forged request for another rater's item are refused; table5 builds from the
database the browsers filled. Screenshots of each page go to $LITE_SCREENSHOTS (default: the
test's tmp folder).

Needs ``chromium`` and ``chromium-driver`` (apt) and ``selenium`` (the dev extra); .ci/run installs
them. Without them the tests skip on a developer's machine and fail in CI (CI=true).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_annotate import FORBIDDEN, PROMPTS, write_pair

from lite.human.server import AnnotationServer
from lite.human.store import Store, read_ratings
from lite.judge import judge_files
from lite.judge.records import load_pair

BIN = Path(sys.executable).parent
ANSWERS_A = {row[2] for row in PROMPTS}


def _missing(what: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI (.ci/run installs it)")
    pytest.skip(f"{what} is not installed")


try:
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the module still loads, so CI reports the failure below instead of skipping
    webdriver = None


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    if webdriver is None:
        _missing("the selenium package")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        _missing("Debian's chromium and chromium-driver packages")
    return chromium, driver


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("LITE_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def open_browser(browser_paths):
    """A factory of headless Chromium sessions, each with its own fresh profile (own cookies)."""
    chromium, driver = browser_paths
    opened = []

    def start():
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1280,900", "--lang=en-GB"):  # fmt: skip
            options.add_argument(arg)
        browser = webdriver.Chrome(service=Service(driver), options=options)
        opened.append(browser)
        return browser

    yield start
    for browser in opened:
        try:
            browser.quit()
        except Exception:  # already closed by the test (a rater closing the window)
            pass


@pytest.fixture
def site(tmp_path):
    a, b = write_pair(tmp_path)
    store = Store.create_or_open(tmp_path / "results/tiny8/human/vicuna.sqlite", load_pair(a, b))
    with AnnotationServer(store, study="vicuna") as server:
        yield server, store, (a, b)


def wait(browser) -> WebDriverWait:
    """Waits through a page being replaced: an element may vanish between finding and reading it."""
    return WebDriverWait(
        browser, 10, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
    )


def heading(browser) -> str:
    return browser.find_element(By.TAG_NAME, "h1").text


def error_naming(browser, text: str) -> str | None:
    """The page's error message if it contains ``text`` (None while another page is shown; an
    element the new page replaced while it was read is retried by ``wait``)."""
    return next((e.text for e in browser.find_elements(By.ID, "error") if text in e.text), None)


def wait_heading(browser, text: str) -> None:
    wait(browser).until(lambda b: text in heading(b))


def assert_hidden(browser) -> None:
    """No system, tuning or decoder name anywhere in the page's HTML."""
    source = browser.page_source.lower()
    for word in FORBIDDEN:
        assert word not in source, f"{word!r} in {browser.current_url}: {source[:3000]}"


def sign_in(browser, url: str, name: str, shots: Path | None = None) -> None:
    browser.get(url)
    assert_hidden(browser)
    field = browser.switch_to.active_element  # the name field has focus
    assert field.get_attribute("id") == "name"
    if shots is not None:
        browser.save_screenshot(str(shots / "1-sign-in.png"))
    field.send_keys(name, Keys.ENTER)
    wait(browser).until(lambda b: "item" in heading(b) or "done" in heading(b))


def score_of(text: str) -> int:
    """What a scripted rater gives a response: fixed per text, so the database can be checked."""
    return 1 + sum(map(ord, text)) % 10


def rate_from_keyboard(browser) -> tuple[str, str]:
    """Rate the item shown with the keyboard only; returns the two responses as shown."""
    assert_hidden(browser)
    responses = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".responses .text")]
    position = heading(browser).split("item ")[1].split(" of")[0]
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "score_1"  # the first score field has focus
    focused.send_keys(str(score_of(responses[0])), Keys.TAB)
    browser.switch_to.active_element.send_keys(str(score_of(responses[1])), Keys.ENTER)
    wait(browser).until(lambda b: f"item {position} of" not in heading(b))
    return responses[0], responses[1]


def test_two_raters_rate_one_resumes_and_every_rating_lands_once(site, open_browser, shots, tmp_path):
    server, store, gens = site
    alice = open_browser()
    sign_in(alice, server.url, "alice", shots)
    wait_heading(alice, "item 1 of 6")
    assert_hidden(alice)
    alice.save_screenshot(str(shots / "2-rating.png"))
    seen = {"alice": [], "bob": []}
    for _ in range(2):
        seen["alice"].append(rate_from_keyboard(alice))
    assert "2 rated, 0 skipped, 4 to go" in alice.find_element(By.ID, "progress").text
    # Half-way through the third item: a score typed but not saved, then the window is closed.
    alice.switch_to.active_element.send_keys("7")
    alice.quit()
    assert len(read_ratings(store.path)) == 2  # both saved ratings are there, nothing else

    bob = open_browser()
    sign_in(bob, server.url, "bob")
    for _ in range(4):
        seen["bob"].append(rate_from_keyboard(bob))
    # Alt+S skips (the Skip button's access key), with no score typed.
    bob.switch_to.active_element.send_keys(Keys.ALT, "s")
    wait_heading(bob, "item 6 of 6")
    seen["bob"].append(rate_from_keyboard(bob))
    wait_heading(bob, "all done")
    assert_hidden(bob)
    bob.save_screenshot(str(shots / "5-done.png"))
    assert "You rated 5 and skipped 1 of 6 items" in bob.find_element(By.ID, "progress").text

    # Alice comes back in a new browser (no cookie left): she resumes at her third item.
    alice = open_browser()
    sign_in(alice, server.url, "Alice")
    wait_heading(alice, "item 3 of 6")
    assert alice.find_element(By.ID, "score_1").get_attribute("value") == ""  # unsaved input is gone
    for _ in range(4):
        seen["alice"].append(rate_from_keyboard(alice))
    wait_heading(alice, "all done")

    ratings = read_ratings(store.path)
    assert sorted((r["rater"], r["position"]) for r in ratings) == sorted(
        [("alice", p) for p in range(1, 7)] + [("bob", p) for p in range(1, 7)]
    )  # every item once per rater
    answers = {row[0]: (row[2], row[3]) for row in PROMPTS}
    for rating in ratings:
        if rating["skipped"]:
            assert (rating["rater"], rating["position"], rating["score_a"]) == ("bob", 5, None)
            continue
        answer_a, answer_b = answers[rating["id"]]
        assert (rating["score_a"], rating["score_b"]) == (score_of(answer_a), score_of(answer_b))
    # What each rater saw, in their own drawn order, maps to the recorded sides.
    for rater, pairs in seen.items():
        mine = [r for r in ratings if r["rater"] == rater and not r["skipped"]]
        for rating, shown in zip(mine, pairs, strict=True):
            assert (shown[0] in ANSWERS_A) == (rating["first"] == "a")
    orders = {rater: [(r["id"], r["first"]) for r in ratings if r["rater"] == rater] for rater in seen}
    assert orders["alice"] != orders["bob"]

    # table5 builds from the database the browsers filled, against the reference judge.
    judgments = tmp_path / "results/tiny8/judgments/reference/vicuna/lite.final~lite.dynamic-paper.jsonl"
    judge_files("reference", *gens, judgments)
    out = tmp_path / "results/tables/table5.csv"
    command = ["table5", "--db", str(store.path), "--judgments", str(judgments), "--out", str(out)]
    result = subprocess.run([str(BIN / "lite"), *command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as handle:
        table = {row["source"]: row for row in csv.DictReader(handle)}
    assert list(table) == ["alice", "bob", "mean of raters", "reference"]
    alice_a = [score_of(answers[r["id"]][0]) for r in ratings if r["rater"] == "alice"]
    assert float(table["alice"]["score_a"]) == pytest.approx(sum(alice_a) / 6)
    assert table["bob"]["n"] == "5" and table["reference"]["n"] == "6"
    # The two raters apply one rule to the same texts: perfect agreement.
    assert float(table["mean of raters"]["alpha"]) == pytest.approx(1.0)
    assert "table5" in out.with_suffix(".md").read_text()


def test_bad_scores_and_forged_requests_are_refused(site, open_browser, shots):
    server, store, _ = site
    alice, bob = open_browser(), open_browser()
    sign_in(alice, server.url, "alice")
    sign_in(bob, server.url, "bob")
    alices_item = alice.find_element(By.NAME, "item").get_attribute("value")

    # The browser itself will not send 11: the field is out of range and the form stays put.
    alice.switch_to.active_element.send_keys("11", Keys.TAB)
    alice.switch_to.active_element.send_keys("5", Keys.ENTER)
    assert alice.execute_script("return document.getElementById('score_1').validity.rangeOverflow")
    assert heading(alice).endswith("item 1 of 6") and read_ratings(store.path) == []

    # Past the browser's checks (as a script or an old browser would send it), the server refuses.
    for bad in ("11", "0", "7.5", "seven"):
        alice.execute_script(
            "for (const f of document.querySelectorAll('input[type=number]')) {"
            " f.type = 'text'; f.removeAttribute('min'); f.removeAttribute('max'); }"
        )
        field = alice.find_element(By.ID, "score_1")
        field.clear()
        field.send_keys(bad)
        alice.find_element(By.ID, "score_2").clear()
        alice.find_element(By.ID, "score_2").send_keys("5", Keys.ENTER)
        # Wait for the answer to this value: the previous page's error stays in the DOM until the
        # new page replaces it, and an element read in between goes stale.
        error = wait(alice).until(lambda b, bad=bad: error_naming(b, repr(bad)))
        assert "whole number from 1 to 10" in error
        # What was typed comes back in the field's markup, to correct (a number field shows only numbers).
        assert f'value="{bad}"' in alice.page_source
        assert_hidden(alice)
    alice.save_screenshot(str(shots / "3-bad-score.png"))
    assert read_ratings(store.path) == []

    # Bob forges a rating of Alice's item: his own signed-in form (his CSRF token), her item number.
    bob.execute_script("document.querySelector('input[name=item]').value = arguments[0];", alices_item)
    bob.find_element(By.ID, "score_1").send_keys("1", Keys.TAB)
    bob.switch_to.active_element.send_keys("1", Keys.ENTER)
    wait_heading(bob, "403 Forbidden")
    assert "not assigned to you" in bob.find_element(By.ID, "error").text
    assert_hidden(bob)
    bob.save_screenshot(str(shots / "4-forged.png"))
    bob.get(f"{server.url}rate?item={alices_item}")  # nor may he look at it
    assert "403 Forbidden" in heading(bob) and "not assigned to you" in bob.find_element(By.ID, "error").text
    # A form posted without the CSRF token (as from another site) is refused too.
    bob.get(server.url)
    bob.execute_script("document.querySelector('#rate input[name=csrf]').remove();")
    bob.find_element(By.ID, "score_1").send_keys("1", Keys.TAB)
    bob.switch_to.active_element.send_keys("1", Keys.ENTER)
    wait_heading(bob, "403 Forbidden")
    assert "not sent from the rating page" in bob.find_element(By.ID, "error").text
    # Nor can a script on the page post behind the form's back: the page's policy blocks fetch.
    blocked = bob.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/rate', {method: 'POST'}).then(r => done('sent ' + r.status), e => done('blocked'));"
    )
    assert blocked == "blocked"
    assert read_ratings(store.path) == []

    # Alice's own correct rating goes through.
    alice.get(server.url)
    rate_from_keyboard(alice)
    (rating,) = read_ratings(store.path)
    assert rating["rater"] == "alice" and rating["position"] == 1
