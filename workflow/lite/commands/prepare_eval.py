"""Write one eval set in the common eval format (docs/records.md).

    lite prepare-eval --source synthetic --name vicuna --n 100 --seed 1 --out results/data/eval/vicuna.jsonl
    lite prepare-eval --source vicuna --path question.jsonl --limit 40 --out results/data/eval/vicuna.jsonl
    lite prepare-eval --source koala --out results/data/eval/koala.jsonl

``alpaca`` samples ``--n`` held-out records (seeded) from the last tenth of Alpaca, with the
output as reference (lite.datasets.alpaca_heldout).
``synthetic`` generates the synthetic mirror ``--name`` (vicuna, koala, wizardlm, selfinstruct or
calibration; see lite.synthetic) with gold references. The real sources (vicuna, koala, wizardlm,
selfinstruct) read the upstream file at ``--path``, or, without it, download the pinned file into
``--download-dir`` and verify its checksum first. A file given with ``--path`` is checked the
same way (checksum and record count of the pinned file) unless ``--no-verify`` says it is data of
your own. ``--n`` (alias ``--limit``) is the number of prompts to generate (synthetic) or keep
from the start of the file (real; default all). The resolved settings go to ``OUT.config.json``.
"""

from __future__ import annotations

import argparse
import collections
import sys

from lite.commands.prepare_train import add_source_arguments, real_source_path, synthetic_records

SOURCES = ("synthetic", "vicuna", "koala", "wizardlm", "selfinstruct", "alpaca")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, choices=SOURCES, help="where the prompts come from")
    parser.add_argument("--out", required=True, help="output JSONL file")
    parser.add_argument("--name", help="eval set name; synthetic: which mirror to generate (required)")
    add_source_arguments(
        parser,
        items="prompts",
        real="real",
        path_help="real sources: the upstream file (default: download the pinned file)",
        download_help="real sources without --path: download folder",
    )


def run(args: argparse.Namespace) -> None:
    from lite.datasets import HELDOUT_FRACTION, alpaca_heldout, load_checked_source, write_eval_records
    from lite.download import checksum_of
    from lite.io import InputError, save_resolved_config

    config = {"source": args.source, "name": args.name, "n": args.n, "out": args.out}
    if args.source == "synthetic":
        from lite import synthetic

        if args.path is not None:
            raise InputError("--path is for the real sources; synthetic data is generated")
        if args.name is None or args.name not in synthetic.EVAL_SETS:
            raise InputError(f"--source synthetic needs --name, one of {', '.join(synthetic.EVAL_SETS)}")
        records = synthetic_records(args, args.name, config)
    else:
        path = real_source_path(args, args.source, "prepare-eval")
        if args.source == "alpaca":
            records = alpaca_heldout(
                load_checked_source("alpaca", path, None, args.verify), args.n, args.seed, path
            )
            config.update(seed=args.seed, heldout_fraction=HELDOUT_FRACTION)
        else:
            records = load_checked_source(args.source, path, args.n, args.verify)
        config.update(path=str(path), input_sha256=checksum_of(path, "sha256"), verified=args.verify)

    count = write_eval_records(args.out, records)
    config["records"] = count
    config["categories"] = dict(sorted(collections.Counter(r["category"] for r in records).items()))
    save_resolved_config(args.out, config)
    print(f"wrote {count} eval records to {args.out}; categories: {config['categories']}", file=sys.stderr)
