"""The command line of ``lite figure`` and ``lite table``: one set of options, one build.

Every artefact takes only some options; those not given fall back to the artefact's defaults,
and an option the artefact does not take is an error (``lite.report.build`` checks).
"""

from __future__ import annotations

import argparse
import inspect
import sys

from lite.report import ARTEFACTS, build


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated integers expected, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x)


# option -> (type, help)
OPTIONS = {
    "tuning": (str, "tuning whose systems are shown (it, lite, lite_weighted)"),
    "tunings": (_names, "comma-separated tunings to compare, e.g. it,lite"),
    "final": (str, "decoder name of final-layer generation (default final)"),
    "dynamic": (str, "decoder name of dynamic exit, e.g. dynamic-paper"),
    "evalset": (str, "eval set shown (fig9, fig10)"),
    "layers": (_ints, "comma-separated checkpoint layers shown or marked, e.g. 2,4,6"),
    "model": (str, "base model (records' model field) to keep"),
    "decoders": (_names, "comma-separated decoders compared with the final layer (table6)"),
    "a": (str, "first system, tuning.decoder (fig4)"),
    "b": (str, "second system, tuning.decoder (fig4)"),
}


def add_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    names = list(ARTEFACTS[kind])
    parser.add_argument("name", choices=names, metavar="NAME", help=f"{kind}: {', '.join(names)}")
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT_FILE", help="record files (.jsonl) and tables (.csv)"
    )
    suffix = ".pdf (+ .png twin)" if kind == "figure" else ".csv (+ .md and .html twins)"
    parser.add_argument("--out", required=True, help=f"output path, {suffix}")
    for option, (kind_type, help_text) in OPTIONS.items():
        parser.add_argument(f"--{option}", type=kind_type, default=None, help=help_text)
    lines = []
    for name in names:
        artefact = ARTEFACTS[kind][name]
        opts = ", ".join(
            f"--{o}" + ("" if d is inspect.Parameter.empty else f"={_show(d)}")
            for o, d in artefact.options.items()
        )
        lines.append(
            f"{name}: {artefact.caption}\n    needs: {artefact.needs}\n    options: {opts or 'none'}"
        )
    parser.epilog = "\n".join(lines)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def options_from(args: argparse.Namespace) -> dict:
    return {o: getattr(args, o) for o in OPTIONS if getattr(args, o) is not None}


def run(args: argparse.Namespace, kind: str) -> None:
    written = build(args.name, kind, args.inputs, args.out, **options_from(args))
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
