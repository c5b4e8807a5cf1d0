"""Alignment and calibration tables from trace records.

    lite align --traces results/tiny12/traces/lite/vic.jsonl \\
        --out-alignment results/tiny12/analysis/lite/vic/alignment.csv \\
        --out-calibration results/tiny12/analysis/lite/vic/calibration.csv

Rows are grouped by the records' model, tuning and evalset fields, so several trace files can be
given at once. Each CSV gets its resolved config beside it (``X.csv.config.json``).
"""

from __future__ import annotations

import argparse
import sys

from lite import analysis
from lite.io import atomic_write, save_resolved_config


def _bins(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bins: comma-separated numbers expected, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example command's layout
    parser.add_argument("--traces", nargs="+", required=True, metavar="FILE", help="trace records (JSONL)")
    parser.add_argument("--out-alignment", required=True, metavar="CSV", help="%% alignment per layer")
    parser.add_argument(
        "--out-calibration", required=True, metavar="CSV", help="alignment per confidence bin"
    )
    parser.add_argument(
        "--bins",
        type=_bins,
        default=analysis.DEFAULT_BINS,
        help="confidence bin edges covering [0, 1] (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> None:
    traces = analysis.read_traces(args.traces)
    align = analysis.alignment(traces)
    calib = analysis.calibration(traces, args.bins)
    for frame, path in ((align, args.out_alignment), (calib, args.out_calibration)):
        with atomic_write(path) as handle:
            frame.to_csv(handle, index=False)
        save_resolved_config(path, {"command": "align", "traces": list(args.traces), "bins": list(args.bins)})
    for row in align.itertuples():
        print(
            f"{row.model}/{row.tuning}/{row.evalset} layer {row.layer}: {row.alignment_pct:.1f}% "
            f"of {row.count} positions",
            file=sys.stderr,
        )
