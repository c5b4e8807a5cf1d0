"""Merge the shard files of one sharded generation or trace into the unsharded result.

    lite merge-shards --out results/tiny12/generations/lite/vic/final.jsonl \\
        results/tiny12/shards/generations/lite/vic/final/0-of-3.jsonl \\
        results/tiny12/shards/generations/lite/vic/final/1-of-3.jsonl \\
        results/tiny12/shards/generations/lite/vic/final/2-of-3.jsonl

The shards come from ``lite generate`` / ``lite trace`` with ``--shard I --num-shards N`` and are
given in order 0..N-1. The merged records are in the eval set's order, equal to an unsharded run;
``OUT.config.json`` is the shards' common config with ``merged_from`` listing the shard files.
Light: needs no torch (see ``lite.shards``).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", metavar="SHARD", help="shard files (JSONL), in shard order")
    parser.add_argument("--out", required=True, metavar="JSONL", help="merged records")


def run(args: argparse.Namespace) -> None:
    from lite.shards import merge_shards

    merge_shards(args.shards, args.out)
