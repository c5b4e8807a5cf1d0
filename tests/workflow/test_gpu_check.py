"""benchmarks/gpu_check.py in its CPU mode: every step's line in the summary, and a step that runs past
its time limit recorded as failed with the reason while the steps after it still run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def steps_of_the_script() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STEPS


def gpu_check(out: Path, *flags: str, timeout: int) -> tuple[subprocess.CompletedProcess, dict, str]:
    """The check on the CPU into ``out``: the process, summary.json and summary.md."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    summary = json.loads((out / "summary.json").read_text())
    return done, summary, (out / "summary.md").read_text()


@pytest.mark.slow
def test_cpu_mode_passes_every_step(tmp_path):
    done, summary, markdown = gpu_check(tmp_path, timeout=600)
    lines = {step["step"]: (step["status"], step.get("reason")) for step in summary["steps"]}
    assert list(lines) == list(steps_of_the_script())
    assert all(status == "passed" for status, _ in lines.values()), lines
    assert done.returncode == 0, done.stderr[-3000:]
    for step in lines:
        assert f"- **{step}** passed (" in markdown
        assert (tmp_path / "logs" / f"{step}.log").is_file()
    assert (tmp_path / "workflow" / "results" / "tables" / "headline.md").is_file()


def test_a_step_past_its_limit_fails_with_the_reason_and_the_next_still_runs(tmp_path):
    done, summary, markdown = gpu_check(
        tmp_path, "--steps", "exactness,training", "--limit", "exactness=1", timeout=300
    )
    exactness, training = summary["steps"]
    assert (exactness["step"], exactness["status"]) == ("exactness", "failed")
    assert exactness["reason"] == "timed out after 1 s (the step's limit)"
    assert exactness["seconds"] < 10  # its pytest was killed with it
    assert (training["step"], training["status"]) == ("training", "passed"), training
    assert done.returncode == 1
    assert "- **exactness** failed (" in markdown and "of 1): timed out after 1 s" in markdown
    assert "- **training** passed (" in markdown
