"""The paper's tables as data frames; ``lite.report.build`` writes each as CSV plus a Markdown twin.

A function's docstring starts with the table's caption and has an ``Inputs:`` line naming the
files it needs. Rows whose ``evalset`` is ``mean`` average the eval-set rows above them, as the
paper's tables do.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lite.decoders.names import decoder_name
from lite.io import InputError
from lite.report.findings import headline_findings
from lite.report.inputs import Inputs, judged_decoders
from lite.report.metrics import (
    ACCOUNTINGS,
    compare_cost,
    eval_stats,
    pair_quality,
    quality,
    similarity_summary,
    truncated_prompts,
)


def _with_means(
    frame: pd.DataFrame, keys: Sequence[str], mean_cols: Sequence[str], sum_cols: Sequence[str] = ()
):
    """Append, per ``keys`` group, a row with evalset ``mean``: mean of ``mean_cols``, sum of ``sum_cols``."""
    rows = []
    for group, part in frame.groupby(list(keys), sort=False):
        group = group if isinstance(group, tuple) else (group,)
        rows.append(part)
        mean = {k: v for k, v in zip(keys, group, strict=True)}
        mean["evalset"] = "mean"
        mean.update({c: part[c].mean() for c in mean_cols})
        mean.update({c: part[c].sum() for c in sum_cols})
        rows.append(pd.DataFrame([mean]))
    if not rows:
        return frame
    return pd.concat(rows, ignore_index=True).reindex(columns=frame.columns)


def _cost_table(inputs: Inputs, tuning: str, final: str, dynamic: str, model: str | None) -> pd.DataFrame:
    x, y = f"{tuning}.{final}", f"{tuning}.{dynamic}"
    frame = compare_cost(inputs.generations, x, y)
    if model is not None:
        frame = frame[frame["model"] == model]
    if frame.empty:
        raise InputError(
            f"no generation records of both {x} and {y}" + ("" if model is None else f" for {model}")
        )
    out = pd.DataFrame({"model": frame["model"], "evalset": frame["evalset"], "n": frame["n"]})
    for a in ACCOUNTINGS:
        out[f"final_flops_{a}"] = frame[f"final_flops_{a}"]
        out[f"dynamic_flops_{a}"] = frame[f"other_flops_{a}"]
        out[f"saved_pct_{a}"] = frame[f"saved_pct_{a}"]
    out = _with_means(out, ["model"], [f"saved_pct_{a}" for a in ACCOUNTINGS], ["n"])
    # a mean of per-set percentages has no FLOP count of its own
    flop_columns = [f"{p}_flops_{a}" for p in ("final", "dynamic") for a in ACCOUNTINGS]
    out.loc[out["evalset"] == "mean", flop_columns] = np.nan
    return out


def table1(
    inputs: Inputs,
    *,
    tuning: str = "lite",
    final: str = "final",
    dynamic: str = "dynamic-paper",
    model: str | None = None,
):
    """Cost improvement of dynamic early exit over final-layer generation: % of FLOPs saved per eval
    set (no-cache accounting as in the paper; KV-cache accounting beside it), main base model;
    below it the same for each option of that decoder among the inputs (``{dynamic}-copy``,
    ``{dynamic}-probe-copy``, ...: the KV-cached exit beyond the paper).

    Inputs: generation records of {tuning}.{final}, {tuning}.{dynamic} and its options (optionally
    --model).
    """
    found = {record["decoder"] for record in inputs.generations if record.get("tuning") == tuning}
    options = sorted(
        name for name in found if decoder_name(name).option is not None and decoder_name(name).base == dynamic
    )
    parts = [
        _cost_table(inputs, tuning, final, name, model).assign(decoder=name) for name in [dynamic, *options]
    ]
    frame = pd.concat(parts, ignore_index=True)
    return frame[["model", "decoder", *[c for c in frame.columns if c not in ("model", "decoder")]]]


def table3(
    inputs: Inputs,
    *,
    tuning: str = "lite",
    final: str = "final",
    dynamic: str = "dynamic-paper",
    model: str | None = None,
):
    """Cost improvement (% FLOPs saved) of dynamic early exit per eval set, second base model.

    Inputs: generation records of {tuning}.{final} and {tuning}.{dynamic} (optionally --model).
    """
    return _cost_table(inputs, tuning, final, dynamic, model)


def table2(inputs: Inputs):
    """Semantic similarity (spaCy en_core_web_sm) of final-layer and dynamic-exit responses to the
    same prompts, mean and standard deviation per eval set.

    Inputs: similarity CSVs (lite similarity).
    """
    if inputs.similarity is None or inputs.similarity.empty:
        raise InputError("no similarity tables (lite similarity) among the inputs")
    frame = similarity_summary(inputs.similarity)
    order = list(dict.fromkeys(inputs.similarity["evalset"]))
    frame = frame.sort_values("evalset", key=lambda s: s.map(order.index), kind="stable")
    frame = frame.sort_values(["model", "system_a", "system_b"], kind="stable")
    out = _with_means(frame, ["model", "system_a", "system_b"], ["mean"], ["n"])
    out.loc[out["evalset"] == "mean", "std"] = np.nan
    return out


def table4(inputs: Inputs):
    """Evaluation sets: number of prompts, number of categories, mean prompt length (words of
    instruction and input) and, given generation records, the prompts cut from the left to fit
    the model's context (``truncated_prompts``).

    Inputs: eval records (results/data/eval/{evalset}.jsonl), generation records of one system,
    or both (the workflow passes both: the eval sets as prepared and the main model's truncations).
    """
    records = inputs.evals or inputs.generations
    if not records:
        raise InputError("no eval or generation records among the inputs")
    stats = eval_stats(records)
    if not inputs.generations:
        return stats
    # an eval set without generation records stays empty: its truncations are unknown, not 0
    stats = stats.merge(truncated_prompts(inputs.generations), on="evalset", how="left")
    stats["truncated_prompts"] = stats["truncated_prompts"].astype("Int64")
    columns = ["evalset", "count", "categories", "mean_prompt_words", "truncated_prompts", "category_names"]
    return stats[columns]


def table6(
    inputs: Inputs, *, tuning: str = "lite", final: str = "final", decoders: Sequence[str] | None = None
):
    """Dynamic early exit vs the random and sequential exit baselines: quality judged against
    final-layer generation (mean score, wins/ties/losses from the decoder's side, order
    inconsistency, unparseable judgments) and % FLOPs saved over final-layer generation.

    Inputs: judgments of {tuning}.{decoder} vs {tuning}.{final} and generation records of each
    system (decoders default to every non-fixed decoder judged against the final layer).
    """
    reference = f"{tuning}.{final}"
    decoders = list(decoders) if decoders is not None else judged_decoders(inputs, tuning, final)
    if not decoders:
        raise InputError(f"no judgments of a {tuning} decoder against {reference} among the inputs")
    parts = []
    for decoder in decoders:
        system = f"{tuning}.{decoder}"
        q = pair_quality(inputs.judgments, system, reference)
        c = compare_cost(inputs.generations, reference, system)
        if q.empty:
            raise InputError(f"no judgments of {system} vs {reference} among the inputs")
        merged = q.merge(
            c[["model", "evalset", *[f"saved_pct_{a}" for a in ACCOUNTINGS]]],
            on=["model", "evalset"],
            how="left",
        )
        parts.append(merged.assign(system=system))
    frame = pd.concat(parts, ignore_index=True).rename(columns={"score_x": "score", "score_y": "score_final"})
    columns = [
        "model",
        "system",
        "evalset",
        "judge",
        "n",
        "score",
        "score_final",
        "wins",
        "ties",
        "losses",
        "inconsistent_pct",
        "unparsed",
        *[f"saved_pct_{a}" for a in ACCOUNTINGS],
    ]
    # models in input order, each with its systems in decoder order
    frame = frame[columns].sort_values(
        "model", key=lambda m: m.map(list(dict.fromkeys(m)).index), kind="stable"
    )
    return _with_means(
        frame,
        ["model", "system"],
        ["score", "score_final", "inconsistent_pct", *[f"saved_pct_{a}" for a in ACCOUNTINGS]],
        ["n", "wins", "ties", "losses", "unparsed"],
    )


def frontier(inputs: Inputs, *, tuning: str = "lite", final: str = "final"):
    """The quality/cost frontier of dynamic exit (beyond the paper, which picked two threshold sets by
    eye): one row per decoder judged against final-layer generation, averaged over the eval sets:
    its mean score, the final layer's, and the % FLOPs saved in both accountings. Sweep points
    (``dynamic-x{k}``) use the paper's thresholds moved away from 1 by k (1 - k (1 - t)); the
    paper's, aggressive and calibrated settings and the random/sequential baselines sit beside them.

    Inputs: judgments of {tuning}.{decoder} vs {tuning}.{final} and generation records of each
    system.
    """
    decoders = judged_decoders(inputs, tuning, final)
    if not decoders:
        raise InputError(f"no judgments of a {tuning} decoder against {tuning}.{final} among the inputs")
    per_set = table6(inputs, tuning=tuning, final=final, decoders=decoders)
    frame = per_set[per_set["evalset"] == "mean"].drop(columns=["evalset"]).copy()
    decoder = frame["system"].str.partition(".")[2].map(decoder_name)
    # where its exits come from: sweep, paper, aggressive, calibrated or baseline
    frame.insert(2, "kind", decoder.map(lambda d: d.label))
    frame.insert(3, "scale", pd.to_numeric(decoder.map(lambda d: d.scale)))
    return frame.sort_values(["model", "saved_pct_nocache"], kind="stable").reset_index(drop=True)


HEADLINE_COLUMNS = ["finding (where shown)", "this run", "the paper", "verdict"]


def headline(
    inputs: Inputs,
    *,
    tuning: str = "lite",
    final: str = "final",
    dynamic: str = "dynamic-paper",
    aggressive: str = "dynamic-aggressive",
    baseline: str = "it",
):
    """The paper's findings, each beside the same measure in this run and a verdict (holds or does
    not hold here, by the test it names): alignment after IT and LITE, the final layers' quality,
    IT's fixed exits, confidence as an exit signal after LITE and IT, the exit layers, dynamic exit's
    saving and quality, the aggressive thresholds and the baselines, on the main base model. Every
    number is the mean over the eval sets of its value on each set (each set weighs the same).

    Inputs: alignment and calibration CSVs of {baseline} and {tuning}; judgments of
    {tuning}.{decoder} vs {tuning}.{final}, of {baseline}.{final} vs {tuning}.{final} and of
    {baseline}.fixed-L{k} vs {baseline}.{final}; generation records of each {tuning} system.
    """
    models = [g["model"] for g in inputs.generations if g.get("tuning") == tuning]
    if not models:
        raise InputError(f"no generation records of {tuning} among the inputs")
    found = headline_findings(
        inputs,
        models[0],
        tuning=tuning,
        final=final,
        dynamic=dynamic,
        aggressive=aggressive,
        baseline=baseline,
    )
    if not found:
        raise InputError("nothing to report among the inputs")
    rows = [[f"{f.claim.words} ({f.shown_in})", f.this_run, f.claim.numbers, f.verdict] for f in found]
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def quality_table(inputs: Inputs):
    """Every judged pair: mean score of each system, wins/ties/losses from system A's side,
    order-inconsistency rate (%) and unparseable judgments, per judge and eval set.

    Inputs: judgment records.
    """
    frame = quality(inputs.judgments)
    if frame.empty:
        raise InputError("no judgment records among the inputs")
    return frame


# ----------------------------------------------------------------------------- Markdown, HTML


def _formatter(column: pd.Series):
    """One number format per column, so a column of FLOP counts reads alike on every row."""
    numbers = pd.to_numeric(column, errors="coerce")
    floats = column.map(lambda v: isinstance(v, (float, np.floating))).any()
    big = floats and numbers.abs().max() >= 1e5

    def cell(value) -> str:
        if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            return "–"
        if isinstance(value, (float, np.floating)):
            return f"{value:.3e}" if big else f"{value:.2f}"
        return str(value)

    return cell


def _cells(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    """The table's rows as text, every column in its one format."""
    columns = [frame[c].map(_formatter(frame[c])).tolist() for c in frame.columns]
    return list(zip(*columns, strict=True))


def to_markdown(frame: pd.DataFrame, caption: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (floats with 2 decimals, large FLOP counts in e-notation)."""
    lines = [caption.strip(), ""] if caption else []
    lines.append("| " + " | ".join(map(str, frame.columns)) + " |")
    lines.append("| " + " | ".join("---" for _ in frame.columns) + " |")
    for row in _cells(frame):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n"


# Inline styles only: the fragment is shown on its own and inside the report's landing page,
# whose own styles it must neither need nor change.
_TABLE = "border-collapse: collapse; font-size: 0.8rem; margin: 0.5rem 0;"
_CELL = "border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: left; vertical-align: top;"


def to_html(frame: pd.DataFrame, name: str, caption: str) -> str:
    """The table as an HTML fragment headed by its caption, cells formatted as in ``to_markdown``."""
    head = "".join(
        f'<th style="{_CELL} background: #f3f3f3;">{html.escape(str(c))}</th>' for c in frame.columns
    )
    rows = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{html.escape(cell)}</td>' for cell in row) + "</tr>"
        for row in _cells(frame)
    )
    return (
        f'<meta charset="utf-8">\n<p><strong>{html.escape(name)}.</strong> {html.escape(caption)}</p>\n'
        f'<table id="{html.escape(name)}" style="{_TABLE}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>\n"
    )
