"""Multi-GPU tuning as the tune rule launches it: torchrun, 2 processes, DeepSpeed ZeRO (here on CPU
over gloo), and a final model folder that opens with AutoModelForCausalLM.from_pretrained.

    .venv/bin/pytest tests/workflow/test_deepspeed.py -q  # ~20 s a run; + 60-100 s once per machine, below

DeepSpeed 0.19.8 JIT-builds its `deepspeed_shm_comm` op whenever its torch comm backend starts on
Linux (TorchBackend.__init__ calls build_shm_op() unconditionally; no config key or environment
variable turns it off). The build (g++, ~60-100 s on 2 cores) is cached in TORCH_EXTENSIONS_DIR
(default ~/.cache/torch_extensions), so it is paid once per fresh CI machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_workflow import CI_CONFIG, copy_workflow, snakemake
from transformers import AutoModelForCausalLM

from lite.cli import main
from lite.io import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# the tune rule's launcher for resources.tune.gpus = 2 (workflow/rules/tune.smk)
LAUNCH = ["torchrun", "--standalone", "--nproc-per-node", "2", "-m", "lite.cli"]
STEPS, BATCH, N_TRAIN = 3, 4, 64


def test_tune_rule_launches_torchrun_with_deepspeed_for_two_gpus(tmp_path):
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["resources"]["tune"]["gpus"] = 2
    config["train"]["deepspeed"] = "configs/deepspeed/zero2_cpu.json"
    workdir = copy_workflow(tmp_path, config)
    result = snakemake(workdir, "-n", "-p", "results/tiny4/tuned/lite", timeout=120)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text

    # -p prints each job's command as "Shell command: ..."
    # the tuning job (the tiny model's pretraining job runs `lite tune --data-format text` too)
    (command,) = [
        line.split(": ", 1)[1]
        for line in text.splitlines()
        if " tune --base " in line and "--data-format text" not in line
    ]
    assert command.startswith(f"exec {' '.join(LAUNCH)} tune --base results/tiny4/pretrained "), command
    assert " --deepspeed configs/deepspeed/zero2_cpu.json " in command

    # one GPU: plain `lite tune`, no torchrun
    config["resources"]["tune"]["gpus"] = 1
    workdir = copy_workflow(tmp_path / "one", config)
    text = snakemake(workdir, "-n", "-p", "results/tiny4/tuned/lite", timeout=120).stdout
    assert "exec lite tune --base results/tiny4/pretrained " in text and "torchrun" not in text


SHUT_DOWN = """
import os, torch, deepspeed
from deepspeed.utils import groups
from lite.tune import _shut_down_distributed
deepspeed.init_distributed(dist_backend="gloo")
world_clone = groups._clone_world_group()  # the group ZeRO reduces over, a gloo backend of its own
del world_clone
_shut_down_distributed(with_deepspeed=True)
assert not torch.distributed.is_initialized()
assert groups._WORLD_GROUP is None, "DeepSpeed still holds its clone of the world group"
print("closed")
"""


def test_shut_down_releases_deepspeeds_own_groups_before_exit(tmp_path):
    # A group DeepSpeed keeps a reference to outlives torch.distributed.destroy_process_group and is
    # torn down at interpreter exit, where a rank can abort after its tuning is saved.
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", SHUT_DOWN], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("closed"), done.stdout + done.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A synthetic training set and a 4-layer tiny base model (built by the CLI, in this process)."""
    root = tmp_path_factory.mktemp("deepspeed")
    train, base = root / "train.jsonl", root / "base"
    # short prompts (the world's invented names take many tokens under a 300-token vocabulary)
    main(
        ["prepare-train", "--source", "synthetic", "--n", str(N_TRAIN), "--seed", "0", "--out", str(train)]
        + ["--families", "count,capital,after,opposite"]
    )
    main(
        ["init-model", "--kind", "tiny", "--train", str(train), "--out", str(base), "--layers", "4"]
        + ["--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "64", "--vocab", "300"]
    )
    return root, base, train


def _torchrun_tune(workspace, name: str, ds_config: str, *extra: str) -> tuple[Path, Path]:
    root, base, train = workspace
    out, checkpoints = root / name, root / f"{name}-checkpoints"
    cmd = [*LAUNCH, "tune", "--base", str(base), "--train", str(train), "--out", str(out)]
    cmd += ["--checkpoint-dir", str(checkpoints), "--scheme", "uniform", "--layers", "2"]
    cmd += ["--max-steps", str(STEPS), "--batch-size", str(BATCH), "--max-length", "160", "--lr", "1e-3"]
    cmd += ["--deepspeed", str(ROOT / "configs" / "deepspeed" / ds_config), "--threads", "1"]
    cmd += ["--logging-steps", "1", "--save-steps", "100", *extra]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["timeout", "--kill-after=30", "480", *cmd],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    (root / f"{name}.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"rc {done.returncode}:\n{(done.stdout + done.stderr)[-6000:]}"
    return out, checkpoints


def _check_run(workspace, out: Path, checkpoints: Path, partition_files: list[str]) -> None:
    _, base, _ = workspace
    # two processes ran: one RNG state per rank, and DeepSpeed wrote one ZeRO partition per rank
    final = checkpoints / f"checkpoint-{STEPS}"
    assert sorted(p.name for p in final.glob("rng_state_*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
    partitions = sorted(p.name for p in (final / f"global_step{STEPS}").iterdir())
    assert set(partition_files) <= set(partitions), partitions

    # data parallel: each step consumed 2 processes x BATCH examples
    log = read_jsonl(out / "train_log.jsonl")
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    assert steps[-1]["epoch"] == pytest.approx(STEPS * 2 * BATCH / N_TRAIN)
    assert {"ce_layer_2", "ce_layer_4"} <= set(steps[-1])  # the LITE loss, per layer
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert resolved["global_step"] == STEPS and resolved["tune"]["deepspeed"].endswith(".json")

    # the final folder is an ordinary HF model: every weight present, trained, finite
    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True, dtype=torch.float32)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    before = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    after = model.state_dict()
    assert all(torch.isfinite(t).all() for t in after.values())
    changed = [k for k in after if not torch.allclose(after[k], before[k])]
    assert len(changed) > len(after) // 2, f"only {changed} changed"
    logits = model(torch.tensor([[1, 5, 7, 9]])).logits  # (batch, seq, vocab)
    assert logits.shape == (1, 4, model.config.vocab_size) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_zero2_two_processes_train_and_save_a_loadable_model(workspace):
    out, checkpoints = _torchrun_tune(workspace, "zero2", "zero2_cpu.json")
    ranks = [f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1)]
    _check_run(workspace, out, checkpoints, ranks)


@pytest.mark.slow
def test_zero3_bf16_paper_config_two_processes_gather_a_loadable_model(workspace):
    # the paper's config itself: bf16, ZeRO-3 (weights partitioned over the ranks, gathered on save)
    out, checkpoints = _torchrun_tune(workspace, "zero3", "zero3_bf16.json", "--bf16")
    ranks = [f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1)]
    ranks += [f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt" for rank in (0, 1)]
    _check_run(workspace, out, checkpoints, ranks)
