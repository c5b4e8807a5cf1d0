"""The ``lite`` command line: one sub-command per workflow stage.

    lite --help
    lite tune --help

Each command lives in ``lite/commands/<module>.py`` with ``add_arguments(parser)`` and
``run(args)``. Modules are imported only when their command runs, so analysis commands never
pay for (or need) torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module under lite.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare-train": ("prepare_train", "write the instruction-tuning set (synthetic or Alpaca)"),
    "prepare-eval": ("prepare_eval", "write one eval set in the common eval format"),
    "download": ("download", "fetch a pinned source file and verify its checksum"),
    "init-model": ("init_model", "build or convert the base model and tokenizer"),
    "tune": ("tune", "instruction-tune a model (IT, LITE or weighted LITE)"),
    "generate": ("generate", "greedy generation with one decoder (final, fixed, dynamic, baselines)"),
    "trace": ("trace", "final-layer generation recording every layer's argmax and confidence"),
    "merge-shards": ("merge_shards", "merge the shard files of a sharded generation or trace"),
    "align": ("align", "alignment and calibration tables from traces"),
    "thresholds": ("thresholds", "choose per-layer exit thresholds from calibration traces"),
    "judge": ("judge", "pairwise judging of two systems' generations, both orders"),
    "similarity": ("similarity", "spaCy semantic similarity between two systems' responses"),
    "figure": ("figure", "draw one of the paper's figures"),
    "table": ("table", "write one of the paper's tables"),
    "bench": ("bench", "latency benchmark of the decoders on the same prompts"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"lite.commands.{COMMANDS[name][0]}")
    parser = argparse.ArgumentParser(
        prog=f"lite {name}", description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    module.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
