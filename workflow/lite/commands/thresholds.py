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
from lite.flags import add_setting_arguments, settings_from_args
from lite.io import save_resolved_config, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example command's layout
    parser.add_argument("--traces", nargs="+", required=True, metavar="FILE", help="trace records (JSONL)")
    add_setting_arguments(parser, analysis.ThresholdConfig, required=("layers",))
    parser.add_argument("--out", required=True, metavar="JSON", help="thresholds file")


def run(args: argparse.Namespace) -> None:
    config = settings_from_args(analysis.ThresholdConfig, args)
    traces = analysis.read_traces(args.traces)
    settings = dataclasses.asdict(config)
    table = analysis.threshold_table(traces, **settings)
    thresholds = {int(row.layer): float(row.threshold) for row in table.itertuples()}
    evidence = [
        {key: (None if isinstance(value, float) and value != value else value) for key, value in row.items()}
        for row in table.to_dict("records")
    ]
    document = analysis.thresholds_document(
        thresholds, config.target, config.min_count, config.bin_width, evidence
    )
    write_json(args.out, document)
    save_resolved_config(args.out, {"command": "thresholds", "traces": list(args.traces), **settings})
    for row in table.itertuples():
        print(
            f"layer {row.layer}: threshold {row.threshold:.4g} ({row.count} positions above, "
            f"alignment {row.alignment:.3f})",
            file=sys.stderr,
        )
