"""The paper's tables as data frames; ``lite.report.build`` writes each as CSV plus a Markdown twin.

A function's docstring starts with the table's caption and has an ``Inputs:`` line naming the
files it needs. Rows whose ``evalset`` is ``mean`` average the eval-set rows above them, as the
paper's tables do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lite.io import InputError
from lite.report.inputs import Inputs
from lite.report.metrics import (
    ACCOUNTINGS,
    compare_cost,
    eval_stats,
    pair_quality,
    quality,
    similarity_summary,
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
    set (no-cache accounting as in the paper; KV-cache accounting beside it), main base model.

    Inputs: generation records of {tuning}.{final} and {tuning}.{dynamic} (optionally --model).
    """
    return _cost_table(inputs, tuning, final, dynamic, model)


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
    """Evaluation sets: number of prompts, number of categories and mean prompt length (words of
    instruction and input).

    Inputs: eval records (results/data/eval/{evalset}.jsonl) or generation records of one system.
    """
    records = inputs.evals or inputs.generations
    if not records:
        raise InputError("no eval or generation records among the inputs")
    return eval_stats(records)


def _baselines(inputs: Inputs, tuning: str, final: str) -> list[str]:
    reference = f"{tuning}.{final}"
    prefix = f"{tuning}."
    systems = set()
    for j in inputs.judgments:
        pair = {j.get("system_a"), j.get("system_b")}
        if reference in pair:
            systems |= {s for s in pair if s and s != reference and s.startswith(prefix)}
    decoders = [s[len(prefix) :] for s in systems if not re.match(r"fixed-L\d+$", s[len(prefix) :])]
    # dynamic exit first, then the baselines, each alphabetically
    return sorted(decoders, key=lambda d: (not d.startswith("dynamic"), d))


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
    decoders = list(decoders) if decoders is not None else _baselines(inputs, tuning, final)
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


def quality_table(inputs: Inputs):
    """Every judged pair: mean score of each system, wins/ties/losses from system A's side,
    order-inconsistency rate (%) and unparseable judgments, per judge and eval set.

    Inputs: judgment records.
    """
    frame = quality(inputs.judgments)
    if frame.empty:
        raise InputError("no judgment records among the inputs")
    return frame


# ----------------------------------------------------------------------------- Markdown


def _formatter(column: pd.Series):
    """One number format per column, so a column of FLOP counts reads alike on every row."""
    numbers = pd.to_numeric(column, errors="coerce")
    floats = column.map(lambda v: isinstance(v, (float, np.floating))).any()
    big = floats and numbers.abs().max() >= 1e5

    def cell(value) -> str:
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            return "–"
        if isinstance(value, (float, np.floating)):
            return f"{value:.3e}" if big else f"{value:.2f}"
        return str(value).replace("|", "\\|")

    return cell


def to_markdown(frame: pd.DataFrame, caption: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (floats with 2 decimals, large FLOP counts in e-notation)."""
    lines = [caption.strip(), ""] if caption else []
    lines.append("| " + " | ".join(map(str, frame.columns)) + " |")
    lines.append("| " + " | ".join("---" for _ in frame.columns) + " |")
    cells = [frame[c].map(_formatter(frame[c])).tolist() for c in frame.columns]
    for row in zip(*cells, strict=True):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
