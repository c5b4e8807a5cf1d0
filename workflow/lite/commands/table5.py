"""Table 5: human ratings per rater and aggregated, with inter-rater agreement and agreement with
the workflow's judge (and the optional second judge), from the ratings database of `lite annotate`.

    lite table5 --db results/tiny12/human/vicuna.sqlite \\
        --judgments results/tiny12/judgments/reference/vicuna/lite.final~lite.dynamic-paper.jsonl \\
        [--second results/tiny12/judgments/openai/vicuna/lite.final~lite.dynamic-paper.jsonl] \\
        [--raters alice,bob,carol] --out results/tables/table5.csv

Writes the CSV, its Markdown twin (.md) and the resolved config beside each. docs/human.md
explains every column.
"""

from __future__ import annotations

import argparse
import sys

from lite.human.table5 import build


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="ratings database (SQLite) written by lite annotate")
    parser.add_argument(
        "--judgments", nargs="+", required=True, help="the workflow judge's records of the pair"
    )
    parser.add_argument("--second", nargs="*", default=[], help="the second judge's records of the pair")
    parser.add_argument("--raters", default="", help="comma-separated raters to report (default: everyone)")
    parser.add_argument("--out", required=True, help="CSV to write (the Markdown twin goes beside it)")


def run(args: argparse.Namespace) -> None:
    raters = [name.strip() for name in args.raters.split(",") if name.strip()]
    written = build(args.db, args.judgments, args.out, second_paths=args.second, raters=raters)
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
