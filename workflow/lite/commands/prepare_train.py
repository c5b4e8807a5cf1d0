"""Write the instruction-tuning set: Alpaca-format JSONL ({instruction, input, output} per line).

    lite prepare-train --source synthetic --n 20000 --seed 0 --out results/data/train.jsonl
    lite prepare-train --source alpaca --path alpaca_data.json --limit 1000 --out results/data/train.jsonl
    lite prepare-train --source alpaca --out results/data/train.jsonl

``synthetic`` generates the embedded default's tasks (lite.synthetic); ``alpaca`` reads Stanford
Alpaca's JSON array from ``--path``, or, without it, downloads the pinned file into
``--download-dir`` and verifies its checksum first. A file given with ``--path`` is checked the
same way (checksum and record count of the pinned file) unless ``--no-verify`` says it is data of
your own. ``--n`` (alias ``--limit``) is the number of records to generate (synthetic) or to keep
from the start of the file (alpaca; default all). The resolved settings go to ``OUT.config.json``.
"""

from __future__ import annotations

import argparse
import sys

SOURCES = ("synthetic", "alpaca")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, choices=SOURCES, help="where the records come from")
    parser.add_argument("--out", required=True, help="output JSONL file")
    add_source_arguments(
        parser,
        items="records",
        real="alpaca",
        path_help="alpaca: a local alpaca_data.json (default: download the pinned file)",
        download_help="alpaca without --path: where the download goes",
    )


def add_source_arguments(
    parser: argparse.ArgumentParser, *, items: str, real: str, path_help: str, download_help: str
) -> None:
    """The options prepare-train and prepare-eval share: how many ``items`` and, for synthetic
    data, its seed and families; for the ``real`` sources, the file and whether to verify it."""
    parser.add_argument(
        "--n",
        "--limit",
        dest="n",
        type=int,
        help=f"{items} to generate (synthetic) or keep ({real}; default all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="synthetic: generator seed")
    parser.add_argument("--families", help="synthetic: comma-separated task families (default all)")
    parser.add_argument("--path", help=path_help)
    parser.add_argument("--download-dir", default="results/data/sources", help=download_help)
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="--path is data of your own: skip the pinned checksum and record count (logged)",
    )


def synthetic_records(args: argparse.Namespace, name: str, config: dict) -> list[dict]:
    """The synthetic set ``name`` as ``args`` ask (``--n``, default lite.synthetic's size of it;
    ``--seed``; ``--families``); its settings are added to ``config``."""
    from lite import synthetic
    from lite.io import InputError

    families = None if args.families is None else [f.strip() for f in args.families.split(",") if f.strip()]
    n = synthetic.DEFAULT_SIZES[name] if args.n is None else args.n
    try:
        spec = synthetic.SyntheticSpec(
            families=tuple(synthetic.FAMILIES) if families is None else tuple(families),
            sizes={name: n},
            seed=args.seed,
        )
    except ValueError as err:
        raise InputError(str(err)) from None
    records = spec.make(name)
    config.update(n=n, seed=args.seed, families=list(spec.families), synthetic=synthetic.describe())
    return records


def real_source_path(args: argparse.Namespace, source: str, command: str) -> str:
    """The file of real source ``source``: ``--path``, or the pinned file downloaded into
    ``--download-dir``; says on stderr when ``--no-verify`` leaves it unchecked."""
    from lite.download import pinned_file
    from lite.io import InputError

    if args.families is not None:
        raise InputError("--families is for --source synthetic")
    path = pinned_file(source, args.download_dir) if args.path is None else args.path
    if not args.verify:
        print(f"{command}: {path} is NOT checked against the pinned {source} file", file=sys.stderr)
    return path


def run(args: argparse.Namespace) -> None:
    from lite.datasets import load_checked_source, write_train_records
    from lite.download import checksum_of
    from lite.io import InputError, save_resolved_config

    config = {"source": args.source, "n": args.n, "out": args.out}
    if args.source == "synthetic":
        if args.path is not None:
            raise InputError("--path is for --source alpaca; synthetic data is generated")
        records = synthetic_records(args, "train", config)
    else:
        path = real_source_path(args, "alpaca", "prepare-train")
        records = load_checked_source("alpaca", path, args.n, args.verify)
        config.update(path=str(path), input_sha256=checksum_of(path, "sha256"), verified=args.verify)

    count = write_train_records(args.out, records)
    config["records"] = count
    save_resolved_config(args.out, config)
    with_input = sum(1 for record in records if record["input"].strip())
    print(f"wrote {count} train records ({with_input} with an input) to {args.out}", file=sys.stderr)
