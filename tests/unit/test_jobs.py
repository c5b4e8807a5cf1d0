"""The rules' input and params functions (lite.jobs): what a job reads and the flags it passes."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from lite.jobs import Jobs
from lite.plan import Plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_log_and_benchmark_files_are_per_shard_only_when_sharded(config):
    assert (
        Jobs(Plan(config)).per_shard("logs/{model}/trace/{tuning}.log") == "logs/{model}/trace/{tuning}.log"
    )
    config["generation"]["shards"] = 3
    jobs = Jobs(Plan(config))
    assert jobs.per_shard("results/benchmarks/{model}/generate/{tuning}/{decoder}.tsv") == (
        "results/benchmarks/{model}/generate/{tuning}/{decoder}/{shard}-of-{nshards}.tsv"
    )
    assert jobs.decoded_files("calibration trace") == [
        "results/{model}/shards/traces/{tuning}/calibration/{shard}-of-{nshards}.jsonl"
    ]


def test_generation_flags_take_the_commands_defaults(config):
    for key in ("batch_size", "seed", "device", "dtype", "kv_cache", "agreement_prompts"):
        config["generation"].pop(key, None)
    plan = Plan(config)
    assert Jobs(plan).device_args() == "--device cpu --dtype float32"
    assert (plan.generation_settings["batch_size"], plan.generation_seed(plan.main)) == (8, 0)
    assert plan.shards == 1


def test_decoder_inputs_and_thresholds(config):
    jobs = Jobs(Plan(config))
    calibrated = SimpleNamespace(model="tiny12", tuning="lite", decoder="dynamic-calibrated")
    assert jobs.decoder_inputs(calibrated)["thresholds"] == "results/tiny12/thresholds/calibrated.json"
    assert jobs.thresholds_arg(calibrated) == "--thresholds results/tiny12/thresholds/calibrated.json"
    paper = SimpleNamespace(model="tiny12", tuning="lite", decoder="dynamic-paper")
    assert jobs.thresholds_arg(paper).startswith("--thresholds '{")
    assert jobs.thresholds_arg(SimpleNamespace(model="tiny12", tuning="lite", decoder="final")) == ""


def test_latency_flags_take_the_benchmarks_defaults(config):
    bench = copy.deepcopy(config["bench"])
    del bench["batch_sizes"], bench["eos"], bench["category"]
    jobs = Jobs(Plan({**config, "bench": bench}))
    assert (jobs.latency_list("batch_sizes"), jobs.plan.bench_settings["eos"]) == ("1", "forbid")
    assert jobs.latency_category_arg(None) == ""
    assert jobs.latency_list("widths") == ",".join(map(str, bench["widths"]))


def test_data_source_flags(config):
    jobs = Jobs(Plan(config))
    args = jobs.eval_source_args(SimpleNamespace(evalset="vicuna"))
    assert args.startswith("--source synthetic --n ") and "--families " in args
    assert jobs.eval_source_file(SimpleNamespace(evalset="vicuna")) == []
    assert jobs.source_file({"source": "alpaca"}) == "results/downloads/alpaca"


def test_gated_decoders_read_their_exit_gates_and_the_bench_times_the_options(config):
    config["bench"]["exits"] = ["dynamic-calibrated-probe-copy", "dynamic-x2-copy"]
    jobs = Jobs(Plan(config))
    gated = SimpleNamespace(model="tiny12", tuning="lite", decoder="dynamic-calibrated-probe-copy")
    assert jobs.decoder_inputs(gated)["gates"] == "results/tiny12/probes/lite.json"
    assert jobs.thresholds_arg(gated) == (
        "--thresholds results/tiny12/thresholds/calibrated.json --gates results/tiny12/probes/lite.json"
    )
    copied = SimpleNamespace(model="tiny12", tuning="lite", decoder="dynamic-x2-copy")
    assert "gates" not in jobs.decoder_inputs(copied) and "--gates" not in jobs.thresholds_arg(copied)
    inputs = jobs.latency_inputs(None)
    assert inputs["gates"] == "results/tiny12/probes/lite.json"
    assert inputs["thresholds_calibrated"] == "results/tiny12/thresholds/calibrated.json"
    args = jobs.latency_exit_args(None)
    assert args.startswith("--exits dynamic-calibrated-probe-copy,dynamic-x2-copy ")
    assert "--exit-thresholds dynamic-calibrated-probe-copy=results/tiny12/thresholds/calibrated.json" in args
    assert "--exit-thresholds dynamic-x2-copy='{" in args and args.endswith(
        "--gates results/tiny12/probes/lite.json"
    )
    assert Jobs(Plan({**config, "bench": {**config["bench"], "exits": []}})).latency_exit_args(None) == ""
