"""Choose per-layer exit thresholds from calibration traces.

    lite thresholds --traces results/tiny12/traces/lite/calib.jsonl --layers 3,6,9 \\
        --target 0.95 --min-count 20 --out results/tiny12/thresholds/calibrated.json

For each layer: the lower edge of the lowest confidence bin (of --bin-width) from which every bin
holding at least --min-count positions agrees with the final layer at least --target of the time;
1.01 ("never exit") where none does (see ``lite.analysis.choose_thresholds``). The file records
each threshold's evidence: positions at or above it, their alignment, its bin's alignment.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from lite import analysis
from lite.io import save_resolved_config, write_json


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--layers: comma-separated integers expected, got {text!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example command's layout
    parser.add_argument("--traces", nargs="+", required=True, metavar="FILE", help="trace records (JSONL)")
    parser.add_argument("--layers", type=_layers, required=True, help="checkpoint layers, e.g. 2,4,6")
    parser.add_argument("--target", type=float, default=0.95, help="required alignment (default 0.95)")
    parser.add_argument("--min-count", type=int, default=20, help="fewest positions for a bin to count")
    parser.add_argument("--bin-width", type=float, default=0.05, help="confidence bin width (default 0.05)")
    parser.add_argument("--out", required=True, metavar="JSON", help="thresholds file")


def run(args: argparse.Namespace) -> None:
    config = analysis.ThresholdConfig(args.layers, args.target, args.min_count, args.bin_width)
    traces = analysis.read_traces(args.traces)
    table = analysis.threshold_table(traces, config.layers, config.target, config.min_count, config.bin_width)
    thresholds = {int(row.layer): float(row.threshold) for row in table.itertuples()}
    evidence = [
        {key: (None if isinstance(value, float) and value != value else value) for key, value in row.items()}
        for row in table.to_dict("records")
    ]
    document = analysis.thresholds_document(
        thresholds, config.target, config.min_count, config.bin_width, evidence
    )
    write_json(args.out, document)
    settings = {"command": "thresholds", "traces": list(args.traces), **dataclasses.asdict(config)}
    save_resolved_config(args.out, settings)
    for row in table.itertuples():
        print(
            f"layer {row.layer}: threshold {row.threshold:.4g} ({row.count} positions above, "
            f"alignment {row.alignment:.3f})",
            file=sys.stderr,
        )
