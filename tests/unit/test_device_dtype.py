"""Device and dtype of generate, trace and latency: settings, records, placement, bf16 agreement, traces'
memory, and what the workflow rules pass on."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
import torch
import yaml
from test_workflow import CI_CONFIG, copy_workflow, snakemake

from lite.cli import main as lite_main
from lite.commands import generate as generate_command
from lite.decoders.agreement import agreement, hf_greedy
from lite.decoders.cached import exit_cached
from lite.decoders.dispatch import trace
from lite.decoders.engines import exit_nocache, greedy_cached
from lite.decoders.policies import RandomPolicy, SequentialPolicy, ThresholdPolicy
from lite.decoders.slots import Meter
from lite.decoders.specs import Draft
from lite.decoders.speculative import speculative
from lite.flops import ModelShape
from lite.io import read_json, read_jsonl

EOS, PAD, N = 2, 0, 4
PROMPTS = [[5, 17, 33], [8, 9, 10, 11, 12, 13, 14], [40, 41]]
# every decoder kind of lite.decoders.specs that the workflow generates with
DECODERS = ["final", "fixed-L2", "dynamic-paper", "random-half", "random-k", "sequential"]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dirs):
    dirs, evalset = tiny_model_dirs
    return dirs["lite"], evalset


def generate_args(model_dir, evalset, out, decoder, *extra):
    return ["generate", "--model", str(model_dir), "--evalset", str(evalset), "--model-name", "tiny4",
            "--tuning", "lite", "--evalset-name", "unit", "--max-new-tokens", "5", "--batch-size", "3",
            "--threads", "1", "--decoder", decoder, "--checkpoints", "2,3", "--out", str(out),
            "--thresholds", '{"2": 0.3, "3": 0.3}', *extra]  # fmt: skip


# ---- lite generate in bfloat16 -----------------------------------------------------------------


@pytest.mark.parametrize("decoder", DECODERS)
def test_generate_bfloat16_records_and_config(tmp_path, model_dir, decoder):
    directory, evalset = model_dir
    out = tmp_path / "bf16.jsonl"
    lite_main(generate_args(directory, evalset, out, decoder, "--kv-cache", "--dtype", "bfloat16",
                            "--agreement-prompts", "3"))  # fmt: skip
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["e1", "e2", "e3"]
    assert all(r["decoder"] == decoder and 1 <= len(r["token_ids"]) <= 5 for r in records)
    assert all(len(r["exit_layers"]) == len(r["token_ids"]) == len(r["confidences"]) for r in records)
    config = read_json(out.with_name(out.name + ".config.json"))
    assert (config["device"], config["dtype"]) == ("cpu", "bfloat16")
    check = config["agreement"]
    if decoder == "fixed-L2":  # no independent reference for a fixed exit
        assert check == {"reference": None, "prompts": 0}
    else:
        assert check["reference"] == ("hf-generate" if decoder == "final" else "nocache")
        assert check["prompts"] == 3 and check["tokens"] >= 3
        assert 0.0 <= check["token_agreement"] <= 1.0 and 0.0 <= check["prompt_agreement"] <= 1.0

    # the model really ran in bfloat16: its confidences are not the float32 ones
    full = tmp_path / "fp32.jsonl"
    lite_main(generate_args(directory, evalset, full, decoder, "--kv-cache"))
    config32 = read_json(full.with_name(full.name + ".config.json"))
    assert (config32["device"], config32["dtype"]) == ("cpu", "float32") and "agreement" not in config32
    assert [r["confidences"] for r in records] != [r["confidences"] for r in read_jsonl(full)]


def test_float32_agreement_is_complete(tmp_path, model_dir):
    directory, evalset = model_dir
    for decoder in ("final", "dynamic-paper"):
        out = tmp_path / f"{decoder}.jsonl"
        lite_main(generate_args(directory, evalset, out, decoder, "--kv-cache", "--agreement-prompts", "2"))
        check = read_json(out.with_name(out.name + ".config.json"))["agreement"]
        assert check["prompts"] == 2 and check["token_agreement"] == check["prompt_agreement"] == 1.0


def test_agreement_counts_tokens_before_the_first_difference():
    result = agreement([[1, 2, 3, 4], [5, 6], [7, 8, 9]], [[1, 2, 9, 9], [5, 6], [0, 8, 9]])
    assert result == {"prompts": 3, "tokens": 9, "token_agreement": 4 / 9, "prompt_agreement": 1 / 3}
    assert agreement([[1, 2]], [[1, 2, 3]])["token_agreement"] == 2 / 3  # stopped early
    with pytest.raises(ValueError, match="one reference per response"):
        agreement([[1]], [])


def test_final_equals_hf_generate_in_bfloat16_at_batch_one(sharp):
    # the same block shapes as HF (a prefill, then one position per step): no rounding can differ
    model = sharp.to(torch.bfloat16)
    for prompt in PROMPTS:
        ours = greedy_cached(model, [prompt], N, max_new_tokens=8, eos_ids={EOS}, pad_id=PAD)[0]
        assert ours.token_ids == hf_greedy(model, prompt, max_new_tokens=8, eos_ids={EOS}, pad_id=PAD)


# ---- device settings ---------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["generate", "trace", "latency"])
def test_device_cuda_without_cuda_fails_at_once_naming_the_setting(tmp_path, command):
    args = {
        "generate": generate_args(tmp_path, tmp_path / "e.jsonl", tmp_path / "o.jsonl", "final"),
        "trace": ["trace", "--model", str(tmp_path), "--evalset", "e.jsonl", "--out", "o.jsonl",
                  "--model-name", "m", "--tuning", "t", "--evalset-name", "e"],
        "latency": ["latency", "--model", str(tmp_path), "--evalset", "e.jsonl", "--checkpoints", "2,4",
                  "--thresholds", '{"2": 0.9}', "--out", "t.csv", "--figure", "f.pdf"],
    }[command]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "lite.cli", *args, "--device", "cuda"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"lite {command}: --device cuda: ")
    assert elapsed < 5, elapsed


def test_resolve_device(monkeypatch):
    def settings(device):
        return argparse.Namespace(device=device)

    assert generate_command.resolve_device(settings("cpu"), "generate") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert generate_command.resolve_device(settings("auto"), "generate") == torch.device("cpu")
    # a CUDA build of torch on a node without a GPU: found after importing torch
    monkeypatch.setattr(generate_command, "_torch_without_gpu_support", lambda: None)
    with pytest.raises(SystemExit, match=r"^lite trace: --device cuda: torch .* sees no CUDA device"):
        generate_command.resolve_device(settings("cuda"), "trace")


def test_cpu_only_torch_build_is_recognised_without_importing_torch():
    version = generate_command._torch_without_gpu_support()
    assert (version is None) == (torch.version.cuda is not None or torch.version.hip is not None)
    if version is not None:
        assert version == torch.__version__


def test_decoders_make_every_tensor_on_the_model_device(sharp):
    """Run every decoder with torch's default device set to ``meta``: a tensor made without the
    model's device would land there and the decode would fail (or differ)."""
    model = sharp
    common = {"max_new_tokens": 6, "eos_ids": {EOS}, "pad_id": PAD}
    checkpoints = [1, 2, 3, 4]
    keys = [str(i) for i in range(len(PROMPTS))]
    shape = ModelShape.from_config(model.config)
    runs = {
        "final": lambda: greedy_cached(model, PROMPTS, N, **common),
        "trace": lambda: trace(model, PROMPTS, **common),
        "nocache": lambda: exit_nocache(
            model, PROMPTS, checkpoints, ThresholdPolicy([0.2, 0.3, 0.4]), **common
        ),
        "cached": lambda: exit_cached(
            model, PROMPTS, checkpoints, ThresholdPolicy([0.2, 0.3, 0.4]), meter=Meter(shape, 3), **common
        ),
        "random": lambda: exit_cached(model, PROMPTS, checkpoints, RandomPolicy(0.5, 3, 0, keys), **common),
        "sequential": lambda: exit_nocache(model, PROMPTS, checkpoints, SequentialPolicy(4), **common),
        "speculative": lambda: speculative(model, PROMPTS, Draft(2, 3), meter=Meter(shape, 3), **common),
    }  # fmt: skip
    expected = {name: run() for name, run in runs.items()}
    torch.set_default_device("meta")
    try:
        got = {name: run() for name, run in runs.items()}
    finally:
        torch.set_default_device(None)
    for name in runs:
        assert [g.token_ids for g in got[name]] == [g.token_ids for g in expected[name]], name
        assert [g.exit_layers for g in got[name]] == [g.exit_layers for g in expected[name]], name


# ---- traces' memory ----------------------------------------------------------------------------


def test_trace_holds_one_layers_logits_at_a_time(sharp):
    """Every LM-head output is watched; when the next layer's head runs, the earlier logits must be
    gone but for the last one's (a 7B trace would otherwise hold N x batch x vocab floats)."""
    model = sharp
    alive, peak = [], [0]

    def watch(module, args, logits):
        still = [ref for ref in alive if ref() is not None]
        peak[0] = max(peak[0], len(still))
        alive[:] = [*still, weakref.ref(logits)]

    handle = model.lm_head.register_forward_hook(watch)
    try:
        gens = trace(model, PROMPTS, max_new_tokens=4, eos_ids={EOS}, pad_id=PAD)
    finally:
        handle.remove()
    assert peak[0] <= 1, peak[0]
    assert all(len(row) == N for g in gens for row in g.layer_argmax)


# ---- the workflow passes the settings on -------------------------------------------------------


def shell_commands(text: str, needle: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in text.splitlines() if needle in line and ": " in line]


def test_rules_pass_device_and_dtype(tmp_path):
    config = yaml.safe_load(CI_CONFIG.read_text())
    targets = ["results/tiny4/generations/lite/vicuna/final.jsonl", "results/tables/latency.csv"]
    default = snakemake(copy_workflow(tmp_path / "default", config), "-n", "-p", *targets, timeout=180)
    assert default.returncode == 0, default.stdout + default.stderr
    config["generation"].update(device="auto", dtype="bfloat16", agreement_prompts=4)
    chosen = snakemake(copy_workflow(tmp_path / "gpu", config), "-n", "-p", *targets, timeout=180)
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    for result, flags in (
        (default, "--device cpu --dtype float32"),
        (chosen, "--device auto --dtype bfloat16"),
    ):
        text = result.stdout + result.stderr
        for needle in ("lite generate ", "lite trace ", "lite latency "):
            commands = shell_commands(text, needle)
            assert commands and all(flags in c for c in commands), (needle, commands)
    assert all(
        "--agreement-prompts 4" in c for c in shell_commands(chosen.stdout + chosen.stderr, "lite generate ")
    )


def test_paper_configs_decode_on_the_gpu_in_bfloat16():
    root = Path(__file__).resolve().parents[2]
    for name in ("paper-7b", "paper-13b", "smollm2-135m"):
        generation = yaml.safe_load((root / "configs" / f"{name}.yaml").read_text())["generation"]
        assert (generation["device"], generation["dtype"]) == ("auto", "bfloat16"), name
    embedded = yaml.safe_load((root / "config.yaml").read_text())["generation"]
    assert (embedded["device"], embedded["dtype"]) == ("cpu", "float32")
