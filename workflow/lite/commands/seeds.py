"""Do the paper's findings hold on every seed? The headline findings of the main model and of its
seed replicas, side by side, each tested against its target on every seed.

    lite seeds --out results/tables/seeds.csv --models tiny12=0,tiny12-seed1=1,tiny12-seed2=2 \\
        --dynamic dynamic-calibrated INPUT_FILE...

Inputs: what the headline table reads, for every model named (``snakemake seeds`` lists them).
Writes the CSV with Markdown and HTML twins; the targets are in ``lite.report.seeds``.
"""

from __future__ import annotations

import argparse
import sys

from lite.report.seeds import write_seeds


def _models(text: str) -> dict[str, int]:
    models = {}
    for part in filter(None, text.split(",")):
        name, sep, seed = part.partition("=")
        if not sep or not seed.isdigit():
            raise argparse.ArgumentTypeError(f"--models: NAME=SEED pairs expected, got {part!r}")
        models[name] = int(seed)
    return models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT_FILE", help="record files (.jsonl) and tables (.csv)"
    )
    parser.add_argument("--out", required=True, help="output path, .csv (+ .md and .html twins)")
    parser.add_argument(
        "--models", type=_models, required=True, help="records' model name = seed, comma-separated"
    )
    parser.add_argument("--dynamic", default="dynamic-calibrated", help="the reported dynamic decoder")


def run(args: argparse.Namespace) -> None:
    written = write_seeds(args.inputs, args.models, args.out, dynamic=args.dynamic)
    print("wrote " + ", ".join(written), file=sys.stderr)
