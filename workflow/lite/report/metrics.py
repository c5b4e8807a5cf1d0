"""Numbers behind the figures and tables: quality from judgments, cost and lengths from generations.

Conventions (the tables' notes repeat them):

- Quality of a system in a pair is the mean over instances of its per-instance score, itself
  the mean of the two judging orders; instances whose score is null (an unparseable order) are
  left out of that mean and counted as ``unparsed``. Wins/ties/losses count the parsed instances
  from the first system's side; ``inconsistent_pct`` is the share of parsed instances whose two
  orders disagreed on the winner (they count as ties).
- Cost of a system on an eval set is the sum of its responses' FLOPs; "% of final" compares those
  sums over the same prompt ids, "% saved" is 100 minus it. Both accountings (no-cache, as in the
  paper, and KV-cache) are reported.
- Response length is ``len(token_ids)``: generated tokens, EOS included when generation stopped
  on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from lite.io import InputError
from lite.report.inputs import SOURCE, field

ACCOUNTINGS = ("nocache", "kvcache")


def system_of(record: dict) -> str:
    return f"{field(record, 'tuning')}.{field(record, 'decoder')}"


def judge_name(record: dict) -> str:
    judge = field(record, "judge")
    return str(judge.get("name")) if isinstance(judge, dict) else str(judge)


# ----------------------------------------------------------------------------- quality


def quality(judgments: Iterable[dict], by: Sequence[str] = ("model", "judge", "evalset")) -> pd.DataFrame:
    """Quality per (``by``..., system_a, system_b).

    Columns: n, score_a, score_b, wins, ties, losses, inconsistent_pct, unparsed (see module doc).
    """
    keys = [*by, "system_a", "system_b"]
    rows, seen = [], set()
    for record in judgments:
        row = {k: (judge_name(record) if k == "judge" else field(record, k)) for k in keys}
        ident = (*row.values(), field(record, "id"))
        if ident in seen:
            raise InputError(f"{record.get(SOURCE)}: judgment of id {ident[-1]!r} given twice")
        seen.add(ident)
        parsed = bool(field(record, "parsed"))
        score_a, score_b = field(record, "score_a"), field(record, "score_b")
        row.update(
            score_a=np.nan if score_a is None else float(score_a),
            score_b=np.nan if score_b is None else float(score_b),
            parsed=parsed,
            outcome=field(record, "outcome") if parsed else None,
            inconsistent=parsed and not bool(field(record, "consistent")),
        )
        rows.append(row)
    columns = [*keys, "n", "score_a", "score_b", "wins", "ties", "losses", "inconsistent_pct", "unparsed"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    out = []
    for group, part in frame.groupby(keys, sort=True, dropna=False):
        parsed = part[part["parsed"]]
        outcomes = parsed["outcome"].value_counts()
        out.append(
            {
                **dict(zip(keys, group, strict=True)),
                "n": len(part),
                "score_a": part["score_a"].mean(),
                "score_b": part["score_b"].mean(),
                "wins": int(outcomes.get("win", 0)),
                "ties": int(outcomes.get("tie", 0)),
                "losses": int(outcomes.get("loss", 0)),
                "inconsistent_pct": 100.0 * parsed["inconsistent"].mean() if len(parsed) else np.nan,
                "unparsed": int((~part["parsed"]).sum()),
            }
        )
    return pd.DataFrame(out, columns=columns)


def pair_quality(
    judgments: Iterable[dict], x: str, y: str, by: Sequence[str] = ("model", "evalset")
) -> pd.DataFrame:
    """Quality of systems ``x`` and ``y`` judged against each other, seen from ``x``.

    Columns: ``by``..., judge, n, score_x, score_y, wins, ties, losses (for x), inconsistent_pct,
    unparsed. Judgments stored as (y, x) are flipped. One judge per group: mixing judges is an error.
    """
    wanted = [j for j in judgments if {field(j, "system_a"), field(j, "system_b")} == {x, y}]
    table = quality(wanted, by=[*by, "judge"])
    rows = []
    for row in table.to_dict("records"):
        flip = row["system_a"] == y
        rows.append(
            {
                **{k: row[k] for k in by},
                "judge": row["judge"],
                "n": row["n"],
                "score_x": row["score_b"] if flip else row["score_a"],
                "score_y": row["score_a"] if flip else row["score_b"],
                "wins": row["losses"] if flip else row["wins"],
                "ties": row["ties"],
                "losses": row["wins"] if flip else row["losses"],
                "inconsistent_pct": row["inconsistent_pct"],
                "unparsed": row["unparsed"],
            }
        )
    columns = [
        *by,
        "judge",
        "n",
        "score_x",
        "score_y",
        "wins",
        "ties",
        "losses",
        "inconsistent_pct",
        "unparsed",
    ]
    out = pd.DataFrame(rows, columns=columns)
    dup = out.duplicated(list(by), keep=False)
    if dup.any():
        raise InputError(
            f"judgments of {x} vs {y}: several judges or both pair orders for "
            f"{out.loc[dup, list(by)].drop_duplicates().to_dict('records')}; "
            "pass one judge's files, one order"
        )
    return out


# ----------------------------------------------------------------------------- cost, length


def _systems(generations: Iterable[dict], by: Sequence[str]) -> dict[tuple, dict[str, dict]]:
    """(by..., system) -> id -> record, refusing duplicate ids."""
    out: dict[tuple, dict[str, dict]] = {}
    for record in generations:
        key = (*(field(record, k) for k in by), system_of(record))
        ids = out.setdefault(key, {})
        rid = field(record, "id")
        if rid in ids:
            raise InputError(f"{record.get(SOURCE)}: id {rid!r} of {key[-1]} given twice")
        ids[rid] = record
    return out


def _flops(record: dict, accounting: str) -> float:
    flops = field(record, "flops")
    if not isinstance(flops, dict) or accounting not in flops:
        raise InputError(f"{record.get(SOURCE)}: field 'flops' has no {accounting!r} entry")
    return float(flops[accounting])


def system_summary(generations: Iterable[dict], by: Sequence[str] = ("model", "evalset")) -> pd.DataFrame:
    """Per (``by``..., system): n, tokens, mean_length (tokens) and FLOPs sums in each accounting."""
    rows = []
    for key, records in sorted(_systems(generations, by).items()):
        lengths = [len(field(r, "token_ids")) for r in records.values()]
        row = dict(zip([*by, "system"], key, strict=True))
        row.update(n=len(records), tokens=int(sum(lengths)), mean_length=float(np.mean(lengths)))
        for accounting in ACCOUNTINGS:
            row[f"flops_{accounting}"] = sum(_flops(r, accounting) for r in records.values())
        rows.append(row)
    return pd.DataFrame(
        rows, columns=[*by, "system", "n", "tokens", "mean_length", *(f"flops_{a}" for a in ACCOUNTINGS)]
    )


def compare_cost(
    generations: Iterable[dict], final: str, other: str, by: Sequence[str] = ("model", "evalset")
) -> pd.DataFrame:
    """FLOPs of system ``other`` relative to system ``final`` on the same prompts, per ``by`` group.

    Columns: ``by``..., n, and per accounting ``final_flops_A``, ``other_flops_A``,
    ``pct_of_final_A`` (100 * other / final) and ``saved_pct_A`` (100 - pct_of_final).
    Groups where either system is missing are left out; differing prompt ids are an error.
    """
    generations = list(generations)
    group_by = [k for k in by if k != "category"]
    systems = _systems(generations, group_by)
    rows = []
    for key in sorted({k[:-1] for k in systems}):
        a, b = systems.get((*key, final)), systems.get((*key, other))
        if a is None or b is None:
            continue
        if set(a) != set(b):
            raise InputError(
                f"{final} and {other} on {'/'.join(map(str, key))} cover different prompt ids "
                f"({len(set(a) ^ set(b))} differ); compare systems on the same prompts"
            )
        splits = {(): list(a)}
        if "category" in by:
            splits = {}
            for rid, record in a.items():
                splits.setdefault((record.get("category"),), []).append(rid)
        for extra, ids in sorted(splits.items(), key=lambda kv: str(kv[0])):
            row = dict(zip(group_by, key, strict=True))
            if "category" in by:
                row["category"] = extra[0]
            row["n"] = len(ids)
            for accounting in ACCOUNTINGS:
                fa = sum(_flops(a[i], accounting) for i in ids)
                fb = sum(_flops(b[i], accounting) for i in ids)
                pct = 100.0 * fb / fa if fa else np.nan
                row[f"final_flops_{accounting}"] = fa
                row[f"other_flops_{accounting}"] = fb
                row[f"pct_of_final_{accounting}"] = pct
                row[f"saved_pct_{accounting}"] = 100.0 - pct
            rows.append(row)
    columns = [*by, "n"] + [
        f"{p}_{a}" for a in ACCOUNTINGS for p in ("final_flops", "other_flops", "pct_of_final", "saved_pct")
    ]
    return pd.DataFrame(rows, columns=columns)


def exit_shares(
    generations: Iterable[dict], system: str, by: Sequence[str] = ("model", "evalset")
) -> pd.DataFrame:
    """Share of generated tokens produced by each exit layer under ``system``, per ``by`` group.

    Every checkpoint layer named in the records appears, with 0 where no token exited there.
    """
    counts: dict[tuple, dict[int, int]] = {}
    for record in generations:
        if system_of(record) != system:
            continue
        key = tuple(field(record, k) for k in by)
        layers = counts.setdefault(key, {})
        for layer in record.get("checkpoints") or []:
            layers.setdefault(int(layer), 0)
        exits = field(record, "exit_layers")
        if len(exits) != len(field(record, "token_ids")):
            raise InputError(f"{record.get(SOURCE)}: field 'exit_layers' has a length unlike 'token_ids'")
        for layer in exits:
            layers[int(layer)] = layers.get(int(layer), 0) + 1
    rows = []
    for key, layers in sorted(counts.items()):
        total = sum(layers.values())
        for layer, tokens in sorted(layers.items()):
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "layer": layer,
                    "tokens": tokens,
                    "share_pct": 100.0 * tokens / total if total else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=[*by, "layer", "tokens", "share_pct"])


# ----------------------------------------------------------------------------- data, similarity


def eval_stats(records: Iterable[dict]) -> pd.DataFrame:
    """Per eval set: prompts, distinct categories (and their names), mean prompt length in words.

    Accepts eval records or generation records (one row per (evalset, id) is kept); a prompt's
    words are those of its instruction and input, split on whitespace.
    """
    prompts: dict[str, dict[str, dict]] = {}
    for record in records:
        prompts.setdefault(str(field(record, "evalset")), {}).setdefault(field(record, "id"), record)
    rows = []
    for evalset, by_id in sorted(prompts.items()):
        words = [len(f"{r.get('instruction', '')} {r.get('input') or ''}".split()) for r in by_id.values()]
        categories = sorted({str(r.get("category")) for r in by_id.values() if r.get("category") is not None})
        rows.append(
            {
                "evalset": evalset,
                "count": len(by_id),
                "categories": len(categories),
                "mean_prompt_words": float(np.mean(words)),
                "category_names": ", ".join(categories),
            }
        )
    return pd.DataFrame(
        rows, columns=["evalset", "count", "categories", "mean_prompt_words", "category_names"]
    )


def truncated_prompts(generations: Iterable[dict]) -> pd.DataFrame:
    """Per eval set: prompts cut to fit the model's context (``prompt_truncated_chars`` > 0).

    A prompt counts once per model however many of its systems generated from it: the cut depends
    only on the model's tokenizer and context and the workflow's one ``max_new_tokens``.
    """
    cut: dict[str, set] = {}
    for record in generations:
        ids = cut.setdefault(str(field(record, "evalset")), set())
        if field(record, "prompt_truncated_chars") > 0:
            ids.add((field(record, "model"), field(record, "id")))
    rows = [{"evalset": e, "truncated_prompts": len(ids)} for e, ids in sorted(cut.items())]
    return pd.DataFrame(rows, columns=["evalset", "truncated_prompts"])


def similarity_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, evalset, system_a, system_b): n, mean and standard deviation of similarity."""
    keys = ["model", "evalset", "system_a", "system_b"]
    out = frame.groupby(keys, sort=True)["similarity"].agg(n="count", mean="mean", std="std").reset_index()
    return out
