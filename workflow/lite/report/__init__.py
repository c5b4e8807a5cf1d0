"""The paper's figures and tables, built from record files and analysis tables.

    lite figure fig5 --out results/figures/fig5.pdf results/tiny12/analysis/*/*/alignment.csv
    lite table table1 --out results/tables/table1.csv results/tiny12/generations/lite/*/*.jsonl

``ARTEFACTS`` maps each kind ("figure", "table") and artefact name to the function that builds it
(a figure and a table may share a name: ``frontier`` is both). The function's docstring starts
with what the artefact shows (first paragraph, ``Artefact.caption``, in the ``lite figure --help``
list) followed by an ``Inputs:`` line. ``build`` loads the inputs, calls the function with
the options given and writes the figure (PDF + PNG) or table (CSV + Markdown + HTML) atomically,
with the resolved config beside each file, and the run's caption: what the artefact shows, then
what the paper found beside what this run shows (``lite.report.captions``), in ``{name}.caption.rst``
(the Snakemake report shows it through workflow/report/artefact.rst) and atop the table twins.

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
from lite.report import captions, figures, tables
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


def caption_path(out: str | os.PathLike) -> Path:
    """Where ``build`` writes the caption of the artefact written to ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.caption.rst")


def build(
    name: str, kind: str, paths: Iterable[str | os.PathLike], out: str | os.PathLike, **options
) -> list[Path]:
    """Load ``paths``, build artefact ``name`` and write it to ``out`` (+ twins and caption);
    returns the written paths."""
    artefact = _resolve(name, kind)
    _check_options(artefact, options)
    paths = [str(p) for p in paths]
    inputs = load_inputs(paths)
    result = artefact.function(inputs, **options)
    resolved = {
        **{k: v for k, v in artefact.options.items() if v is not inspect.Parameter.empty},
        **options,
    }
    caption = " ".join(
        part for part in (artefact.caption, captions.run_sentences(name, inputs, resolved, result)) if part
    )
    out = Path(out)
    if kind == "figure":
        from lite.report.style import save_figure

        written = save_figure(result, out)
    else:
        twins = {
            out.with_suffix(".md"): tables.to_markdown(result, f"**{name}.** {caption}"),
            out.with_suffix(".html"): tables.to_html(result, name, caption),
        }
        with atomic_write(out) as handle:
            result.to_csv(handle, index=False)
        for path, text in twins.items():
            with atomic_write(path) as handle:
                handle.write(text)
        written = [out, *twins]
    with atomic_write(caption_path(out)) as handle:
        handle.write(f"**{name}.** {caption}\n")
    written.append(caption_path(out))
    config = {"artefact": name, "kind": kind, "inputs": paths, "options": resolved}
    for path in written:
        save_resolved_config(path, config)
    return written
