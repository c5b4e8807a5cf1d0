"""Draw one of the paper's figures as PDF plus a PNG twin.

    lite figure fig5 --out results/figures/fig5.pdf results/tiny8/analysis/it/vic/alignment.csv \\
        results/tiny8/analysis/lite/vic/alignment.csv
    lite figure fig9 --evalset vic --out results/figures/fig9.pdf JUDGMENTS... GENERATIONS...

Inputs are recognised by their fields (generation, trace, judgment or eval records; alignment,
calibration or similarity CSVs), never by their paths. The list below says what each figure needs
and which options it takes; the resolved config is written beside each output.
"""

from __future__ import annotations

import argparse
import sys

from lite import report
from lite.report import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser, "figure")


def run(args: argparse.Namespace) -> None:
    written = report.build(args.name, "figure", args.inputs, args.out, **options.options_from(args))
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
