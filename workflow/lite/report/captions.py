"""What a caption says about this run, computed from the artefact's own inputs.

A caption is its artefact's docstring (what it shows, no numbers) followed by
``run_sentences``: for a figure of a paper finding, the finding beside the same measure in this
run and the verdict (``lite.report.findings``); for the tables and the frontier, this run's
numbers. ``lite.report.build`` writes the whole caption beside the artefact; the Snakemake report,
the Markdown and the HTML twins show it. The headline table gathers the findings of the main
model (``headline_findings``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from lite.decoders.names import BASELINE_NAMES, decoder_name
from lite.report import findings, tables
from lite.report.findings import Finding
from lite.report.inputs import (
    Inputs,
    alignment_table,
    calibration_layers,
    calibration_table,
    early_checkpoints,
    fixed_exits,
    model_order,
    sorted_like,
)
from lite.report.metrics import compare_cost, eval_stats, pair_quality, similarity_summary


def _fig1(inputs: Inputs, model: str, *, tuning: str, final: str, dynamic: str) -> Finding | None:
    return findings.saving_finding(
        inputs.judgments, inputs.generations, model, f"{tuning}.{final}", f"{tuning}.{dynamic}"
    )


def _fig12(inputs: Inputs, model: str, *, tuning: str, final: str, dynamic: str) -> Finding | None:
    return findings.aggressive_finding(
        inputs.judgments, inputs.generations, model, f"{tuning}.{final}", f"{tuning}.{dynamic}"
    )


def _fig3(inputs: Inputs, model: str, *, tuning: str, final: str) -> Finding | None:
    layers = [layer for layer, _ in fixed_exits(inputs, tuning)]
    return findings.fixed_exit_finding(inputs.judgments, model, tuning, final, layers)


def _fig4(inputs: Inputs, model: str, *, a: str, b: str) -> Finding | None:
    return findings.final_quality_finding(inputs.judgments, model, a, b)


def _alignment(figure: str):
    def finding(inputs: Inputs, model: str, *, tunings: Sequence[str], layers: Sequence[int] | None):
        frame = alignment_table(inputs)
        if frame.empty:
            return None
        shown = list(layers) if layers else sorted(frame["layer"].unique())[:-1]
        return findings.alignment_finding(frame, model, tunings[0], tunings[1], shown, figure)

    return finding


def _confidence(figure: str):
    def finding(inputs: Inputs, model: str, *, tuning: str, layers: Sequence[int] | None):
        frame = calibration_table(inputs)
        frame = frame[frame["tuning"] == tuning]
        if frame.empty:
            return None
        shown = calibration_layers(inputs, frame, tuning, layers)
        return findings.confidence_finding(frame, model, tuning, shown, figure)

    return finding


def _fig7(inputs: Inputs, model: str, *, tuning: str, final: str, dynamic: str) -> Finding | None:
    return findings.length_finding(inputs.generations, model, f"{tuning}.{final}", f"{tuning}.{dynamic}")


def _fig8(inputs: Inputs, model: str, *, tuning: str, dynamic: str) -> Finding | None:
    return findings.exit_finding(inputs.generations, model, f"{tuning}.{dynamic}")


def _category(figure: str):
    def finding(inputs: Inputs, model: str, *, evalset: str, tuning: str, final: str, dynamic: str):
        x, y = f"{tuning}.{final}", f"{tuning}.{dynamic}"
        judgments = [j for j in inputs.judgments if j.get("evalset") == evalset and j.get("model") == model]
        generations = [
            g for g in inputs.generations if g.get("evalset") == evalset and g.get("model") == model
        ]
        by = ("model", "evalset", "category")
        return findings.category_finding(
            pair_quality(judgments, x, y, by=by), compare_cost(generations, x, y, by=by), figure
        )

    return finding


def _table6(inputs: Inputs, model: str, *, tuning: str, final: str, decoders: Sequence[str] | None):
    decoders = list(decoders) if decoders is not None else tables.judged_decoders(inputs, tuning, final)
    # the dynamic decoder the baselines are measured against: the first of the judged ones
    named = [decoder_name(d) for d in decoders]
    dynamic = [d.name for d in named if d.family == "dynamic"]
    baselines = [f"{tuning}.{d.name}" for d in named if d.family == "baseline"]
    if not dynamic:
        return None
    return findings.baseline_finding(
        inputs.judgments, inputs.generations, model, f"{tuning}.{final}", f"{tuning}.{dynamic[0]}", baselines
    )


# artefact -> its finding for one base model, from the inputs and the artefact's options
FINDINGS: dict[str, Callable[..., Finding | None]] = {
    "fig1": _fig1,
    "fig3": _fig3,
    "fig4": _fig4,
    "fig5": _alignment("fig5"),
    "fig6": _confidence("fig6"),
    "fig7": _fig7,
    "fig8": _fig8,
    "fig9": _category("fig9"),
    "fig10": _category("fig10"),
    "fig11": _confidence("fig11"),
    "fig12": _fig12,
    "fig13": _alignment("fig13"),
    "fig14": _alignment("fig14"),
    "fig15": _confidence("fig15"),
    "table6": _table6,
}


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
        prefix = f"{model}: " if frame["model"].nunique() > 1 else ""
        parts.append(prefix + "; ".join(said))
    return f"This run: {'; '.join(parts)}." if parts else ""


def _headline(frame: pd.DataFrame) -> str:
    holds = frame["verdict"].str.startswith("holds").sum()
    return f"This run: {holds} of the {len(frame)} findings measured hold here."


def headline_findings(
    inputs: Inputs, model: str, *, tuning: str, final: str, dynamic: str, aggressive: str, baseline: str
) -> list[Finding]:
    """The paper's main findings measured on one base model, in the paper's order; the layers read
    are the checkpoints of ``tuning`` (the same model's, so IT's too)."""
    layers = early_checkpoints(inputs, tuning) or None
    found = [
        FINDINGS["fig5"](inputs, model, tunings=(baseline, tuning), layers=layers),
        FINDINGS["fig4"](inputs, model, a=f"{baseline}.{final}", b=f"{tuning}.{final}"),
        FINDINGS["fig3"](inputs, model, tuning=baseline, final=final),
        FINDINGS["fig6"](inputs, model, tuning=tuning, layers=layers),
        FINDINGS["fig11"](inputs, model, tuning=baseline, layers=layers),
        FINDINGS["fig8"](inputs, model, tuning=tuning, dynamic=dynamic),
        FINDINGS["fig1"](inputs, model, tuning=tuning, final=final, dynamic=dynamic),
        FINDINGS["fig12"](inputs, model, tuning=tuning, final=final, dynamic=aggressive),
        FINDINGS["table6"](inputs, model, tuning=tuning, final=final, decoders=[dynamic, *BASELINE_NAMES]),
    ]
    return [f for f in found if f is not None]


def run_sentences(name: str, inputs: Inputs, options: dict, result=None) -> str:
    """The sentences artefact ``name`` adds to its caption from this run (``options``: the
    artefact's resolved options; ``result``: the table built, which the headline's sentence reads)."""
    if name in FINDINGS:
        found = {model: FINDINGS[name](inputs, model, **options) for model in model_order(inputs)}
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
