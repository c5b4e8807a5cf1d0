"""The ``lite`` command line: one sub-command per workflow stage.

    lite --help
    lite tune --help

Each command lives in ``lite/commands/<module>.py`` with ``add_arguments(parser)`` and
``run(args)``. Modules are imported only when their command runs, so analysis commands never
pay for (or need) torch. From the command line, input and set-up errors (``lite.io.SetupError``)
end the command with one line naming the file, line and field, and status 1; Ctrl-C ends it with
one line ("interrupted; ...") and status 130, the shell's for SIGINT. ``--debug`` shows their
traceback too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from lite.io import SetupError

# command name -> (module under lite.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare-train": ("prepare_train", "write the instruction-tuning set (synthetic or Alpaca)"),
    "prepare-corpus": ("prepare_corpus", "write the pretraining corpus of the tiny base models"),
    "prepare-eval": ("prepare_eval", "write one eval set in the common eval format"),
    "download": ("download", "fetch a pinned source file and verify its checksum"),
    "init-model": ("init_model", "build or convert the base model and tokenizer"),
    "tune": ("tune", "instruction-tune a model (IT, LITE or weighted LITE)"),
    "generate": ("generate", "greedy generation with one decoder (final, fixed, dynamic, baselines)"),
    "trace": ("trace", "final-layer generation recording every layer's argmax and confidence"),
    "layer-ce": ("layer_ce", "held-out CE of every checkpoint's exit on reference answers"),
    "merge-shards": ("merge_shards", "merge the shard files of a sharded generation or trace"),
    "align": ("align", "alignment and calibration tables from traces"),
    "thresholds": ("thresholds", "choose per-layer exit thresholds from calibration traces"),
    "probes": ("probes", "fit cheap exit gates (probe, saturation) per layer from calibration traces"),
    "judge": ("judge", "pairwise judging of two systems' generations, both orders"),
    "similarity": ("similarity", "spaCy semantic similarity between two systems' responses"),
    "figure": ("figure", "draw one of the paper's figures"),
    "table": ("table", "write one of the paper's tables"),
    "latency": ("latency", "latency benchmark of the decoders on the same prompts"),
    "seeds": ("seeds", "the headline findings on every seed of `snakemake seeds`"),
    "plan-cost": ("plan_cost", "GPU hours per stage of a config, to set resources.*.runtime"),
    "annotate": ("annotate", "serve the human rating page; ratings go to a SQLite file (Table 5)"),
    "table5": ("table5", "Table 5: human ratings per rater and aggregate, agreement with the judges"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Without ``argv`` (the ``lite`` script, ``python -m lite.cli``) a
    ``SetupError`` prints one line and returns 1, and Ctrl-C prints one line and returns 130; in-process
    callers passing ``argv`` get the exception itself, to handle or test it."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    args = None  # Ctrl-C may come before the arguments are parsed (while torch imports)
    try:
        module = importlib.import_module(f"lite.commands.{COMMANDS[name][0]}")
        parser = argparse.ArgumentParser(
            prog=f"lite {name}",
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(parser)
        parser.add_argument(
            "--debug", action="store_true", help="show the traceback of an input or set-up error or of Ctrl-C"
        )
        args = parser.parse_args(rest)
        module.run(args)
    except (SetupError, KeyboardInterrupt) as err:
        if not from_command_line:
            raise
        if args is not None and args.debug:
            traceback.print_exc()
        if isinstance(err, SetupError):
            print(f"lite {name}: error: {err}", file=sys.stderr)
            return 1
        # A command may say what the interrupted run kept (lite judge: the judgments it saved).
        print(f"lite {name}: interrupted; {str(err) or 'rerun to continue'}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
