r"""Instruction-tune a model with the LITE loss (IT, LITE or weighted LITE).

    lite tune --base results/tiny12/base --train results/data/train.jsonl --out results/tiny12/tuned/lite \
        --scheme uniform --layers 2,4,6,8 --max-steps 900 --batch-size 32 --lr 2e-3
    lite tune --base DIR --train FILE --out DIR --layer-weights 8:1 --epochs 3     # standard IT
    torchrun --nproc-per-node 4 -m lite.cli tune ... --deepspeed ds_zero3.json --bf16

Choose the loss with ``--scheme uniform|linear|final_only`` (+ ``--layers``; the final layer is
always included) or ``--layer-weights LAYER:W,...``. Rerunning the same command after an
interruption resumes from the last checkpoint in ``--checkpoint-dir`` (default
``OUT/checkpoints/``). On SIGTERM a checkpoint is saved and the command exits with status 143
(nothing final written). When done, OUT is a model folder with the tokenizer,
``train_log.jsonl`` (per-layer CE) and ``resolved_config.json``. The tuning options are the
fields of ``lite.tune.TuneConfig``.
"""

from __future__ import annotations

import argparse
import sys

from lite.flags import add_setting_arguments, settings_from_args
from lite.tune import Preempted, TuneConfig, tune


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="base model folder (from lite init-model)")
    parser.add_argument("--train", required=True, help="training records, JSONL or JSON array (Alpaca)")
    parser.add_argument("--out", required=True, help="output model folder")
    parser.add_argument(
        "--checkpoint-dir", help="where checkpoints go and are resumed from (default: OUT/checkpoints)"
    )
    add_setting_arguments(parser, TuneConfig, one_of=[("scheme", "layer_weights"), ("max_steps", "epochs")])


def run(args: argparse.Namespace) -> None:
    config = settings_from_args(TuneConfig, args)
    try:
        tune(args.base, args.train, args.out, config, checkpoint_dir=args.checkpoint_dir)
    except Preempted as err:
        print(f"lite tune: {err}; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(143) from None
