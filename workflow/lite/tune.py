"""Instruction tuning with the LITE loss on the HF Trainer (IT is LITE with weights ``{N: 1}``).

The Trainer brings progress bars, gradient accumulation, schedulers, checkpoints, ``torchrun`` and
DeepSpeed. This module adds the loss (``LiteTrainer.compute_loss``), per-layer CE logging, a
SIGTERM handler that saves a checkpoint and stops, and automatic resumption.

Folder layout of ``out`` (a ``from_pretrained``-able model folder when finished)::

    out/checkpoints/checkpoint-<step>/   Trainer checkpoints, resumed from automatically (elsewhere
                                          with ``checkpoint_dir`` / ``--checkpoint-dir``)
    out/checkpoints/train_log.jsonl       the running log, beside the checkpoints while training
    out/train_log.jsonl                   its copy in the finished model: one record per Trainer log
                                          (loss, lr, ce_layer_<i>, ...)
    out/config.json, model.safetensors, tokenizer files, resolved_config.json (written last)

DeepSpeed ZeRO-3 partitions the weights over ranks; ``trainer.save_model`` can only write a normal
``save_pretrained`` folder if the DeepSpeed config sets
``"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": true}``, so
``tune`` refuses a stage-3 config without it rather than finish without usable weights.

SLURM: ask for the signal early enough to save a checkpoint (``#SBATCH --signal=TERM@300``, or
``B:TERM@300`` with a batch script that forwards it). Rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from lite.architectures import exit_modules
from lite.data import CorpusDataset, PaddingCollator, TrainDataset
from lite.flags import setting
from lite.io import InputError, atomic_write, read_jsonl, save_resolved_config, write_jsonl
from lite.loss import EXIT_TARGETS, SCHEMES, lite_loss, ramp_intermediate, resolve_layer_weights
from lite.modeling import decoder_layer_count, load_model, load_tokenizer, save_tokenizer

logger = logging.getLogger(__name__)

SCHEDULERS = ("cosine", "linear", "constant_with_warmup")
DATA_FORMATS = ("instruction", "text")


def parse_layer_weights(text: str) -> dict[int, float]:
    """``"2:1,4:1,8:1"`` -> ``{2: 1.0, 4: 1.0, 8: 1.0}``: the ``--layer-weights`` option's type."""
    weights = {}
    for item in text.split(","):
        layer, sep, weight = item.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            weights[int(layer)] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not LAYER:WEIGHT with numbers") from None
    return weights


@dataclass
class TuneConfig:
    """Settings of one tuning run. Give either ``layer_weights`` or ``scheme`` (+ ``layers``)."""

    layer_weights: dict[int, float] | None = setting(
        None,
        help="explicit weights LAYER:W,... e.g. 2:1,4:1,8:1; standard IT is N:1",
        parse=parse_layer_weights,
    )
    scheme: str | None = setting(
        None,
        help="layer weighting: uniform (the paper's LITE), linear (weighted LITE), final_only (IT)",
        choices=SCHEMES,
    )
    layers: tuple[int, ...] = setting(
        (), help="exit layers of a scheme, e.g. 2,4,6,8 (the final layer N is always added)"
    )
    final_weight: float | None = setting(
        None,
        help="the final layer's weight in place of the scheme's, e.g. 6 with uniform: 1:...:1:6 (more "
        "weight on the final layer keeps more of its quality; a small pretrained model needs it)",
    )
    exit_target: str = setting(
        "gold",
        help="what the intermediate exits learn: gold (the answer's tokens, the paper) or final (the "
        "final layer's distribution, detached: self-distillation)",
        choices=EXIT_TARGETS,
    )
    intermediate_ramp: float = setting(
        0.0,
        help="share of the steps over which the intermediate exits' weights rise linearly from 0 "
        "(only the final layer at first, as in IT); 0: full weights from the start (the paper)",
    )
    max_steps: int | None = setting(None, help="optimizer steps (or give epochs)")
    epochs: float | None = setting(
        None, help="passes over the training set; the paper: 3 for IT (Alpaca's recipe), 5 for LITE"
    )
    batch_size: int = setting(
        4, help="examples per device per micro-batch; effective batch = batch_size x grad_accum x devices"
    )
    grad_accum: int = setting(1, help="micro-batches per optimizer step (Alpaca: an effective batch of 128)")
    lr: float = setting(2e-5, help="peak learning rate (Alpaca: 2e-5 for 7B; the tiny model wants ~2e-3)")
    warmup_ratio: float = setting(0.03, help="share of steps in linear warm-up (Alpaca: 0.03)")
    scheduler: str = setting("cosine", help="decay after warm-up", choices=SCHEDULERS)
    weight_decay: float = setting(0.0, help="AdamW decoupled weight decay (Alpaca: 0)")
    max_grad_norm: float = setting(1.0, help="gradient clipping norm; keeps early tiny-model steps stable")
    max_length: int = setting(
        512, help="tokens per example (Alpaca's recipe); longer ones are cut from the right"
    )
    seed: int = setting(0, help="seed of the model-independent randomness: data order, dropout")
    bf16: bool = setting(
        False, help="bf16 autocast; GPUs only: CPUs without bf16 units emulate it, 13-58x slower"
    )
    deepspeed: str | None = setting(
        None, help="DeepSpeed JSON config (ZeRO) for multi-GPU runs; stage 3 needs 16-bit gathering on save"
    )
    threads: int | None = setting(None, help="torch intra-op threads on CPU (default: torch's choice)")
    logging_steps: int = setting(10, help="log (and write train_log.jsonl) every this many steps")
    save_steps: int = setting(500, help="checkpoint every this many steps (besides on SIGTERM)")
    save_total_limit: int = setting(1, help="checkpoints kept; 1 is enough to resume and saves disk")
    chunk_size: int | None = setting(
        None, help="LM head + CE over chunks of this many positions, checkpointed (saves memory)"
    )
    fused_head: bool = setting(
        False, help="LM head + CE gradients made in the forward pass, in chunk_size chunks (not with ZeRO-3)"
    )
    skip_long_prompts: bool = setting(
        False, help="drop (and log) examples whose prompt fills max_length instead of failing"
    )
    data_format: str = setting(
        "instruction",
        help="instruction: Alpaca records, loss on the response; text: {text} rows, loss on every "
        "token (pretraining a base model: the same trainer, checkpoints and resume)",
        choices=DATA_FORMATS,
    )

    def __post_init__(self) -> None:
        if (self.layer_weights is None) == (self.scheme is None):
            raise InputError("TuneConfig: give exactly one of layer_weights or scheme")
        if self.scheme is not None and self.scheme not in SCHEMES:
            raise InputError(f"TuneConfig.scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.layer_weights is not None:
            if self.layers:
                raise InputError("TuneConfig.layers goes with a scheme, not with layer_weights")
            self.layer_weights = {int(k): float(v) for k, v in self.layer_weights.items()}
        self.layers = tuple(int(layer) for layer in self.layers)
        if any(layer < 1 for layer in self.layers):
            raise InputError(f"TuneConfig.layers must be >= 1 (layers are 1-indexed), got {self.layers}")
        if (self.max_steps is None) == (self.epochs is None):
            raise InputError("TuneConfig: give exactly one of max_steps or epochs")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"TuneConfig.max_steps must be >= 1, got {self.max_steps}")
        if self.epochs is not None and not self.epochs > 0:
            raise InputError(f"TuneConfig.epochs must be > 0, got {self.epochs}")
        for name in (
            "batch_size",
            "grad_accum",
            "max_length",
            "logging_steps",
            "save_steps",
            "save_total_limit",
        ):
            if getattr(self, name) < 1:
                raise InputError(f"TuneConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("threads", "chunk_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"TuneConfig.{name} must be >= 1 or None, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"TuneConfig.lr must be > 0, got {self.lr}")
        if self.final_weight is not None and not (math.isfinite(self.final_weight) and self.final_weight > 0):
            raise InputError(f"TuneConfig.final_weight must be > 0, got {self.final_weight}")
        if self.final_weight is not None and self.layer_weights is not None:
            raise InputError("TuneConfig.final_weight goes with a scheme; layer_weights names every weight")
        if self.exit_target not in EXIT_TARGETS:
            raise InputError(
                f"TuneConfig.exit_target must be one of {', '.join(EXIT_TARGETS)}, got {self.exit_target!r}"
            )
        if self.exit_target != "gold" and self.fused_head:
            raise InputError("TuneConfig.exit_target: the fused head trains on gold tokens only")
        if not 0 <= self.intermediate_ramp <= 1:
            raise InputError(f"TuneConfig.intermediate_ramp must be in [0, 1], got {self.intermediate_ramp}")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError(f"TuneConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise InputError(f"TuneConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm <= 0:
            raise InputError(f"TuneConfig.max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.scheduler not in SCHEDULERS:
            raise InputError(
                f"TuneConfig.scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}"
            )
        if self.data_format not in DATA_FORMATS:
            raise InputError(
                f"TuneConfig.data_format must be one of {', '.join(DATA_FORMATS)}, got {self.data_format!r}"
            )
        if self.deepspeed is not None and not Path(self.deepspeed).is_file():
            raise InputError(f"TuneConfig.deepspeed: no such file {self.deepspeed}")

    def resolved_weights(self, n_layers: int) -> dict[int, float]:
        """The validated ``{layer: weight}`` for a model with ``n_layers`` decoder layers."""
        if self.scheme is None:
            return resolve_layer_weights(self.layer_weights, n_layers)
        weights = resolve_layer_weights(self.scheme, n_layers, self.layers)
        if self.final_weight is not None:
            weights[n_layers] = self.final_weight
        return weights


class LiteTrainer(Trainer):
    """A Trainer whose loss is ``lite_loss`` over the hidden states of one forward pass."""

    def __init__(
        self,
        *args,
        layer_weights: Mapping[int, float],
        chunk_size: int | None = None,
        fused_head: bool = False,
        intermediate_ramp: float = 0.0,
        exit_target: str = "gold",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.layer_weights = dict(layer_weights)
        self.intermediate_ramp = intermediate_ramp
        self.exit_target = exit_target
        self.chunk_size = chunk_size
        self.fused_head = fused_head
        # lite_loss is a per-micro-batch mean: let the Trainer divide by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        # per layer: summed CE and the micro-batches it was computed on (a ramp starts without
        # the intermediate exits, so layers can differ in their count)
        self._ce_sums: dict[int, torch.Tensor] = {}
        self._ce_batches: dict[int, int] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Through the (possibly DDP/DeepSpeed-wrapped) model's own forward so the wrappers see every
        # parameter used; logits_to_keep=1 makes the built-in head cost one position, and the real
        # final-layer logits are computed once, inside lite_loss.
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            output_hidden_states=True,
            use_cache=False,
            logits_to_keep=1,
        )
        norm, head = exit_modules(self.accelerator.unwrap_model(model))  # the family's own
        loss, per_layer = lite_loss(
            outputs.hidden_states,
            inputs["labels"],
            norm,
            head,
            self.step_weights(),
            self.chunk_size,
            fused=self.fused_head,
            exit_target=self.exit_target,
        )
        if model.training:
            for layer, ce in per_layer.items():
                self._ce_sums[layer] = self._ce_sums.get(layer, 0.0) + ce
                self._ce_batches[layer] = self._ce_batches.get(layer, 0) + 1
        return (loss, outputs) if return_outputs else loss

    def step_weights(self) -> dict[int, float]:
        """The layer weights of the current optimizer step (``intermediate_ramp``'s curriculum)."""
        if self.intermediate_ramp == 0:
            return self.layer_weights
        fraction = self.state.global_step / (self.intermediate_ramp * max(self.state.max_steps, 1))
        return ramp_intermediate(self.layer_weights, fraction)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._ce_batches:
            # mean CE per weighted layer since the last log, averaged over processes
            layers = sorted(self._ce_sums)
            means = torch.stack([torch.as_tensor(self._ce_sums[k]) for k in layers]).float() / torch.tensor(
                [self._ce_batches[k] for k in layers]
            )
            means = self.accelerator.reduce(means.to(self.args.device), reduction="mean")
            for layer, value in zip(layers, means.tolist(), strict=True):
                logs[f"ce_layer_{layer}"] = round(value, 6)
            self._ce_sums, self._ce_batches = {}, {}
        super().log(logs, start_time)


class JsonlLogCallback(TrainerCallback):
    """Mirror the Trainer's logs into ``train_log.jsonl`` (rewritten atomically at each log).

    It lives beside the checkpoints, not in the output folder: a workflow engine deletes a failed
    job's output folder, possibly while a SIGTERM-ed trainer is still saving (seen on SLURM at a
    time limit). A write that fails only warns: the checkpoint after it matters more.
    """

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        # keep the records of the run being resumed, drop any logged after its last checkpoint
        old = read_jsonl(path) if path.exists() else []
        self.records = [r for r in old if r.get("step", 0) <= resume_step]

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.records.append({"step": state.global_step, **logs})
            try:
                write_jsonl(self.path, self.records)
            except OSError as err:
                logger.warning("could not write %s (%s); training and checkpoints go on", self.path, err)


class PreemptionCallback(TrainerCallback):
    """On SIGTERM: save a checkpoint at the end of the current step and stop training.

    The handler only sets a flag; the Trainer acts on it between steps, where a checkpoint is
    consistent. Under several processes the flag is max-reduced so all ranks save and stop together.
    """

    def __init__(self):
        self.requested = False
        self.stopped = False
        self._previous = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_signal(self, signum, frame) -> None:
        print("lite tune: SIGTERM received; saving a checkpoint after this step", file=sys.stderr, flush=True)
        self.requested = True

    def on_step_end(self, args, state, control, **kwargs):
        flag = self.requested
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            tensor = torch.tensor([int(flag)], device=args.device)
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            flag = bool(tensor.item())
        if flag:
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True
        return control


class Preempted(RuntimeError):
    """Training stopped on SIGTERM after saving a checkpoint; rerun the command to resume."""


def last_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint under ``folder``, or None (``transformers``' own search)."""
    found = get_last_checkpoint(folder) if folder.is_dir() else None
    return None if found is None else Path(found)


# Settings that may change between a run and its resumption: how long it goes on (raising
# max_steps continues a finished run) and how it is executed or logged. Every other setting, the
# base model's files and the training data make up the run's fingerprint (``run_fingerprint``).
RESUMABLE_CHANGES = frozenset(
    {"max_steps", "epochs", "threads", "logging_steps", "save_steps", "save_total_limit"}
)
TRAIN_LOG = "train_log.jsonl"  # in the checkpoint folder while training, copied into the model at the end
RUN_FILE = "run.json"  # in the checkpoint folder: the fingerprint of the run its checkpoints belong to


def run_fingerprint(base: str | os.PathLike, train: str | os.PathLike, config: TuneConfig) -> str:
    """sha256 of the base model's files, the training file and the run-defining settings."""
    digest = hashlib.sha256()
    base = Path(base)
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        digest.update(_file_digest(path))
    digest.update(_file_digest(Path(train)))
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUMABLE_CHANGES}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def unusable_checkpoints(ckpt_dir: Path, fingerprint: str) -> list[Path]:
    """The checkpoints in ``ckpt_dir`` a run must not resume: all of them when they belong to another
    run (or to one that recorded no fingerprint), else those whose save was cut short.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint without it is a save that a kill
    interrupted; once it is gone, the newest checkpoint is the last complete one.
    """
    checkpoints = [path for path in ckpt_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if path.is_dir()]
    if not checkpoints:
        return []
    try:
        recorded = json.loads((ckpt_dir / RUN_FILE).read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if recorded != fingerprint:
        logger.warning(
            "%s holds checkpoints of another run (other base, data or settings): starting afresh", ckpt_dir
        )
        return checkpoints
    cut_short = [path for path in checkpoints if not (path / TRAINER_STATE_NAME).is_file()]
    for path in cut_short:
        logger.warning("%s has no %s (its save was cut short): removed", path, TRAINER_STATE_NAME)
    return cut_short


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _rank() -> int:
    # From the launcher's environment (torchrun, deepspeed). Not TrainingArguments.process_index:
    # with it, test_slurm_workflow's cancelled tune job left Snakemake deaf to ^C, reproducibly
    # when run alone (the mechanism is not pinned down; see the test).
    return int(os.environ.get("RANK", "0"))


def tune(
    base: str | os.PathLike,
    train: str | os.PathLike,
    out: str | os.PathLike,
    config: TuneConfig,
    checkpoint_dir: str | os.PathLike | None = None,
) -> dict:
    """Tune ``base`` on ``train`` into ``out``; resumes from ``checkpoint_dir`` if a run was cut short.

    ``checkpoint_dir`` defaults to ``out/checkpoints``. A workflow whose engine deletes a failed
    job's output folder (Snakemake does, for ``directory()`` outputs) should keep it elsewhere.

    Returns the resolved config (also saved as ``out/resolved_config.json``). Raises ``Preempted``
    when SIGTERM stopped the run (a checkpoint was saved; the final model was not written).
    """
    out = Path(out)
    ckpt_dir = out / "checkpoints" if checkpoint_dir is None else Path(checkpoint_dir)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if config.deepspeed is not None:
        _check_deepspeed_config(config.deepspeed, config.fused_head)
    # TrainingArguments first: with ZeRO-3 it makes from_pretrained load the weights partitioned.
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        max_steps=config.max_steps if config.max_steps is not None else -1,
        num_train_epochs=config.epochs if config.epochs is not None else 1.0,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=config.scheduler,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.bf16,
        deepspeed=config.deepspeed,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to=[],
        remove_unused_columns=False,  # the collator's keys are exactly what compute_loss reads
        dataloader_num_workers=0,
    )
    if config.deepspeed is not None and args.use_cpu:
        # On CPU, TrainingArguments starts torch.distributed (gloo) but not DeepSpeed's comm layer;
        # ZeRO-3's zero.Init inside from_pretrained would then see a world size of 1.
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
    tokenizer = load_tokenizer(base)
    model = load_model(base, dtype="float32")  # fp32 master weights; bf16 is autocast only
    n_layers = decoder_layer_count(model)
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and config.max_length > max_positions:
        raise ValueError(
            f"TuneConfig.max_length={config.max_length} exceeds the model's {max_positions} positions"
        )
    weights = config.resolved_weights(n_layers)
    if config.data_format == "text":
        dataset = CorpusDataset(train, tokenizer, config.max_length)
    else:
        dataset = TrainDataset(train, tokenizer, config.max_length, skip_long=config.skip_long_prompts)
    if dataset.skipped:
        logger.warning(
            "skipped %d examples whose prompt leaves no room in max_length=%d (first: %s)",
            len(dataset.skipped),
            config.max_length,
            ", ".join(dataset.skipped[:5]),
        )

    # A rerun after its inputs changed (new data, base or loss) must start afresh: resuming another
    # run's checkpoint would fail on a shape mismatch at best, and silently mix two runs at worst.
    fingerprint = run_fingerprint(base, train, config)
    unusable = unusable_checkpoints(ckpt_dir, fingerprint)
    _barrier()  # every rank has looked before rank 0 changes anything
    if _rank() == 0:
        for old in unusable:
            shutil.rmtree(old)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(ckpt_dir / RUN_FILE) as handle:
            json.dump({"fingerprint": fingerprint, "base": str(base), "train": str(train)}, handle)
    _barrier()
    resume = last_checkpoint(ckpt_dir)
    resume_step = (
        0 if resume is None else json.loads((resume / TRAINER_STATE_NAME).read_text())["global_step"]
    )
    preemption = PreemptionCallback()
    trainer = LiteTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=PaddingCollator(tokenizer.pad_token_id),
        layer_weights=weights,
        chunk_size=config.chunk_size,
        fused_head=config.fused_head,
        intermediate_ramp=config.intermediate_ramp,
        exit_target=config.exit_target,
        callbacks=[JsonlLogCallback(ckpt_dir / TRAIN_LOG, resume_step), preemption],
    )
    if resume is not None:
        print(f"lite tune: resuming from {resume} (step {resume_step})", file=sys.stderr)
    preemption.install()
    try:
        result = trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    finally:
        preemption.uninstall()
    if preemption.stopped:
        raise Preempted(f"stopped by SIGTERM at step {trainer.state.global_step}; checkpoint in {ckpt_dir}")

    resolved = {
        "base": str(base),
        "train": str(train),
        "n_layers": n_layers,
        "layer_weights": {str(k): v for k, v in weights.items()},
        "n_examples": len(dataset),
        "global_step": trainer.state.global_step,
        "checkpoint_dir": str(ckpt_dir),
        "resumed_from_step": resume_step,
        "train_loss": result.training_loss,
        "tune": dataclasses.asdict(config),
    }
    _write_final(trainer, tokenizer, out, resolved, ckpt_dir / TRAIN_LOG)
    del trainer, model  # the engine holds DeepSpeed's process groups: let them go before the teardown
    _shut_down_distributed(with_deepspeed=config.deepspeed is not None)
    return resolved


def _shut_down_distributed(with_deepspeed: bool) -> None:
    """Wait for rank 0's writes, then close every process group while the interpreter still runs.

    A communication backend left for the interpreter's exit is destroyed in no fixed order with the
    rest of the C++ state, and a rank can then abort in a destructor ("terminate called without an
    active exception", SIGABRT) after its job is done: on a cluster the finished tuning is marked
    FAILED and its output deleted. DeepSpeed keeps references to the groups it made (ZeRO's data-
    parallel groups) in ``deepspeed.utils.groups``; only its own ``destroy_process_group`` drops
    them, and the collection after it runs their destructors here, on the main thread.
    """
    if not torch.distributed.is_initialized():
        return
    torch.distributed.barrier()
    if with_deepspeed:
        import deepspeed.comm

        deepspeed.comm.destroy_process_group()
    else:
        torch.distributed.destroy_process_group()
    gc.collect()


def _write_final(trainer: Trainer, tokenizer, out: Path, resolved: dict, train_log: Path) -> None:
    """Final weights, tokenizer and train log into ``out``, resolved config last (it marks the
    folder complete)."""
    staging = out / ".final.tmp"
    if trainer.is_world_process_zero():
        shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))  # every rank: ZeRO-3 gathers the partitioned weights here
    if not trainer.is_world_process_zero():
        return
    save_tokenizer(tokenizer, staging)
    if train_log.is_file():
        shutil.copyfile(train_log, staging / TRAIN_LOG)
    for item in staging.iterdir():
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    staging.rmdir()
    save_resolved_config(out, resolved)


def _check_deepspeed_config(path: str, fused_head: bool) -> None:
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    zero = config.get("zero_optimization", {})
    if zero.get("stage") == 3 and fused_head:
        raise ValueError(
            f"{path}: ZeRO stage 3 partitions lm_head.weight outside the head's call, which the fused "
            "head + CE reads; drop fused_head (chunk_size alone saves the same memory)"
        )
    if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save", False):
        raise ValueError(
            f"{path}: ZeRO stage 3 needs zero_optimization.stage3_gather_16bit_weights_on_model_save=true, "
            "otherwise the final model folder would hold no usable weights"
        )
