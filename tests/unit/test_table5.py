"""Table 5: agreement statistics, the table built from a real ratings database, and the workflow's
rules (table5 joins `all` only when raters are named; the second judge runs against a local
OpenAI-compatible server)."""

from __future__ import annotations

import csv
import math

import pytest
import yaml
from openai_api_server import OpenAIServer
from test_annotate import PROMPTS, SYSTEMS, write_pair
from test_workflow import CI_CONFIG, copy_workflow, planned_jobs, snakemake

from lite.human.agreement import krippendorff_alpha_interval, spearman
from lite.human.store import Store
from lite.human.table5 import table5
from lite.io import InputError
from lite.judge import read_judgments
from lite.judge.records import load_pair
from lite.plan import TABLE5, Plan


def test_krippendorff_alpha_matches_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", 4 observers x 12 units
    # with missing values: alpha for interval data is 0.849.
    n = None
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    assert krippendorff_alpha_interval(zip(*observers, strict=True)) == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha_interval([[3, 3], [5, 5], [1, 1]]) == 1.0
    assert math.isnan(krippendorff_alpha_interval([[3, 3], [3, 3]]))  # no variation: undefined
    assert math.isnan(krippendorff_alpha_interval([[3], [4, None]]))  # nothing pairable


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(5 / 6)  # ties share their mean rank
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))


# Per rater, per id: (score of A, score of B); None skips the item.
RATINGS = {
    "ann": {"v1": (8, 4), "v2": (6, 6), "v3": (9, 3), "v4": (5, 7), "v5": (7, 2), "v6": None},
    "ben": {"v1": (7, 5), "v2": (5, 6), "v3": (8, 4), "v4": (4, 8), "v5": (6, 3), "v6": (5, 5)},
}


def fill(store: Store, ratings=RATINGS) -> None:
    """Rate through the store as the page does: each score given for the response as shown."""
    for rater, scores in ratings.items():
        store.sign_in(rater)
        while (item := store.next_assignment(rater)) is not None:
            key = next(
                row[0]
                for row in PROMPTS
                if item.response_1 in (row[2], row[3]) and item.instruction == row[1]
            )
            given = scores[key]
            if given is None:
                store.skip(rater, item.number)
                continue
            a_first = item.response_1 == next(row[2] for row in PROMPTS if row[0] == key)
            store.rate(rater, item.number, *(given if a_first else given[::-1]))


def judgment(key: str, a: float, b: float, *, systems=SYSTEMS, name="claude", model="claude-x", parsed=True):
    outcome = "win" if a > b else "loss" if a < b else "tie"
    return {"model": "tiny8", "evalset": "vicuna", "id": key, "category": "generic",
            "system_a": systems[0], "system_b": systems[1], "orders": [{}, {}],
            "score_a": a if parsed else None, "score_b": b if parsed else None,
            "outcome": outcome if parsed else None, "consistent": parsed or None, "parsed": parsed,
            "judge": {"name": name, "model": model}}  # fmt: skip


@pytest.fixture
def db(tmp_path):
    store = Store.create_or_open(tmp_path / "vicuna.sqlite", load_pair(*write_pair(tmp_path)))
    fill(store)
    return store.path


def test_table5_rows_and_agreement(db):
    judge = [judgment("v1", 8, 5), judgment("v2", 6, 6), judgment("v3", 9, 2), judgment("v4", 3, 9),
             judgment("v5", 6, 4), judgment("v6", 7, 5)]  # fmt: skip
    # The second judge judged the pair the other way round: B first, mapped back by table5.
    scores = [("v1", 7, 6), ("v2", 5, 6), ("v3", 8, 3), ("v4", 6, 5), ("v5", 6, 4), ("v6", 4, 6)]
    second = [judgment(k, b, a, systems=SYSTEMS[::-1], name="openai", model="gpt-x") for k, a, b in scores]
    frame = table5(db, judge, second).set_index("source")
    assert list(frame.index) == ["ann", "ben", "mean of raters", "claude (claude-x)", "openai (gpt-x)"]
    assert list(frame["kind"]) == ["rater", "rater", "humans", "judge", "second_judge"]
    assert set(frame["system_a"]) == {"lite.final"} and set(frame["evalset"]) == {"vicuna"}
    ann, ben, humans = frame.loc["ann"], frame.loc["ben"], frame.loc["mean of raters"]
    assert (ann["n"], ann["score_a"], ann["score_b"]) == (5, 7.0, 4.4)  # v6 skipped
    assert (ann["wins"], ann["ties"], ann["losses"]) == (3, 1, 1)
    assert (ben["n"], ben["score_a"], ben["score_b"]) == (6, 35 / 6, 31 / 6)
    # humans: per item the mean over who rated it (v6 only ben's)
    assert humans["n"] == 6 and humans["score_a"] == pytest.approx((7.5 + 5.5 + 8.5 + 4.5 + 6.5 + 5) / 6)
    units = [
        [8, 7],
        [4, 5],
        [6, 5],
        [6, 6],
        [9, 8],
        [3, 4],
        [5, 4],
        [7, 8],
        [7, 6],
        [2, 3],
        [None, 5],
        [None, 5],
    ]
    assert humans["alpha"] == pytest.approx(krippendorff_alpha_interval(units))
    assert math.isnan(ann["alpha"]) and math.isnan(humans["spearman_vs_humans"])
    # a rater against the other raters (here: the other one), on the items both rated
    ann_scores = [8, 6, 9, 5, 7, 4, 6, 3, 7, 2]
    ben_scores = [7, 5, 8, 4, 6, 5, 6, 4, 8, 3]
    assert ann["spearman_vs_humans"] == pytest.approx(spearman(ann_scores, ben_scores))
    assert ann["agree_vs_humans_pct"] == pytest.approx(80.0)  # v2: ann tie, ben prefers B
    # the judge against the humans, on the same items
    judge_scores = [8, 6, 9, 3, 6, 7, 5, 6, 2, 9, 4, 5]
    human_scores = [7.5, 5.5, 8.5, 4.5, 6.5, 5, 4.5, 6, 3.5, 7.5, 2.5, 5]
    assert frame.loc["claude (claude-x)", "spearman_vs_humans"] == pytest.approx(
        spearman(judge_scores, human_scores)
    )
    assert frame.loc["claude (claude-x)", "agree_vs_humans_pct"] == pytest.approx(100 * 4 / 6)
    assert math.isnan(frame.loc["claude (claude-x)", "spearman_vs_judge"])
    # the second judge, mapped back to A/B, against the first judge
    second_row = frame.loc["openai (gpt-x)"]
    assert (second_row["score_a"], second_row["score_b"]) == (6.0, 5.0)
    assert (second_row["wins"], second_row["ties"], second_row["losses"]) == (4, 0, 2)
    assert second_row["agree_vs_judge_pct"] == pytest.approx(100 * 3 / 6)


def test_judges_are_read_on_the_rated_items_only(db):
    judge = [judgment(f"v{i}", 5, 5) for i in range(1, 7)] + [judgment("v6", 9, 1)]
    with pytest.raises(InputError, match="judged more than once"):
        table5(db, judge)
    judge = [judgment(f"v{i}", 5, 5) for i in range(1, 6)] + [judgment("v6", 9, 1, parsed=False)]
    assert table5(db, judge).set_index("kind").loc["judge", "n"] == 5  # unscored instances drop out
    with pytest.raises(InputError, match="no scored judgment of lite.final vs lite.dynamic-paper"):
        table5(db, [judgment("v1", 5, 5, systems=("it.final", "lite.final"))])
    with pytest.raises(InputError, match="several judges"):
        table5(db, [judgment("v1", 5, 5), judgment("v2", 5, 5, name="reference", model=None)])


def test_named_raters_must_have_rated(db):
    judge = [judgment(f"v{i}", 5, 5) for i in range(1, 7)]
    assert list(table5(db, judge, raters=["BEN"])["source"])[:2] == ["ben", "mean of raters"]
    with pytest.raises(InputError, match="no ratings yet from carol"):
        table5(db, judge, raters=["ann", "carol"])


# ---------------------------------------------------------------------- the workflow
@pytest.fixture
def config():
    return yaml.safe_load(CI_CONFIG.read_text())


def test_table5_joins_all_only_when_raters_are_named(config):
    assert TABLE5 not in Plan(config).all_targets()
    config["human"] = {"raters": ["ann", "ben"]}
    assert Plan(config).all_targets()[-1] == TABLE5
    inputs = Plan(config).table5_inputs()
    assert inputs["db"] == "results/tiny4/human/vicuna.sqlite"
    assert (
        inputs["judgments"]
        == "results/tiny4/judgments/reference/vicuna/lite.final~lite.dynamic-calibrated.jsonl"
    )
    assert "second" not in inputs
    config["judge"]["second"] = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    assert Plan(config).table5_inputs()["second"] == (
        "results/tiny4/judgments/openai/vicuna/lite.final~lite.dynamic-calibrated.jsonl"
    )


def test_named_raters_without_ratings_stop_the_dry_run_with_a_hint(tmp_path, config):
    config["human"] = {"raters": ["ann"]}
    result = snakemake(copy_workflow(tmp_path, config), "-n", "all", timeout=120)
    assert result.returncode != 0
    assert (
        "no ratings yet" in result.stdout + result.stderr
        and "lite annotate --model tiny4" in result.stdout + result.stderr
    )


@pytest.mark.slow
def test_table5_rule_builds_from_the_database_with_both_judges(tmp_path, config):
    """The real rules on pre-made generations: the reference judge, the second judge against a
    local OpenAI-compatible server, and table5 from the ratings database."""
    config["human"] = {
        "model": "tiny4",
        "evalset": "vicuna",
        "systems": list(SYSTEMS),
        "raters": ["ann", "ben"],
    }
    with OpenAIServer(models=["judge-m"]) as server:
        config["judge"]["second"] = {"base_url": server.base_url, "model": "judge-m", "max_retries": 0}
        workdir = copy_workflow(tmp_path / "wf", config)
        gens = write_pair(workdir, model="tiny4")
        fill(Store.create_or_open(workdir / "results/tiny4/human/vicuna.sqlite", load_pair(*gens)))
        dry = planned_jobs(snakemake(workdir, "-n", "all", timeout=120))
        assert dry["table5"] == 1 and dry["judge_second"] == 1
        # Only the rules that turn the given generations into table5; nothing upstream is rebuilt.
        allowed = ["--allowed-rules", "judge", "judge_second", "table5"]
        result = snakemake(workdir, "--cores", "1", TABLE5, *allowed, timeout=300)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        assert len(server.calls()) == 12  # 6 prompts, both orders
    second = read_judgments(
        workdir / "results/tiny4/judgments/openai/vicuna/lite.final~lite.dynamic-paper.jsonl"
    )
    assert {r["judge"]["name"] for r in second} == {"openai"} and all(r["parsed"] for r in second)
    with open(workdir / TABLE5, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["kind"] for r in rows] == ["rater", "rater", "humans", "judge", "second_judge"]
    assert rows[3]["source"] == "reference" and rows[4]["source"] == "openai (judge-m)"
    assert rows[4]["agree_vs_judge_pct"] != ""
    assert (workdir / "results/tables/table5.md").read_text().startswith("**table5.**")
    # judged once: a second run has nothing to do
    assert planned_jobs(snakemake(workdir, "-n", TABLE5, *allowed, timeout=120)) == {}
