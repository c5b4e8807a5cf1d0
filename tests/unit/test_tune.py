"""`lite tune` end to end on a tiny model: outputs, per-layer logs, resume, SIGTERM, config checks."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lite import tune as tune_module
from lite.cli import main
from lite.io import read_jsonl
from lite.tune import Preempted, TuneConfig, last_checkpoint, parse_layer_weights, tune


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 40-record training file and a 4-layer base model built by `lite init-model`."""
    root = tmp_path_factory.mktemp("tune")
    train = root / "train.jsonl"
    records = [
        {"instruction": f"Add {a} and {b}.", "input": "", "output": str(a + b)}
        for a in range(5)
        for b in range(4)
    ] + [
        {"instruction": "Repeat the word.", "input": w, "output": f"{w} {w}"} for w in "abcdefghijklmnopqrst"
    ]
    train.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    base = root / "base"
    main(
        ["init-model", "--kind", "tiny", "--train", str(train), "--out", str(base), "--layers", "4"]
        + ["--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "64", "--vocab", "300"]
    )
    return root, base, train


def _run(base, train, out, *extra):
    main(["tune", "--base", str(base), "--train", str(train), "--out", str(out), "--batch-size", "4", *extra])


def test_three_step_lite_run_writes_model_log_and_config(workspace):
    root, base, train = workspace
    out = root / "lite"
    _run(base, train, out, "--scheme", "uniform", "--layers", "2", "--max-steps", "3", "--logging-steps", "1")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    base_model = AutoModelForCausalLM.from_pretrained(base)
    ids = torch.tensor([tokenizer("Add 1 and 2.")["input_ids"]])
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, base_model(ids).logits)  # it did train
    steps = [r for r in read_jsonl(out / "train_log.jsonl") if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for record in steps:
        assert {"ce_layer_2", "ce_layer_4"} <= set(record)
        assert "ce_layer_1" not in record and "ce_layer_3" not in record
        # the logged loss is the uniform mean of the logged per-layer CEs
        assert record["loss"] == pytest.approx((record["ce_layer_2"] + record["ce_layer_4"]) / 2, rel=1e-4)
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert resolved["layer_weights"] == {"2": 1.0, "4": 1.0}
    assert resolved["n_layers"] == 4 and resolved["global_step"] == 3
    assert resolved["tune"]["scheme"] == "uniform" and resolved["tune"]["max_steps"] == 3
    assert not (out / ".final.tmp").exists()


def test_fused_head_run_trains_as_the_plain_loss(workspace):
    root, base, train = workspace
    models = {}
    for name, extra in (("plain", ()), ("fused", ("--fused-head", "--chunk-size", "5"))):
        out = root / name
        _run(
            base,
            train,
            out,
            "--scheme",
            "uniform",
            "--layers",
            "2",
            "--max-steps",
            "2",
            "--logging-steps",
            "1",
            *extra,
        )
        models[name] = (
            AutoModelForCausalLM.from_pretrained(out),
            [r for r in read_jsonl(out / "train_log.jsonl") if "loss" in r],
        )
    (plain, plain_log), (fused, fused_log) = models["plain"], models["fused"]
    for a, b in zip(plain_log, fused_log, strict=True):
        for key in ("loss", "ce_layer_2", "ce_layer_4"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), key
    for (name, a), b in zip(plain.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("outside", [False, True])
def test_rerun_resumes_from_the_last_checkpoint(workspace, outside):
    root, base, train = workspace
    out = root / f"resume-{outside}"
    ckpts = root / f"ckpts-{outside}" if outside else out / "checkpoints"
    common = ("--layer-weights", "4:1", "--save-steps", "2", "--logging-steps", "1")
    if outside:
        common += ("--checkpoint-dir", str(ckpts))
    _run(base, train, out, *common, "--max-steps", "2")
    assert last_checkpoint(ckpts).name == "checkpoint-2"
    # a save cut short by a kill: newer, but without the trainer state the Trainer writes last
    (ckpts / "checkpoint-3").mkdir()
    (ckpts / "checkpoint-3" / "model.safetensors").write_bytes(b"")
    _run(base, train, out, *common, "--max-steps", "4")
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert resolved["resumed_from_step"] == 2
    assert resolved["global_step"] == 4
    assert (out / "checkpoints").exists() != outside
    state = json.loads((last_checkpoint(ckpts) / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    # the second run logged only steps 3 and 4: it continued from 2, it did not restart at 0
    assert [r["step"] for r in read_jsonl(out / "train_log.jsonl") if "loss" in r] == [1, 2, 3, 4]


def test_checkpoints_of_another_run_are_not_resumed(workspace, tmp_path):
    root, base, train = workspace
    other = tmp_path / "other.jsonl"
    other.write_text(train.read_text().replace("Add", "Sum"))
    ckpts, common = tmp_path / "ckpts", ("--layer-weights", "4:1", "--save-steps", "2", "--max-steps", "2")
    _run(base, train, tmp_path / "first", *common, "--checkpoint-dir", str(ckpts))
    # same checkpoint folder, other data: a fresh run of 2 steps, not a resumption at step 2
    _run(base, other, tmp_path / "second", *common, "--checkpoint-dir", str(ckpts))
    resolved = json.loads((tmp_path / "second" / "resolved_config.json").read_text())
    assert resolved["resumed_from_step"] == 0 and resolved["global_step"] == 2
    # the same inputs again (only the step budget raised) do resume
    _run(base, other, tmp_path / "third", *common[:-2], "--max-steps", "3", "--checkpoint-dir", str(ckpts))
    assert json.loads((tmp_path / "third" / "resolved_config.json").read_text())["resumed_from_step"] == 2


def test_sigterm_saves_a_checkpoint_stops_and_the_rerun_resumes(workspace, monkeypatch):
    root, base, train = workspace
    out = root / "preempted"
    config = TuneConfig(layer_weights={4: 1.0}, max_steps=5, batch_size=4, save_steps=100, logging_steps=1)
    original = tune_module.LiteTrainer.compute_loss

    def compute_loss_then_sigterm(self, model, inputs, *args, **kwargs):
        if self.state.global_step == 1:  # during step 2, as a SLURM preemption would
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(tune_module.LiteTrainer, "compute_loss", compute_loss_then_sigterm)
    with pytest.raises(Preempted, match="step 2"):
        tune(base, train, out, config)
    assert last_checkpoint(out / "checkpoints").name == "checkpoint-2"  # saved although save_steps=100
    assert not (out / "model.safetensors").exists()  # no final model from an interrupted run
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed again
    monkeypatch.setattr(tune_module.LiteTrainer, "compute_loss", original)
    resolved = tune(base, train, out, config)
    assert resolved["resumed_from_step"] == 2 and resolved["global_step"] == 5
    assert (out / "model.safetensors").exists()


def test_sigterm_while_the_output_folder_is_removed_keeps_checkpoint_and_log(workspace, monkeypatch):
    """A SLURM time limit as seen on a real run: SIGTERM reaches the trainer while the job's own
    Snakemake removes the failed job's output folder; the rerun resumes from the signalled step."""
    root, base, train = workspace
    out, ckpts = root / "limited" / "tuned", root / "limited" / "checkpoints"
    config = TuneConfig(layer_weights={4: 1.0}, max_steps=5, batch_size=4, save_steps=100, logging_steps=1)
    original = tune_module.LiteTrainer.compute_loss

    def compute_loss_then_time_limit(self, model, inputs, *args, **kwargs):
        if self.state.global_step == 2:  # during step 3
            os.kill(os.getpid(), signal.SIGTERM)
            shutil.rmtree(out, ignore_errors=True)
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(tune_module.LiteTrainer, "compute_loss", compute_loss_then_time_limit)
    with pytest.raises(Preempted, match="step 3"):
        tune(base, train, out, config, checkpoint_dir=ckpts)
    shutil.rmtree(out, ignore_errors=True)  # Snakemake's cleanup of the failed job, once it ended
    assert last_checkpoint(ckpts).name == "checkpoint-3"
    assert [r["step"] for r in read_jsonl(ckpts / "train_log.jsonl") if "loss" in r] == [1, 2, 3]
    monkeypatch.setattr(tune_module.LiteTrainer, "compute_loss", original)
    resolved = tune(base, train, out, config, checkpoint_dir=ckpts)
    assert resolved["resumed_from_step"] == 3 and resolved["global_step"] == 5
    assert [r["step"] for r in read_jsonl(out / "train_log.jsonl") if "loss" in r] == [1, 2, 3, 4, 5]


def test_a_failed_log_write_never_stops_training(tmp_path, caplog):
    from transformers import TrainerState

    blocker = tmp_path / "gone"
    blocker.write_text("a file where the log's folder should be")
    callback = tune_module.JsonlLogCallback(blocker / "train_log.jsonl", resume_step=0)
    state = TrainerState(global_step=7)
    with caplog.at_level("WARNING", logger="lite.tune"):
        callback.on_log(None, state, None, logs={"loss": 1.0})
    assert "training and checkpoints go on" in caplog.text
    assert callback.records == [{"step": 7, "loss": 1.0}]


def test_intermediate_ramp_trains_the_final_layer_alone_first(workspace):
    root, base, train = workspace
    out = root / "ramp"
    _run(
        base,
        train,
        out,
        *("--layer-weights", "2:1,4:1", "--intermediate-ramp", "0.5", "--max-steps", "4"),
        *("--logging-steps", "1", "--lr", "1e-3"),
    )
    steps = [r for r in read_jsonl(out / "train_log.jsonl") if "loss" in r]
    # weights of layer 2 at steps 0..3 of 4 with the ramp over the first 2: 0, 0.5, 1, 1
    assert "ce_layer_2" not in steps[0] and steps[0]["loss"] == pytest.approx(
        steps[0]["ce_layer_4"], rel=1e-4
    )
    expected = (0.5 * steps[1]["ce_layer_2"] + steps[1]["ce_layer_4"]) / 1.5
    assert steps[1]["loss"] == pytest.approx(expected, rel=1e-4)
    for record in steps[2:]:
        assert record["loss"] == pytest.approx((record["ce_layer_2"] + record["ce_layer_4"]) / 2, rel=1e-4)
    assert json.loads((out / "resolved_config.json").read_text())["tune"]["intermediate_ramp"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "exactly one of layer_weights or scheme"),
        ({"scheme": "uniform", "layer_weights": {8: 1}}, "exactly one of layer_weights or scheme"),
        ({"scheme": "cubic"}, "TuneConfig.scheme"),
        ({"layer_weights": {8: 1}, "layers": (2,)}, "TuneConfig.layers goes with a scheme"),
        ({"scheme": "uniform", "layers": (0, 2)}, "TuneConfig.layers must be >= 1"),
        ({"scheme": "uniform", "max_steps": None}, "exactly one of max_steps or epochs"),
        ({"scheme": "uniform", "epochs": 1.0}, "exactly one of max_steps or epochs"),
        ({"scheme": "uniform", "batch_size": 0}, "TuneConfig.batch_size"),
        ({"scheme": "uniform", "lr": 0.0}, "TuneConfig.lr"),
        ({"scheme": "uniform", "warmup_ratio": 1.0}, "TuneConfig.warmup_ratio"),
        ({"scheme": "uniform", "intermediate_ramp": 1.5}, "TuneConfig.intermediate_ramp"),
        ({"scheme": "uniform", "final_weight": 0.0}, "TuneConfig.final_weight must be > 0"),
        ({"layer_weights": {8: 1}, "final_weight": 2.0}, "TuneConfig.final_weight goes with a scheme"),
        ({"scheme": "uniform", "scheduler": "step"}, "TuneConfig.scheduler"),
        ({"scheme": "uniform", "chunk_size": 0}, "TuneConfig.chunk_size"),
        ({"scheme": "uniform", "deepspeed": "/nonexistent/ds.json"}, "TuneConfig.deepspeed"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TuneConfig(**{"max_steps": 3, **kwargs})


def test_weights_resolve_against_the_model_depth():
    assert TuneConfig(scheme="linear", layers=(2, 4), max_steps=1).resolved_weights(6) == {
        2: 1.0,
        4: 2.0,
        6: 3.0,
    }
    assert TuneConfig(scheme="uniform", layers=(2,), final_weight=6, max_steps=1).resolved_weights(4) == {
        2: 1.0,
        4: 6.0,
    }
    with pytest.raises(ValueError, match="layer 9 is out of range: layers are 1..8"):
        TuneConfig(layer_weights={9: 1.0}, max_steps=1).resolved_weights(8)


def test_layer_weights_option():
    assert parse_layer_weights("2:1, 4:0.5,8:1") == {2: 1.0, 4: 0.5, 8: 1.0}
    for bad in ("2=1", "2:x", "2:1,"):
        with pytest.raises(argparse.ArgumentTypeError, match="LAYER:WEIGHT"):
            parse_layer_weights(bad)


def test_zero3_config_without_16bit_gathering_is_refused(tmp_path, workspace):
    _, base, train = workspace
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    config = TuneConfig(scheme="uniform", max_steps=1, deepspeed=str(ds))
    with pytest.raises(ValueError, match="stage3_gather_16bit_weights_on_model_save"):
        tune(base, train, tmp_path / "out", config)
    ds.write_text(
        json.dumps({"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}})
    )
    fused = TuneConfig(scheme="uniform", max_steps=1, deepspeed=str(ds), fused_head=True)
    with pytest.raises(ValueError, match="fused head"):
        tune(base, train, tmp_path / "out", fused)
