"""``lite plan-cost``: the job counts are the workflow's, the step model is a roofline, the paper
configs' runtime limits cover the estimates and their generation fits on one GPU."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from test_workflow import CI_CONFIG, copy_workflow, planned_jobs, snakemake

from lite.cli import main as lite_main
from lite.commands.plan_cost import Gpu, decode_seconds, estimate, generation_memory, model_shape, verdict
from lite.flops import LLAMA2_7B, LLAMA2_13B, ModelShape, decode_step_flops

ROOT = Path(__file__).resolve().parents[2]
GPU = Gpu(flops=400e12, bandwidth=2000e9, memory=80e9, layer_overhead=0.0, load=0.0)


def test_job_counts_are_the_workflows(tmp_path):
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["generation"]["shards"] = 2
    jobs = planned_jobs(snakemake(copy_workflow(tmp_path, config), "-n", "all", timeout=180))
    stages = {s.name: s for s in estimate(config, GPU, prompt_tokens=20, train_tokens=None)}
    assert stages["tune"].jobs == jobs["tune"]
    assert stages["generate"].jobs == jobs["generate"]
    assert stages["trace"].jobs == jobs["trace"] + jobs.get("trace_calibration", 0)


def test_decode_step_is_the_slower_of_compute_and_memory():
    shape = ModelShape(hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=16, vocab=100, layers=2)
    prompt = 5
    prefill_free = Gpu(flops=1e30, bandwidth=1e9, memory=1e9, layer_overhead=0.0, load=0.0)
    # memory-bound: every layer's and the head's weights plus the KV cache, read once per step
    read = (shape.layers * shape.layer_weights + shape.hidden * shape.vocab) * 2
    read += 3 * (prompt + 1) * shape.kv_per_position * 2
    assert decode_seconds(shape, prefill_free, 3, 3, prompt, 1) == pytest.approx(read / 1e9)
    # compute-bound: the batch's matmuls (prefill of the prompt included)
    slow = Gpu(flops=1e6, bandwidth=1e30, memory=1e9, layer_overhead=0.0, load=0.0)
    seconds = decode_seconds(shape, slow, 3, 3, prompt, 1)
    assert seconds > 3 * decode_step_flops(shape, prompt + 1, shape.layers) / 1e6
    # batches of 3 for 6 prompts: twice the time of one batch
    assert decode_seconds(shape, slow, 6, 3, prompt, 1) == pytest.approx(2 * seconds)


def test_verdicts():
    assert verdict(90, 60) == "ok" and verdict(80, 60) == "tight" and verdict(50, 60) == "too short"
    assert verdict(None, 60) == "no limit set"


def test_model_shapes_from_the_config():
    paper = yaml.safe_load((ROOT / "configs" / "paper-7b.yaml").read_text())
    assert model_shape("llama2-7b", paper["models"]["llama2-7b"]) == LLAMA2_7B
    assert model_shape("llama2-13b", paper["models"]["llama2-13b"]) == LLAMA2_13B
    assert LLAMA2_7B.weights == pytest.approx(6.74e9, rel=1e-3)  # LLaMA-2-7B's parameter count
    tiny = yaml.safe_load(CI_CONFIG.read_text())["models"]["tiny4"]
    assert model_shape("tiny4", tiny).layers == tiny["base"]["layers"]


def test_memory_grows_with_the_batch_and_stops_fitting():
    paper = yaml.safe_load((ROOT / "configs" / "paper-13b.yaml").read_text())
    memory = generation_memory(paper, prompt_tokens=200)["llama2-13b"]
    assert memory < 0.9 * 80e9  # the configured batch fits an 80 GB GPU
    huge = copy.deepcopy(paper)
    huge["generation"]["batch_size"] = 256
    assert generation_memory(huge, prompt_tokens=200)["llama2-13b"] > 80e9


@pytest.mark.parametrize("name", ["paper-7b", "paper-13b", "smollm2-135m"])
def test_paper_configs_runtimes_cover_the_estimates(capsys, name):
    lite_main(["plan-cost", "--configfile", str(ROOT / "configs" / f"{name}.yaml")])
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line
        for line in out.splitlines()[2:]
        if line.split()[0] in ("tune", "generate", "trace")
    }
    assert set(rows) == {"tune", "generate", "trace"}, out
    assert all(" ok " in row for row in rows.values()), out
    assert "does NOT fit" not in out and "fits in 80 GB" in out
