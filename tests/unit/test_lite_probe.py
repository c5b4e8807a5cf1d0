"""benchmarks/lite_probe.py on a tiny model: every variant tuned on the same data, scored at each
step count, tabled, and not rerun when the probe is started again."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variant_names_give_the_loss_flags():
    probe = load_benchmark("lite_probe")
    base_ce = {2: {"ce": "8.0"}, 4: {"ce": "2.0"}}

    def flags(name):
        found = probe.variant_flags(name, [2, 4], base_ce)
        return dict(zip(found[::2], found[1::2], strict=True))

    assert flags("it") == {"--layer-weights": "4:1", "--intermediate-ramp": "0.0", "--exit-target": "gold"}
    assert flags("uniform-ramp")["--intermediate-ramp"] == str(probe.RAMP)
    assert flags("linear")["--layer-weights"] == "2:1,4:2"
    assert flags("final6-distil") == {
        "--layer-weights": "2:1,4:6",
        "--intermediate-ramp": "0.0",
        "--exit-target": "final",
    }
    assert flags("normalised-ramp-distil")["--layer-weights"] == "2:0.125,4:0.5"
    for bad in ("cubic", "uniform-fast", "finalx"):
        with pytest.raises(SystemExit, match="unknown variant"):
            probe.variant_flags(bad, [2, 4], base_ce)


@pytest.mark.slow
def test_probe_scores_each_variant_at_each_step_and_resumes(tiny_model_dirs, tmp_path):
    dirs, _ = tiny_model_dirs
    alpaca = tmp_path / "alpaca.json"
    sums = [(a, b) for a in range(20) for b in range(5)]
    records = [{"instruction": f"Add {a} and {b}.", "input": "", "output": str(a + b)} for a, b in sums]
    alpaca.write_text(json.dumps(records))
    out = tmp_path / "probe"
    args = ["--alpaca", str(alpaca), "--no-verify", "--out", str(out), "--base", str(dirs["lite"])]
    args += ["--layers", "2,4", "--variants", "it,uniform-ramp-distil", "--steps", "1,2", "--batch-size", "2"]
    args += ["--eval-n", "4", "--max-length", "256"]
    probe = load_benchmark("lite_probe")
    probe.main(args)

    with (out / "probe.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    runs = {(r["variant"], r["step"]) for r in rows}
    assert runs == {
        ("base", "0"),
        ("it", "1"),
        ("it", "2"),
        ("uniform-ramp-distil", "1"),
        ("uniform-ramp-distil", "2"),
    }
    assert all(r["layer"] in ("2", "4") and float(r["ce"]) > 0 for r in rows)
    assert all(float(r["agreement"]) == 1.0 for r in rows if r["layer"] == "4")
    step1, step2 = (
        {r["layer"]: r["ce"] for r in rows if r["variant"] == "it" and r["step"] == s} for s in "12"
    )
    assert step1 != step2  # the step-1 checkpoint is scored, not the final model twice
    assert (out / "it" / "model" / "config.json").is_file() and not (out / "it" / "checkpoints").exists()
    table = (out / "probe.md").read_text()
    assert "| uniform-ramp-distil | 2 |" in table and "agree L2" in table

    log_size = (out / "probe.log").stat().st_size
    probe.main(args)  # everything scored: nothing reruns
    assert (out / "probe.log").stat().st_size == log_size
