r"""Instruction-tune a model with the LITE loss (IT, LITE or weighted LITE).

    lite tune --base results/tiny8/base --train results/data/train.jsonl --out results/tiny8/tuned/lite \
        --scheme uniform --layers 2,4,6,8 --max-steps 900 --batch-size 32 --lr 2e-3
    lite tune --base DIR --train FILE --out DIR --weights 8:1 --epochs 3     # standard IT
    torchrun --nproc-per-node 4 -m lite.cli tune ... --deepspeed ds_zero3.json --bf16

Choose the loss with ``--scheme uniform|linear|final_only`` (+ ``--layers``; the final layer is
always included) or ``--weights LAYER:W,...``. Rerunning the same command after an interruption
resumes from the last checkpoint in ``--checkpoint-dir`` (default ``OUT/checkpoints/``). On
SIGTERM a checkpoint is saved and the command exits with status 143 (nothing final written).
When done, OUT is a model folder with the tokenizer, ``train_log.jsonl`` (per-layer CE) and
``resolved_config.json``.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="base model folder (from lite init-model)")
    parser.add_argument("--train", required=True, help="training records, JSONL or JSON array (Alpaca)")
    parser.add_argument("--out", required=True, help="output model folder")
    parser.add_argument(
        "--checkpoint-dir", help="where checkpoints go and are resumed from (default: OUT/checkpoints)"
    )
    loss = parser.add_mutually_exclusive_group(required=True)
    loss.add_argument("--scheme", choices=("uniform", "linear", "final_only"), help="layer weighting scheme")
    loss.add_argument("--weights", help="explicit weights LAYER:W,... e.g. 2:1,4:1,8:1 (IT: N:1)")
    parser.add_argument(
        "--layers", default="", help="exit layers for --scheme, e.g. 2,4,6,8 (N always added)"
    )
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--max-steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=float, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=4, help="examples per device per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--lr", type=float, default=2e-5, help="peak learning rate")
    parser.add_argument("--warmup-ratio", type=float, default=0.03, help="share of steps in linear warm-up")
    parser.add_argument("--scheduler", default="cosine", help="cosine | linear | constant_with_warmup")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm")
    parser.add_argument("--max-length", type=int, default=512, help="max tokens per example")
    parser.add_argument("--seed", type=int, default=0, help="seed of data order and dropout")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--deepspeed", help="DeepSpeed JSON config (ZeRO); stage 3 needs 16-bit gathering on save"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU only)")
    parser.add_argument("--logging-steps", type=int, default=10, help="log every N steps")
    parser.add_argument("--save-steps", type=int, default=500, help="checkpoint every N steps")
    parser.add_argument("--save-total-limit", type=int, default=1, help="checkpoints to keep")
    parser.add_argument(
        "--chunk-size", type=int, help="LM head + CE over chunks of N positions (saves memory)"
    )
    parser.add_argument(
        "--fused-head",
        action="store_true",
        help="LM head + CE gradients made in the forward pass, in --chunk-size chunks (no ZeRO-3)",
    )
    parser.add_argument(
        "--data-format",
        default="instruction",
        choices=("instruction", "text"),
        help="instruction: Alpaca records, loss on the response; text: {text} rows, loss on every token",
    )
    parser.add_argument(
        "--skip-long-prompts",
        action="store_true",
        help="drop (and log) examples whose prompt fills --max-length instead of failing",
    )


def run(args: argparse.Namespace) -> None:
    from lite.tune import Preempted, TuneConfig, parse_layers, parse_weights, tune

    if args.weights is not None and args.layers:
        raise SystemExit("lite tune: --layers goes with --scheme, not with --weights")
    config = TuneConfig(
        layer_weights=None if args.weights is None else parse_weights(args.weights),
        scheme=args.scheme,
        layers=parse_layers(args.layers),
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_ratio=args.warmup_ratio,
        scheduler=args.scheduler,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        max_length=args.max_length,
        seed=args.seed,
        bf16=args.bf16,
        deepspeed=args.deepspeed,
        threads=args.threads,
        logging_steps=args.logging_steps,
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        chunk_size=args.chunk_size,
        fused_head=args.fused_head,
        skip_long_prompts=args.skip_long_prompts,
        data_format=args.data_format,
    )
    try:
        tune(args.base, args.train, args.out, config, checkpoint_dir=args.checkpoint_dir)
    except Preempted as err:
        print(f"lite tune: {err}; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(143) from None
