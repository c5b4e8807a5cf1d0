"""The paper's figures and tables, built from record files and analysis tables.

    lite figure fig5 --out results/figures/fig5.pdf results/tiny12/analysis/*/*/alignment.csv
    lite table table1 --out results/tables/table1.csv results/tiny12/generations/lite/*/*.jsonl

``ARTEFACTS`` maps each kind ("figure", "table") and artefact name to the function that builds it
(a figure and a table may share a name: ``frontier`` is both). The function's docstring
is the artefact's caption (first paragraph) followed by an ``Inputs:`` line. That caption is the
artefact's only one: ``caption(name, kind)`` gives it to the Snakemake report (the workflow's
params.caption, rendered by workflow/report/artefact.rst), and it heads the Markdown twin and the
``lite figure --help`` list. ``build`` loads the inputs, calls the function with the options
given and writes the figure (PDF + PNG) or table (CSV + Markdown) atomically, with the resolved
config beside it.

This package never imports torch or transformers.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from lite.io import InputError, atomic_write, save_resolved_config
from lite.plan import FIGURES, TABLES
from lite.report import figures, tables
from lite.report.inputs import Inputs, load_inputs


@dataclasses.dataclass(frozen=True)
class Artefact:
    name: str
    kind: str  # "figure" or "table"
    function: Callable

    @property
    def caption(self) -> str:
        doc = inspect.getdoc(self.function) or ""
        return " ".join(doc.split("\n\n")[0].split())

    @property
    def needs(self) -> str:
        doc = inspect.getdoc(self.function) or ""
        start = doc.find("Inputs:")
        return " ".join(doc[start + len("Inputs:") :].split()) if start >= 0 else ""

    @property
    def options(self) -> dict[str, object]:
        """Keyword options and their defaults (``inspect.Parameter.empty`` for required ones)."""
        params = inspect.signature(self.function).parameters
        return {n: p.default for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


# The workflow's figures and tables (lite.plan names them), plus the ``quality`` table of every
# judged pair for use by hand.
ARTEFACTS: dict[str, dict[str, Artefact]] = {
    "figure": {name: Artefact(name, "figure", getattr(figures, name)) for name in FIGURES},
    "table": {
        **{name: Artefact(name, "table", getattr(tables, name)) for name in TABLES},
        "quality": Artefact("quality", "table", tables.quality_table),
    },
}


def caption(name: str, kind: str) -> str:
    """The caption of figure or table ``name``: the first paragraph of its function's docstring."""
    return _resolve(name, kind).caption


def _resolve(name: str, kind: str | None) -> Artefact:
    """The artefact ``name`` of ``kind``; without a kind, the only one of that name."""
    kinds = [kind] if kind is not None else [k for k in ARTEFACTS if name in ARTEFACTS[k]]
    if len(kinds) > 1:
        raise InputError(f"{name!r} is both a figure and a table; say which")
    if not kinds or kinds[0] not in ARTEFACTS or name not in ARTEFACTS[kinds[0]]:
        names = [n for k in ([kind] if kind in ARTEFACTS else ARTEFACTS) for n in ARTEFACTS[k]]
        raise InputError(f"unknown {kind or 'artefact'} {name!r}; choose from {', '.join(names)}")
    return ARTEFACTS[kinds[0]][name]


def _check_options(artefact: Artefact, options: dict) -> None:
    known = artefact.options
    unknown = set(options) - set(known)
    if unknown:
        raise InputError(
            f"{artefact.name} takes no option {sorted(unknown)}; its options: {sorted(known) or 'none'}"
        )
    missing = [n for n, d in known.items() if d is inspect.Parameter.empty and n not in options]
    if missing:
        raise InputError(f"{artefact.name} needs option(s) {missing}")


def make(name: str, inputs: Inputs, kind: str | None = None, **options):
    """Build artefact ``name`` from loaded inputs: a matplotlib figure or a data frame."""
    artefact = _resolve(name, kind)
    _check_options(artefact, options)
    return artefact.function(inputs, **options)


def build(
    name: str, kind: str, paths: Iterable[str | os.PathLike], out: str | os.PathLike, **options
) -> list[Path]:
    """Load ``paths``, build artefact ``name`` and write it to ``out`` (+ twin); returns written paths."""
    artefact = _resolve(name, kind)
    _check_options(artefact, options)
    paths = [str(p) for p in paths]
    inputs = load_inputs(paths)
    result = artefact.function(inputs, **options)
    out = Path(out)
    if kind == "figure":
        from lite.report.style import save_figure

        written = save_figure(result, out)
    else:
        markdown = out.with_suffix(".md")
        with atomic_write(out) as handle:
            result.to_csv(handle, index=False)
        with atomic_write(markdown) as handle:
            handle.write(tables.to_markdown(result, f"**{name}.** {artefact.caption}"))
        written = [out, markdown]
    config = {
        "artefact": name,
        "kind": kind,
        "inputs": paths,
        "options": {
            **{k: v for k, v in artefact.options.items() if v is not inspect.Parameter.empty},
            **options,
        },
    }
    for path in written:
        save_resolved_config(path, config)
    return written
