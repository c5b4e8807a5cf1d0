"""spaCy semantic similarity between two systems' responses to the same prompts.

    lite similarity --a results/tiny12/generations/lite/vic/final.jsonl \\
        --b results/tiny12/generations/lite/vic/dynamic-paper.jsonl \\
        --spacy-model en_core_web_sm --out results/tiny12/similarity/lite/vic/final~dynamic-paper.csv

Writes one row per prompt id (see ``lite.similarity.similarity``) and prints the mean; the
resolved config beside the CSV records which installed spaCy package was loaded.
"""

from __future__ import annotations

import argparse
import logging
import sys

from lite import similarity
from lite.io import atomic_write, read_jsonl, save_resolved_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example command's layout
    parser.add_argument("--a", required=True, metavar="GEN", help="generation records of system A")
    parser.add_argument("--b", required=True, metavar="GEN", help="generation records of system B")
    parser.add_argument(
        "--spacy-model",
        default=similarity.DEFAULT_PIPELINE,
        help="installed spaCy pipeline package (default %(default)s; falls back to a package that "
        "provides it, never downloads)",
    )
    parser.add_argument("--out", required=True, metavar="CSV", help="per-id similarity table")


def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    nlp = similarity.load_pipeline(args.spacy_model)
    frame = similarity.similarity(read_jsonl(args.a), read_jsonl(args.b), nlp=nlp)
    with atomic_write(args.out) as handle:
        frame.to_csv(handle, index=False)
    save_resolved_config(
        args.out,
        {
            "command": "similarity",
            "a": args.a,
            "b": args.b,
            "spacy_model": args.spacy_model,
            "pipeline_loaded": similarity.pipeline_id(nlp),
        },
    )
    print(f"mean similarity over {len(frame)} responses: {frame['similarity'].mean():.4f}", file=sys.stderr)
