"""`snakemake seeds`: the headline findings of several seeds side by side, each tested against its
target on every seed (lite.report.seeds, `lite seeds`)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_report import _inputs_for, record_files  # noqa: F401  (the fixture)

from lite import cli
from lite.io import InputError
from lite.report import seeds
from lite.report.findings import KEPT_SCORE, SAVED, SCORE, Claim, Finding, headline_findings
from lite.report.inputs import load_inputs

OPTIONS = {"tuning": "lite", "final": "final", "dynamic": "dynamic-paper", "aggressive": "dynamic-aggressive"}
OPTIONS["baseline"] = "it"


def _finding(key: str, measures: dict[str, float], holds: bool = True) -> Finding:
    return Finding(Claim(key), key, "", holds, "", measures)


def _saving(saved: float, score: float, final: float = 8.0) -> dict[str, float]:
    return {SAVED: saved, SCORE: score, KEPT_SCORE: 100 * score / final}


@pytest.mark.parametrize(
    ("found", "key", "meets"),
    [
        # table6: every baseline at least half a point below dynamic exit
        ({"table6": _finding("table6", {"x": 0.5, "y": 1.2})}, "table6", True),
        ({"table6": _finding("table6", {"x": 0.49, "y": 1.2})}, "table6", False),
        # fig5: at least 15 points at every checkpoint
        ({"fig5": _finding("fig5", {"3": 15.0, "6": 40.0})}, "fig5", True),
        ({"fig5": _finding("fig5", {"3": 14.9, "6": 40.0})}, "fig5", False),
        # fig4: LITE's final layer within 5 % of IT's, either way
        ({"fig4": _finding("fig4", {"IT": 8.0, "LITE": 7.7, "LITE score, % of IT's": 96.25})}, "fig4", True),
        ({"fig4": _finding("fig4", {"IT": 7.0, "LITE": 7.7, "LITE score, % of IT's": 110.0})}, "fig4", False),
        # table1: 20-60 % saved at 97 % or more of the final layer's score
        ({seeds.SAVING: _finding(seeds.SAVING, _saving(35.0, 7.8))}, seeds.SAVING, True),
        ({seeds.SAVING: _finding(seeds.SAVING, _saving(65.0, 8.0))}, seeds.SAVING, False),
        ({seeds.SAVING: _finding(seeds.SAVING, _saving(35.0, 7.7))}, seeds.SAVING, False),
        # fig12: the aggressive thresholds save more and score no higher than dynamic exit
        (
            {
                seeds.SAVING: _finding(seeds.SAVING, _saving(35.0, 7.8)),
                "fig12": _finding("fig12", _saving(45.0, 7.5)),
            },
            "fig12",
            True,
        ),
        (
            {
                seeds.SAVING: _finding(seeds.SAVING, _saving(35.0, 7.8)),
                "fig12": _finding("fig12", _saving(30.0, 7.5)),
            },
            "fig12",
            False,
        ),
        # the other findings go by their headline verdict
        ({"fig3": _finding("fig3", {}, holds=False)}, "fig3", False),
        # what the inputs cannot tell is not a pass
        ({}, "fig12", None),
        ({"fig5": _finding("fig5", {"3": math.nan})}, "fig5", None),
    ],
)
def test_each_target_has_its_margin(found, key, meets):
    assert seeds.SEED_TARGETS[key].test(found) is meets


def test_a_finding_holds_only_when_every_seed_meets_its_target():
    by_seed = {
        0: {"table6": _finding("table6", {"gap": 0.8})},
        1: {"table6": _finding("table6", {"gap": 0.3})},
        2: {"table6": _finding("table6", {"gap": 1.0})},
    }
    verdicts, measures = seeds.seeds_tables(by_seed)
    assert verdicts.loc[0, ["seed 0", "seed 1", "seed 2", "every seed"]].tolist() == [
        "meets",
        "misses",
        "meets",
        "does not hold",
    ]
    row = measures.iloc[0]
    assert (row["mean"], row["min"], row["max"]) == pytest.approx((0.7, 0.3, 1.0))
    assert row["sd"] == pytest.approx(pd.Series([0.8, 0.3, 1.0]).std())


def test_lite_seeds_measures_every_model_as_the_headline_does(record_files, tmp_path):  # noqa: F811
    paths = _inputs_for("headline", record_files)
    out = tmp_path / "tables" / "seeds.csv"
    assert (
        cli.main(
            ["seeds", "--out", str(out), "--models", "tiny8=0,tiny8b=7", "--dynamic", "dynamic-paper", *paths]
        )
        == 0
    )
    table = pd.read_csv(out)
    inputs = load_inputs(paths)
    for model, seed in (("tiny8", 0), ("tiny8b", 7)):
        for finding in headline_findings(inputs, model, **OPTIONS):
            for name, value in finding.measures.items():
                row = table[(table["finding"] == finding.shown_in) & (table["measure"] == name)]
                assert len(row) == 1, (finding.shown_in, name)
                assert row[f"seed {seed}"].iloc[0] == pytest.approx(value, nan_ok=True)
    # every headline finding is there with its target and a verdict on both seeds
    measured = {f.shown_in for f in headline_findings(inputs, "tiny8", **OPTIONS)}
    assert set(table["finding"]) == measured and measured <= set(seeds.SEED_TARGETS)
    assert set(table["target seed 0"]) <= {"meets", "misses", "not measured"}
    assert set(table["every seed"]) <= {"holds", "does not hold"}
    md = out.with_suffix(".md").read_text()
    assert "| finding | target | seed 0 | seed 7 | every seed |" in md
    assert out.with_suffix(".html").read_text().count("<table") == 2
    assert out.with_name("seeds.csv.config.json").is_file()


def test_lite_seeds_names_a_model_without_records(record_files, tmp_path):  # noqa: F811
    paths = _inputs_for("headline", record_files)
    with pytest.raises(InputError, match="no generation records of tiny9"):
        cli.main(["seeds", "--out", str(tmp_path / "s.csv"), "--models", "tiny8=0,tiny9=1", *paths])
