"""The ratings database (a real SQLite file) and the rating page's server, over real HTTP.

The browser's side of the page is tested in tests/workflow/test_annotate_browser.py (headless Chromium).
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from test_judge_protocol import write_generations

from lite.human.server import AnnotationServer
from lite.human.settings import HumanSettings
from lite.human.store import Refused, Store, parse_score, read_meta, read_ratings
from lite.io import InputError
from lite.judge.records import load_pair

BIN = Path(sys.executable).parent
SYSTEMS = ("lite.final", "lite.dynamic-paper")
# Words a page must never contain: the systems, their tunings and decoders.
FORBIDDEN = ("lite.final", "lite.dynamic-paper", "dynamic", "final", "lite", "paper")
# (id, instruction, answer of A, answer of B, gold answer for the reference judge)
PROMPTS = [
    ("v1", "Name a colour of the sky.", "Blue.", "The sky is blue on a clear day.", "Blue."),
    ("v2", "Add two and three.", "Five.", "Two and three make five.", "Two and three make five."),
    ("v3", "Say hello kindly.", "Hello there, nice to meet you.", "Hi.", "Hello, nice to meet you."),
    ("v4", "Name a large mammal.", "The elephant.", "An elephant or a whale.", "The blue whale."),
    ("v5", "What is the opposite of hot?", "Cold.", "The opposite of hot is cold.", "Cold."),
    ("v6", "Count from one to three.", "One, two, three.", "1 2 3", "1, 2, 3"),
]


def write_pair(directory: Path, prompts=PROMPTS, model="tiny8", evalset="vicuna") -> tuple[Path, Path]:
    """Generation records of the two systems at the workflow's paths under ``directory``."""
    paths = []
    for system, column in zip(SYSTEMS, (2, 3), strict=True):
        tuning, decoder = system.split(".")
        path = directory / f"results/{model}/generations/{tuning}/{evalset}/{decoder}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        items = [(row[0], row[1], row[column], row[4]) for row in prompts]
        write_generations(path, tuning, decoder, items, model=model, evalset=evalset)
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture
def pair_files(tmp_path):
    return write_pair(tmp_path)


@pytest.fixture
def store(tmp_path, pair_files):
    return Store.create_or_open(tmp_path / "ratings.sqlite", load_pair(*pair_files))


def rows(db: Path, sql: str, *params):
    with sqlite3.connect(db) as connection:
        return connection.execute(sql, params).fetchall()


def test_each_rater_gets_their_own_order_and_balanced_sides(store):
    _, alice = store.sign_in("alice")
    _, bob = store.sign_in("Bob  ")
    assert bob.rater == "Bob"
    orders = {}
    for rater in ("alice", "Bob"):
        assigned = rows(
            store.path,
            "SELECT position, item, first FROM assignments WHERE rater = ? ORDER BY position",
            rater,
        )
        assert [p for p, _, _ in assigned] == list(range(1, 7))
        assert sorted(i for _, i, _ in assigned) == list(range(1, 7))  # every item once
        assert Counter(f for _, _, f in assigned) == {"a": 3, "b": 3}  # each system first on half
        orders[rater] = assigned
    # 6! orders x 20 side patterns: the same draw for both is a 1 in 14400 chance.
    assert orders["alice"] != orders["Bob"]
    seeds = rows(store.path, "SELECT seed FROM raters")
    assert len(seeds) == 2 and all(isinstance(s, int) for (s,) in seeds)


def test_ratings_map_back_to_systems_and_land_once(store):
    _, alice = store.sign_in("alice")
    item = store.next_assignment("alice")
    assert item.position == 1 and item.skipped is None
    store.rate("alice", item.number, "3", "9")
    store.rate("alice", item.number, " 4 ", "9")  # a revision replaces the first rating
    second = store.next_assignment("alice")
    store.skip("alice", second.number)
    assert store.progress("alice").rated == 1 and store.progress("alice").skipped == 1
    (rating, skipped) = read_ratings(store.path)
    first = rows(store.path, "SELECT first FROM assignments WHERE assignment = ?", item.number)[0][0]
    assert (rating["score_a"], rating["score_b"]) == ((4, 9) if first == "a" else (9, 4))
    shown_a = item.response_1 if first == "a" else item.response_2
    answers_a = {row[2] for row in PROMPTS}
    assert shown_a in answers_a  # Response 1 / 2 really are A / B as recorded
    assert skipped["skipped"] and skipped["score_a"] is None
    assert rows(store.path, "SELECT COUNT(*) FROM ratings")[0][0] == 2
    assert read_meta(store.path)["system_a"] == "lite.final"


@pytest.mark.parametrize("bad", ["0", "11", "7.5", "-3", "", "ten", "1e1", None])
def test_scores_outside_one_to_ten_are_refused(store, bad):
    store.sign_in("alice")
    item = store.next_assignment("alice")
    with pytest.raises(Refused) as refused:
        store.rate("alice", item.number, bad, "5")
    assert refused.value.status == 400 and "from 1 to 10" in refused.value.message
    assert rows(store.path, "SELECT COUNT(*) FROM ratings")[0][0] == 0
    assert parse_score(" 10 ") == 10 and parse_score("1") == 1


def test_the_database_itself_refuses_bad_scores(store):
    """A CHECK constraint backs the server's check, for anyone writing to the file directly."""
    store.sign_in("alice")
    item = store.next_assignment("alice")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        with sqlite3.connect(store.path) as connection:
            connection.execute(
                "INSERT INTO ratings (assignment, score_1, score_2, skipped, rated_at) "
                "VALUES (?, 11, 5, 0, 'x')",
                (item.number,),
            )


def test_another_raters_item_is_refused(store):
    store.sign_in("alice")
    store.sign_in("bob")
    theirs = store.next_assignment("alice")
    for action in (
        lambda: store.rate("bob", theirs.number, "5", "5"),
        lambda: store.skip("bob", theirs.number),
        lambda: store.assignment("bob", theirs.number),
        lambda: store.assignment("bob", 999),  # no such item: the same answer
    ):
        with pytest.raises(Refused) as refused:
            action()
        assert refused.value.status == 403
    assert rows(store.path, "SELECT COUNT(*) FROM ratings")[0][0] == 0


def test_named_raters_only_and_names_are_case_insensitive(tmp_path, pair_files):
    store = Store.create_or_open(
        tmp_path / "r.sqlite", load_pair(*pair_files), allowed_raters=("Alice", "bob")
    )
    with pytest.raises(Refused, match="not on this study's list"):
        store.sign_in("mallory")
    with pytest.raises(Refused, match="rater name"):
        store.sign_in("<script>")
    _, first = store.sign_in("ALICE")
    _, again = store.sign_in("alice")
    assert first.rater == again.rater == "Alice"
    assert rows(store.path, "SELECT COUNT(*) FROM raters")[0][0] == 1


def test_reopening_checks_the_pair_and_the_answers(tmp_path, pair_files):
    db = tmp_path / "r.sqlite"
    store = Store.create_or_open(db, load_pair(*pair_files), n=4)
    store.sign_in("alice")
    store.rate("alice", store.next_assignment("alice").number, "5", "6")
    assert rows(db, "SELECT COUNT(*) FROM items")[0][0] == 4  # the first n prompts
    Store.create_or_open(db, load_pair(*pair_files), n=4)  # same pair: opens, ratings kept
    assert len(read_ratings(db)) == 1
    with pytest.raises(InputError, match="holds ratings of lite.final vs lite.dynamic-paper"):
        Store.create_or_open(db, load_pair(pair_files[1], pair_files[0]))
    changed = [(k, i, a + " (regenerated)", b, r) for k, i, a, b, r in PROMPTS]
    regenerated = write_pair(tmp_path / "new", changed)
    with pytest.raises(InputError, match="item 'v1' was rated on a prompt or answers"):
        Store.create_or_open(db, load_pair(*regenerated))
    with pytest.raises(InputError, match="no ratings database"):
        read_ratings(tmp_path / "missing.sqlite")


def test_human_settings_defaults_and_errors():
    config = {"models": {"tiny8": {}, "tiny10": {}}, "data": {"eval": {"vicuna": {}, "koala": {}}},
              "report": {"dynamic_decoder": "dynamic-calibrated"}}  # fmt: skip
    human = HumanSettings.from_config(config)
    assert (human.model, human.evalset, human.systems, human.raters) == (
        "tiny8", "vicuna", ("lite.final", "lite.dynamic-calibrated"), ()
    )  # fmt: skip
    assert human.database == "results/tiny8/human/vicuna.sqlite"
    for section, message in [
        ({"evalset": "alpaca"}, "human.evalset"),
        ({"model": "tiny99"}, "human.model"),
        ({"systems": ["lite.final"]}, "human.systems"),
        ({"raters": ["ann", "ANN"]}, "human.raters"),
        ({"wat": 1}, "unknown field"),
    ]:
        with pytest.raises(InputError, match=message):
            HumanSettings.from_config({**config, "human": section})


# ---------------------------------------------------------------------- the server over HTTP
class Client:
    """A cookie-keeping HTTP client that does not follow redirects (so each answer is seen)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), self._NoRedirect
        )

    def request(self, path, form=None, content_type="application/x-www-form-urlencoded"):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data)
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read().decode()

    def csrf(self) -> tuple[str, str, str]:
        """(csrf token, item number, page) of the current rating page."""
        status, _, page = self.request("/rate")
        assert status == 200, page
        return (
            re.search(r'name=csrf value="([^"]+)"', page)[1],
            re.search(r'name=item value="(\d+)"', page)[1],
            page,
        )


@pytest.fixture
def served(store):
    with AnnotationServer(store, study="vicuna") as server:
        yield server


def test_pages_show_no_system_name_and_refuse_what_they_must(served, store):
    alice, bob, stranger = Client(served.url), Client(served.url), Client(served.url)
    status, _, page = alice.request("/")
    assert status == 200 and "Your name" in page
    status, headers, _ = alice.request("/signin", {"name": "alice"})
    assert status == 303 and headers["Location"] == "/rate"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    bob.request("/signin", {"name": "bob"})
    csrf, item, page = alice.csrf()
    for word in FORBIDDEN:
        assert word not in page.lower(), word
    assert "item 1 of 6" in page and "name=score_1" in page and "autofocus" in page
    assert (
        headers["Cache-Control"] == "no-store" and "default-src 'none'" in headers["Content-Security-Policy"]
    )

    # Not signed in, no CSRF token, a foreign form type, another rater's item: all refused.
    assert stranger.request("/rate", {"item": item, "score_1": "5", "score_2": "5"})[0] == 401
    assert alice.request("/rate", {"item": item, "score_1": "5", "score_2": "5"})[0] == 403
    assert alice.request("/rate", {"csrf": csrf, "item": item}, content_type="text/plain")[0] == 415
    bob_csrf, bob_item, _ = bob.csrf()
    status, _, page = bob.request("/rate", {"csrf": bob_csrf, "item": item, "score_1": "5", "score_2": "5"})
    assert status == 403 and "not assigned to you" in page
    assert bob.request(f"/rate?item={item}")[0] == 403
    # A score out of range: 400, the page again with the error and what was typed.
    status, _, page = alice.request("/rate", {"csrf": csrf, "item": item, "score_1": "11", "score_2": "5"})
    assert status == 400 and "whole number from 1 to 10" in page and 'value="11"' in page
    assert read_ratings(store.path) == []
    status, headers, _ = alice.request("/rate", {"csrf": csrf, "item": item, "score_1": "10", "score_2": "1"})
    assert status == 303 and headers["Location"] == "/rate"
    assert [(r["rater"], sorted((r["score_a"], r["score_b"]))) for r in read_ratings(store.path)] == [
        ("alice", [1, 10])
    ]
    assert alice.request("/nowhere")[0] == 404
    # Signing out ends the session on the server, not only in the browser.
    alice.request("/signout", {"csrf": csrf})
    assert alice.request("/rate", {"csrf": csrf, "item": item, "score_1": "5", "score_2": "5"})[0] == 401


def test_lite_annotate_prints_its_url_and_serves(tmp_path, pair_files):
    process = subprocess.Popen(
        [str(BIN / "lite"), "annotate", "--config", "none.yaml", "--model", "tiny8", "--evalset", "vicuna",
         "--systems", ",".join(SYSTEMS)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")},
    )  # fmt: skip
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), process.stderr.read() if not url else url
        status, _, page = Client(url).request("/")
        assert status == 200 and "Your name" in page
        assert (tmp_path / "results/tiny8/human/vicuna.sqlite").is_file()
    finally:
        process.terminate()
        process.wait(timeout=10)
    # Without the generation records it says what to build.
    result = subprocess.run(
        [str(BIN / "lite"), "annotate", "--config", "none.yaml", "--model", "tiny8", "--evalset", "koala",
         "--systems", ",".join(SYSTEMS)],
        cwd=tmp_path, capture_output=True, text=True, env={"PATH": f"{BIN}:/usr/bin:/bin"}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "no generation records of lite.final" in result.stderr
