"""Table 5: human ratings of two systems, per rater and aggregated, checked against the judges.

One row per source of scores, on the pair the ratings database holds (its ``system_a`` and
``system_b``):

- ``rater``: one person's ratings (skips left out);
- ``humans``: per item the mean over the raters who rated it;
- ``judge``: the workflow's judge (each system's mean over both orders, as in its records);
- ``second_judge``: the optional second LLM judge (the paper's GPT-4 row).

Judges are read on the items the humans rated, so every row covers the same prompts. Columns:
``n`` items; ``score_a`` / ``score_b`` mean score per system; ``wins`` / ``ties`` / ``losses``
from A's side (a judge's own outcome, where orders that disagree are a tie; a person's by
comparing their two scores); ``alpha``: Krippendorff's alpha (interval) over all raters, on the
humans row; ``spearman_vs_humans`` and ``agree_vs_humans_pct``: Spearman's rho over responses
and the % of items whose preferred system (A, tie, B) matches the humans' (a rater is compared
with the mean of the *other* raters); ``spearman_vs_judge`` and ``agree_vs_judge_pct``: the same
against the workflow's judge (for the second judge: agreement between the two judges).

    lite table5 --db results/tiny12/human/vicuna.sqlite \\
        --judgments results/tiny12/judgments/reference/vicuna/lite.final~lite.dynamic-paper.jsonl \\
        --out results/tables/table5.csv
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lite.human.agreement import krippendorff_alpha_interval, spearman
from lite.human.store import read_meta, read_ratings
from lite.io import InputError, atomic_write, save_resolved_config
from lite.judge.records import read_judgments
from lite.report.tables import to_markdown

CAPTION = (
    "Human evaluation: mean score (1-10) per system from each rater and from all raters, "
    "inter-rater agreement (Krippendorff's alpha, interval) and agreement of each rater and of "
    "the judges with the humans and with the workflow's judge (Spearman's rho over responses, "
    "% of items with the same preferred system)."
)
COLUMNS = [
    "model",
    "evalset",
    "system_a",
    "system_b",
    "kind",
    "source",
    "n",
    "score_a",
    "score_b",
    "wins",
    "ties",
    "losses",
    "alpha",
    "spearman_vs_humans",
    "agree_vs_humans_pct",
    "spearman_vs_judge",
    "agree_vs_judge_pct",
]
_FLIP = {"win": "loss", "loss": "win", "tie": "tie"}


def _preference(a: float, b: float) -> str:
    return "win" if a > b else "loss" if a < b else "tie"


def judge_scores(records: list[dict], meta: dict, where: str) -> tuple[str, pd.DataFrame]:
    """(label, frame indexed by id: score_a, score_b, outcome) of one judge on the database's pair."""
    pair = (meta["system_a"], meta["system_b"])
    rows, labels = [], set()
    for record in records:
        if (record["model"], record["evalset"]) != (meta["model"], meta["evalset"]):
            continue
        systems = (record["system_a"], record["system_b"])
        if systems not in (pair, pair[::-1]) or not record["parsed"]:
            continue
        judge = record["judge"]
        labels.add(judge["name"] + (f" ({judge['model']})" if judge.get("model") else ""))
        a, b, outcome = record["score_a"], record["score_b"], record["outcome"]
        if systems != pair:  # judged as (B, A): map back to the database's sides
            a, b, outcome = b, a, _FLIP[outcome]
        rows.append({"id": record["id"], "score_a": a, "score_b": b, "outcome": outcome})
    if not rows:
        raise InputError(
            f"{where}: no scored judgment of {pair[0]} vs {pair[1]} on {meta['model']}/{meta['evalset']}"
        )
    if len(labels) > 1:
        raise InputError(f"{where}: judgments of several judges ({', '.join(sorted(labels))}); give one")
    frame = pd.DataFrame(rows)
    duplicated = frame["id"][frame["id"].duplicated()].tolist()
    if duplicated:
        raise InputError(f"{where}: id(s) judged more than once: {', '.join(map(str, duplicated[:10]))}")
    return labels.pop(), frame.set_index("id")


def _compare(frame: pd.DataFrame, other: pd.DataFrame | None) -> tuple[float, float]:
    """(Spearman over responses, % same preferred system) on the items both frames score."""
    if other is None:
        return math.nan, math.nan
    common = frame.index.intersection(other.index)
    if len(common) == 0:
        return math.nan, math.nan
    x, y = frame.loc[common], other.loc[common]
    rho = spearman(
        np.concatenate([x["score_a"], x["score_b"]]).tolist(),
        np.concatenate([y["score_a"], y["score_b"]]).tolist(),
    )
    agree = 100 * float((x["outcome"] == y["outcome"]).mean())
    return rho, agree


def _row(kind: str, source: str, frame: pd.DataFrame, humans, judge) -> dict:
    outcomes = frame["outcome"].value_counts()
    rho_h, agree_h = _compare(frame, humans)
    rho_j, agree_j = _compare(frame, judge)
    return {
        "kind": kind,
        "source": source,
        "n": len(frame),
        "score_a": float(frame["score_a"].mean()) if len(frame) else math.nan,
        "score_b": float(frame["score_b"].mean()) if len(frame) else math.nan,
        "wins": int(outcomes.get("win", 0)),
        "ties": int(outcomes.get("tie", 0)),
        "losses": int(outcomes.get("loss", 0)),
        "alpha": math.nan,
        "spearman_vs_humans": rho_h,
        "agree_vs_humans_pct": agree_h,
        "spearman_vs_judge": rho_j,
        "agree_vs_judge_pct": agree_j,
    }


def _mean_of(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per item, the mean score of each system over the frames that score it, and its preference."""
    stacked = pd.concat([f[["score_a", "score_b"]] for f in frames])
    return _with_preference(stacked.groupby(level=0, sort=False).mean())


def _with_preference(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``outcome``: A's win / tie / loss by comparing its two scores."""
    frame = frame.copy()
    frame["outcome"] = [_preference(a, b) for a, b in zip(frame["score_a"], frame["score_b"], strict=True)]
    return frame


def table5(
    db: str | os.PathLike,
    judgments: list[dict],
    second: list[dict] | None = None,
    *,
    raters: Sequence[str] = (),
    where: str = "judgments",
) -> pd.DataFrame:
    """The table described in the module docstring; ``raters`` (if given) must all have ratings."""
    meta = read_meta(db)
    ratings = [r for r in read_ratings(db) if not r["skipped"]]
    present = list(dict.fromkeys(r["rater"] for r in ratings))
    if raters:
        by_fold = {name.casefold(): name for name in present}
        missing = [name for name in raters if name.casefold() not in by_fold]
        if missing:
            raise InputError(f"{db}: no ratings yet from {', '.join(missing)} (named in human.raters)")
        present = [by_fold[name.casefold()] for name in raters]
    if not present:
        raise InputError(f"{db}: no ratings yet")
    per_rater = {}
    for name in present:
        frame = pd.DataFrame([r for r in ratings if r["rater"] == name]).set_index("id")
        per_rater[name] = _with_preference(frame[["score_a", "score_b"]])
    humans = _mean_of(list(per_rater.values()))
    label, judge = judge_scores(judgments, meta, where)
    judge = judge.loc[judge.index.intersection(humans.index)]

    rows = []
    for name, frame in per_rater.items():
        others = [f for other, f in per_rater.items() if other != name]
        rows.append(_row("rater", name, frame, _mean_of(others) if others else None, judge))
    aggregate = _row("humans", "mean of raters", humans, None, judge)
    ids = list(humans.index)
    units = [
        [per_rater[name][side].get(item) for name in per_rater]
        for item in ids
        for side in ("score_a", "score_b")
    ]
    aggregate["alpha"] = krippendorff_alpha_interval(units)
    rows.append(aggregate)
    rows.append(_row("judge", label, judge, humans, None))
    if second is not None:
        second_label, second_frame = judge_scores(second, meta, f"{where} (second judge)")
        second_frame = second_frame.loc[second_frame.index.intersection(humans.index)]
        rows.append(_row("second_judge", second_label, second_frame, humans, judge))
    frame = pd.DataFrame(rows)
    for key in ("model", "evalset", "system_a", "system_b"):
        frame[key] = meta[key]
    return frame[COLUMNS]


def build(
    db: str | os.PathLike,
    judgment_paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    second_paths: Sequence[str | os.PathLike] = (),
    raters: Sequence[str] = (),
) -> list[Path]:
    """Write table5 as ``out`` (CSV) and its Markdown twin, with the resolved config beside each."""
    judgments = [r for path in judgment_paths for r in read_judgments(path)]
    second = [r for path in second_paths for r in read_judgments(path)] if second_paths else None
    where = ", ".join(map(str, judgment_paths))
    frame = table5(db, judgments, second, raters=raters, where=where)
    out = Path(out)
    markdown = out.with_suffix(".md")
    with atomic_write(out) as handle:
        frame.to_csv(handle, index=False)
    with atomic_write(markdown) as handle:
        handle.write(to_markdown(frame, f"**table5.** {CAPTION}"))
    config = {
        "artefact": "table5",
        "kind": "table",
        "inputs": {
            "db": str(db),
            "judgments": list(map(str, judgment_paths)),
            "second": list(map(str, second_paths)),
        },
        "options": {"raters": list(raters)},
    }
    for path in (out, markdown):
        save_resolved_config(path, config)
    return [out, markdown]
