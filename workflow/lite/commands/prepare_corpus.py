"""Write the pretraining corpus of the embedded default's base models: JSONL ``{"text": ...}`` rows.

    lite prepare-corpus --n 48000 --seed 0 --out results/data/corpus.jsonl

Each row is a paragraph about one country of the synthetic world (lite.world), drawn by
popularity: its capital, language and eastern neighbour; a tenth of the rows recite days or
months. ``lite tune --data-format text`` pretrains on it with the ordinary LM loss on every
token. The resolved settings go to ``OUT.config.json``.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output JSONL file")
    parser.add_argument("--n", type=int, required=True, help="rows to generate")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (the world itself is fixed)")


def run(args: argparse.Namespace) -> None:
    from lite import world
    from lite.io import InputError, save_resolved_config, write_jsonl

    try:
        rows = world.make_corpus(args.n, args.seed)
    except ValueError as err:
        raise InputError(str(err)) from None
    write_jsonl(args.out, rows)
    save_resolved_config(
        args.out,
        {
            "n": args.n,
            "seed": args.seed,
            "world": {"seed": world.WORLD_SEED, "countries": world.N_COUNTRIES, "zipf": world.ZIPF},
        },
    )
    print(f"wrote {len(rows)} corpus rows to {args.out}", file=sys.stderr)
