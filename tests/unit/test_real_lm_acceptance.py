"""benchmarks/real_lm_acceptance.py: every bar of a real-LM run read from the run's own files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from test_lite_probe import load_benchmark
from test_report import record_files  # noqa: F401  (the fixture)

from lite.report.findings import layer_alignment


def _layer_ce(path: Path, final_ce: float) -> Path:
    rows = [(2, 9.0), (4, 7.0), (6, 5.0), (8, final_ce)]
    pd.DataFrame(
        [{"layer": k, "ce": ce, "agreement": 0.5, "tokens": 100, "records": 6} for k, ce in rows]
    ).to_csv(path, index=False)
    return path


def test_every_bar_is_computed_from_the_run(record_files, tmp_path):  # noqa: F811
    module = load_benchmark("real_lm_acceptance")
    results = Path(record_files["root"][0])
    ce_it = _layer_ce(tmp_path / "it.csv", 2.0)
    table = module.acceptance(
        results, "tiny8", ce_it, _layer_ce(tmp_path / "lite.csv", 2.04), ["dynamic-paper"]
    )
    met = dict(zip(table["criterion"], table["met"], strict=True))
    assert met["LITE's final-layer held-out CE within 5 % of IT's"] == "met"
    # the middle checkpoint of 2/4/6 is 4; its gap is the alignment tables' own
    alignment = pd.concat(pd.read_csv(p) for p in record_files["alignment"])
    gap = layer_alignment(alignment, "tiny8", "lite")[4] - layer_alignment(alignment, "tiny8", "it")[4]
    (middle,) = [row for row in table.itertuples() if row.criterion.startswith("alignment at the middle")]
    assert "(layer 4)" in middle.criterion and f"({gap:+.1f} points)" in middle.measured
    assert middle.met == ("met" if gap >= 20 else "not met")
    (dynamic,) = [row for row in table.itertuples() if row.criterion.startswith("dynamic-paper keeps")]
    assert "% of the tokens exit early" in dynamic.measured
    assert sum(row.criterion.endswith("below dynamic-paper") for row in table.itertuples()) == 3
    # a final layer 10 % worse than IT's misses its bar
    worse = module.acceptance(
        results, "tiny8", ce_it, _layer_ce(tmp_path / "worse.csv", 2.2), ["dynamic-paper"]
    )
    assert worse.loc[0, "met"] == "not met" and "+10.0 %" in worse.loc[0, "measured"]
