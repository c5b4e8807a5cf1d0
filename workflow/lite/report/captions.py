"""What a caption says about this run, computed from the artefact's own inputs.

A caption is its artefact's docstring (what it shows, no numbers) followed by
``run_sentences``: for a figure of a paper finding, the finding beside the same measure in this
run and the verdict (``lite.report.findings``); for the tables and the frontier, this run's
numbers. ``lite.report.build`` writes the whole caption beside the artefact; the Snakemake report,
the Markdown and the HTML twins show it. The findings themselves, measured from an artefact's
inputs, are ``lite.report.findings``'.
"""

from __future__ import annotations

import pandas as pd

from lite.report import findings, tables
from lite.report.findings import Finding
from lite.report.inputs import (
    Inputs,
    model_order,
    sorted_like,
)
from lite.report.metrics import eval_stats, similarity_summary


def _per_model(found: dict[str, Finding]) -> str:
    """One finding's sentences, with this run's numbers per base model where there are several."""
    if len(found) == 1:
        return next(iter(found.values())).sentence()
    claim = next(iter(found.values())).claim
    runs = "; ".join(f"{model}: {f.this_run}, {f.verdict}" for model, f in found.items())
    return f"The paper: {claim.text}. This run: {runs}."


# ----------------------------------------------------------------------------- tables, frontier


def _savings(inputs: Inputs, *, tuning: str, final: str, dynamic: str, model: str | None) -> str:
    models = [model] if model is not None else model_order(inputs)
    parts = []
    for name in models:
        saved = findings.savings(inputs.generations, f"{tuning}.{final}", f"{tuning}.{dynamic}", name)
        if saved is not None:
            kv = f"{saved['kvcache']:.1f} % with a KV cache"
            parts.append(f"{name} {saved['nocache']:.1f} % of the FLOPs saved ({kv})")
    paper = findings.PAPER["fig1"].numbers
    return f"The paper: {paper}. This run: {', '.join(parts)}, mean over the eval sets." if parts else ""


def _similarity(inputs: Inputs) -> str:
    frame = similarity_summary(inputs.similarity)
    return (
        f"This run: mean similarity {frame['mean'].mean():.3f} over the eval sets "
        f"({frame['mean'].min():.3f}-{frame['mean'].max():.3f} per set)."
    )


def _evalsets(inputs: Inputs) -> str:
    stats = eval_stats(inputs.evals or inputs.generations)
    text = f"This run: {int(stats['count'].sum())} prompts in {len(stats)} eval sets"
    if inputs.generations:
        cut = tables.table4(inputs)["truncated_prompts"].sum()
        text += f", {int(cut)} of them cut to fit the model's context"
    return text + "."


def _sweep_point(row: pd.Series) -> str:
    return f"x{row['scale']:g} ({row['saved_pct_nocache']:.1f} % saved, score {row['score']:.2f})"


def _frontier(inputs: Inputs, *, tuning: str, final: str) -> str:
    frame = tables.frontier(inputs, tuning=tuning, final=final)
    margin = findings.points(findings.SAME_QUALITY_POINTS)
    parts = []
    for model in sorted_like(frame["model"], model_order(inputs)):
        part = frame[frame["model"] == model]
        sweep = part[part["kind"] == "sweep"].sort_values("scale")
        said = []
        if len(sweep) == 1:
            said.append(f"the sweep's one point is {_sweep_point(sweep.iloc[0])}")
        elif len(sweep) > 1:
            first, last = _sweep_point(sweep.iloc[0]), _sweep_point(sweep.iloc[-1])
            said.append(f"the sweep runs from {first} to {last}")
        kept = part[part["score_final"] - part["score"] <= findings.SAME_QUALITY_POINTS]
        if kept.empty:
            said.append(f"no setting stays within {margin} of the final layer's score")
        else:
            best = kept.loc[kept["saved_pct_nocache"].idxmax()]
            decoder = best["system"].partition(".")[2]
            said.append(
                f"within {margin} of the final layer's score, {decoder} saves the most "
                f"({best['saved_pct_nocache']:.1f} %, {best['saved_pct_kvcache']:.1f} % with a KV cache)"
            )
        kv = findings.frontier_finding(inputs, model, tuning=tuning, final=final)
        if kv is not None:  # the headline's finding, in the same words
            said.append(kv.this_run)
        prefix = f"{model}: " if frame["model"].nunique() > 1 else ""
        parts.append(prefix + "; ".join(said))
    return f"This run: {'; '.join(parts)}." if parts else ""


def _headline(frame: pd.DataFrame) -> str:
    holds = frame["verdict"].str.startswith("holds").sum()
    return f"This run: {holds} of the {len(frame)} findings measured hold here."


def run_sentences(name: str, inputs: Inputs, options: dict, result=None) -> str:
    """The sentences artefact ``name`` adds to its caption from this run (``options``: the
    artefact's resolved options; ``result``: the table built, which the headline's sentence reads)."""
    if name in findings.FINDINGS:
        found = {model: findings.FINDINGS[name](inputs, model, **options) for model in model_order(inputs)}
        found = {model: f for model, f in found.items() if f is not None}
        return _per_model(found) if found else ""
    if name in ("table1", "table3"):
        return _savings(inputs, **options)
    if name == "table2":
        return _similarity(inputs)
    if name == "table4":
        return _evalsets(inputs)
    if name == "frontier":
        return _frontier(inputs, **options)
    if name == "headline":
        return _headline(result)
    return ""
