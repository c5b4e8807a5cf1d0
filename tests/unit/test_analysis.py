"""Alignment, calibration and thresholds on hand-made traces whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lite import analysis, cli
from lite.io import InputError, read_json, write_jsonl


def _trace(rows_argmax, rows_conf, tuning="lite", evalset="vic", rid="1", model="m"):
    return {
        "model": model,
        "tuning": tuning,
        "evalset": evalset,
        "id": rid,
        "category": "c",
        "token_ids": [row[-1] for row in rows_argmax],
        "layer_argmax": rows_argmax,
        "layer_confidence": rows_conf,
    }


def _layer1_trace(points: list[tuple[float, bool]], rid: str = "t") -> dict:
    """A 2-layer trace: one position per (confidence, aligned) point for layer 1; final token 7."""
    argmax = [[7 if aligned else 9, 7] for _, aligned in points]
    conf = [[c, 0.99] for c, _ in points]
    return _trace(argmax, conf, rid=rid)


def test_alignment_counts_positions_where_layers_agree():
    # 3 layers; final tokens 5, 6, 7, 8 over two records
    a = _trace([[5, 5, 5], [1, 6, 6]], [[0.5, 0.6, 0.9], [0.2, 0.7, 0.8]], rid="a")
    b = _trace([[7, 2, 7], [8, 8, 8]], [[0.9, 0.1, 0.9], [0.95, 0.9, 0.99]], rid="b")
    other = _trace([[3, 3]], [[0.4, 0.8]], tuning="it")
    frame = analysis.alignment([a, b, other])
    lite = frame[frame["tuning"] == "lite"].set_index("layer")
    assert lite["count"].tolist() == [4, 4, 4]
    assert lite["aligned"].tolist() == [3, 3, 4]  # layer 1 misses position 2, layer 2 position 3
    assert lite["alignment_pct"].tolist() == [75.0, 75.0, 100.0]
    it = frame[frame["tuning"] == "it"]
    assert it["layer"].tolist() == [1, 2] and it["alignment_pct"].tolist() == [100.0, 100.0]


def test_calibration_bins_sum_to_totals_and_hold_one():
    rng = np.random.default_rng(0)
    traces = []
    for k in range(5):
        final = rng.integers(0, 50, size=12)
        argmax = np.stack([np.where(rng.random(12) < 0.6, final, 99), rng.integers(0, 50, 12), final], axis=1)
        conf = rng.random((12, 3))
        conf[0, 0] = 1.0  # exactly 1 must land in the last bin, not outside
        conf[1, 0] = 0.95  # a bin edge belongs to the bin that starts there
        traces.append(_trace(argmax.tolist(), conf.tolist(), rid=str(k)))
    frame = analysis.calibration(traces)
    assert frame["bin"].drop_duplicates().tolist() == analysis.bin_labels(list(analysis.DEFAULT_BINS))
    totals = frame.groupby("layer")[["count", "aligned"]].sum()
    align = analysis.alignment(traces).set_index("layer")
    assert totals["count"].tolist() == [60, 60, 60]
    assert totals["aligned"].tolist() == align["aligned"].tolist()
    layer1 = frame[frame["layer"] == 1].set_index("bin")
    confs = np.array([t["layer_confidence"] for t in traces])[:, :, 0].ravel()
    assert layer1.loc["0.99-1", "count"] == int((confs >= 0.99).sum()) >= 5
    assert layer1.loc["0.95-0.99", "count"] == int(((confs >= 0.95) & (confs < 0.99)).sum()) >= 5
    empty = frame[frame["count"] == 0]
    assert empty["alignment_pct"].isna().all()


def test_thresholds_rest_on_the_lowest_bin_of_an_aligned_run():
    # bins of 0.05: 25 aligned at .97, 25 aligned at .82, 25 at .62 of which 20 aligned (80 %)
    points = [(0.97, True)] * 25 + [(0.82, True)] * 25 + [(0.62, True)] * 20 + [(0.62, False)] * 5
    trace = _layer1_trace(points)
    assert analysis.choose_thresholds([trace], [1], target=0.95, min_count=20) == {1: 0.8}
    # a looser target accepts the .6 bin
    assert analysis.choose_thresholds([trace], [1], target=0.75, min_count=20) == {1: 0.6}
    # no bin holds 30 positions: no evidence anywhere, never exit
    assert analysis.choose_thresholds([trace], [1], target=0.95, min_count=30) == {1: analysis.NEVER_EXIT}
    # wider bins merge .82 and .97 into one bin [.8, 1]
    assert analysis.choose_thresholds([trace], [1], target=0.95, min_count=20, bin_width=0.2) == {1: 0.8}


def test_thresholds_stop_at_the_first_bin_that_falls_short():
    # the .82 bin is 80 % aligned: nothing below it may exit, although the .62 bin is perfect
    points = [(0.97, True)] * 25 + [(0.82, True)] * 20 + [(0.82, False)] * 5 + [(0.62, True)] * 25
    table = analysis.threshold_table([_layer1_trace(points)], [1], target=0.95, min_count=20)
    row = table.iloc[0]
    assert row["threshold"] == 0.95 and row["count"] == 25 and row["alignment"] == 1.0
    assert row["bin_alignment"] == 1.0


def test_thin_bins_carry_no_evidence_but_exit_with_their_neighbours():
    # 5 wrong positions at .72 sit between two perfect bins with evidence
    points = [(0.97, True)] * 25 + [(0.72, False)] * 5 + [(0.52, True)] * 25
    table = analysis.threshold_table([_layer1_trace(points)], [1], target=0.95, min_count=20)
    row = table.iloc[0]
    assert row["threshold"] == 0.5 and row["count"] == 55
    assert row["alignment"] == pytest.approx(50 / 55)


def test_a_low_bin_that_is_mostly_wrong_is_not_outvoted_by_many_easy_tokens():
    # 400 easy positions at .99 and 30 wrong ones at .31: in total 400/430 = 93 % and, with the
    # target at .9, a cumulative rule would let the .31 bin exit; the per-bin rule does not
    points = [(0.99, True)] * 400 + [(0.31, False)] * 30
    assert analysis.choose_thresholds([_layer1_trace(points)], [1], target=0.9, min_count=20) == {1: 0.95}


def test_thresholds_pool_records():
    first = _layer1_trace([(0.71, True)] * 19, rid="a")
    second = _layer1_trace([(0.71, False)] + [(0.6, False)] * 3, rid="b")
    # pooled: 20 positions in [.7, .75), 19 aligned = 95 % -> qualifies exactly at the target
    assert analysis.choose_thresholds([first, second], [1], target=0.95, min_count=20) == {1: 0.7}
    assert analysis.choose_thresholds([first], [1], target=0.95, min_count=20) == {1: analysis.NEVER_EXIT}


def test_never_exit_for_a_layer_that_never_aligns():
    points = [(c, False) for c in np.linspace(0.1, 1.0, 50)] + [(0.99, False)] * 20
    assert analysis.choose_thresholds([_layer1_trace(points)], [1, 2]) == {1: 1.01, 2: pytest.approx(0.95)}


def test_bad_traces_and_settings_are_named(tmp_path):
    bad = _trace([[5, 5], [6, 1]], [[0.5, 0.9], [0.5, 0.9]])
    bad["token_ids"] = [5, 6]
    with pytest.raises(InputError, match="last column must equal token_ids"):
        analysis.alignment([bad])
    path = tmp_path / "t.jsonl"
    good = _trace([[5, 5]], [[0.5, 0.9]])
    short = dict(good, layer_confidence=[[0.5]])
    write_jsonl(path, [good, short])
    with pytest.raises(InputError, match=r"t.jsonl:2: .*'layer_confidence'"):
        analysis.read_traces([path])
    with pytest.raises(InputError, match="layer 3 does not exist"):
        analysis.choose_thresholds([good], [3])
    with pytest.raises(InputError, match="field 'target'"):
        analysis.ThresholdConfig((1,), target=1.5)
    with pytest.raises(InputError, match="field 'min_count'"):
        analysis.ThresholdConfig((1,), min_count=0)
    with pytest.raises(InputError, match="field 'bin_width'"):
        analysis.ThresholdConfig((1,), bin_width=0.3)
    with pytest.raises(InputError, match="bins"):
        analysis.calibration([good], bins=(0.2, 0.5, 1.0))


def test_align_and_thresholds_commands(tmp_path):
    points = [(0.99, True)] * 5 + [(0.91, True)] * 20 + [(0.8, False)] * 5
    traces = tmp_path / "traces.jsonl"
    write_jsonl(traces, [_layer1_trace(points[:15], rid="a"), _layer1_trace(points[15:], rid="b")])
    out_a, out_c, out_t = (
        tmp_path / "a" / "alignment.csv",
        tmp_path / "a" / "calibration.csv",
        tmp_path / "t.json",
    )
    cli.main(
        ["align", "--traces", str(traces), "--out-alignment", str(out_a), "--out-calibration", str(out_c)]
    )
    align = pd.read_csv(out_a)
    assert align["alignment_pct"].tolist() == pytest.approx([100 * 25 / 30, 100.0])
    assert pd.read_csv(out_c).groupby("layer")["count"].sum().tolist() == [30, 30]
    assert read_json(out_a.with_name("alignment.csv.config.json"))["traces"] == [str(traces)]
    cli.main(
        [
            "thresholds",
            "--traces",
            str(traces),
            "--layers",
            "1",
            "--target",
            "0.95",
            "--min-count",
            "20",
            "--out",
            str(out_t),
        ]
    )
    document = read_json(out_t)
    assert document["thresholds"] == {"1": 0.9}
    assert (document["target"], document["min_count"], document["bin_width"]) == (0.95, 20, 0.05)
    # the evidence: 25 positions at or above 0.9, all aligned; layer 2 (final) is not asked for
    assert document["evidence"] == [
        {"layer": 1, "threshold": 0.9, "count": 25, "alignment": 1.0, "bin_alignment": 1.0}
    ]
    assert read_json(tmp_path / "t.json.config.json")["layers"] == [1]
