"""Do the paper's findings hold on every seed? (``snakemake seeds``, ``lite seeds``)

The main model is tuned, decoded and judged again with other train and generation seeds (its base
weights shared). For each seed the headline findings are measured as in the report's first page;
this module puts their numbers side by side (mean, standard deviation, min, max over the seeds)
and tests each finding against a target with a margin, on every seed.

Where a verdict's margin would let a finding pass by a hair on one seed and fail on the next, the
target is stricter than the headline's verdict; each says why it is set where it is. The others
are the verdict itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from lite.io import InputError
from lite.report.findings import KEPT_SCORE, SAME_QUALITY_POINTS, SAVED, SCORE, Finding, headline_findings
from lite.report.inputs import Inputs

# Within this % of IT's judge score, LITE's final layer has not lost quality (fig4).
SAME_SCORE_PCT = 5.0
# LITE's intermediate checkpoints at least this many points of alignment above IT's (fig5): half
# again the headline's 10, so a seed that only scrapes past the verdict does not count.
ALIGNMENT_MARGIN_POINTS = 15.0
# table1: a saving in the paper's range (its 7B/13B savings are 33-51 %), not a depth ratio ...
SAVING_RANGE_PCT = (20.0, 60.0)
# ... at no less than this share of the final layer's score.
KEPT_SCORE_PCT = 97.0


@dataclasses.dataclass(frozen=True)
class SeedTarget:
    """What a finding must show on every seed: in words, and as a test of the seed's findings
    (keyed by where each is shown; None when the inputs cannot tell)."""

    words: str
    test: Callable[[Mapping[str, Finding]], bool | None]


def _measures(found: Mapping[str, Finding], key: str, contains: str = "") -> list[float]:
    """The values of ``key``'s measures whose names contain ``contains`` (all by default)."""
    finding = found.get(key)
    if finding is None:
        return []
    return [v for name, v in finding.measures.items() if contains in name]


def _measure(found: Mapping[str, Finding], key: str, name: str) -> float | None:
    finding = found.get(key)
    return None if finding is None else finding.measures.get(name)


def _all(values: list[float], test: Callable[[float], bool]) -> bool | None:
    if not values or any(math.isnan(v) for v in values):
        return None
    return all(test(v) for v in values)


def _verdict(key: str) -> Callable[[Mapping[str, Finding]], bool | None]:
    return lambda found: found[key].holds if key in found else None


def _saving(found: Mapping[str, Finding]) -> bool | None:
    saved, kept = _measure(found, SAVING, SAVED), _measure(found, SAVING, KEPT_SCORE)
    if saved is None or kept is None:
        return None
    low, high = SAVING_RANGE_PCT
    return low <= saved <= high and kept >= KEPT_SCORE_PCT


def _aggressive(found: Mapping[str, Finding]) -> bool | None:
    saved = _measure(found, "fig12", SAVED), _measure(found, SAVING, SAVED)
    score = _measure(found, "fig12", SCORE), _measure(found, SAVING, SCORE)
    if None in saved or None in score:
        return None
    return saved[0] > saved[1] and score[0] <= score[1]


SAVING = "fig1, table1"  # where the headline shows dynamic exit's saving

# finding (where the headline shows it) -> its target on every seed
SEED_TARGETS: dict[str, SeedTarget] = {
    "fig5": SeedTarget(
        f"LITE at least {ALIGNMENT_MARGIN_POINTS:g} points above IT at every intermediate checkpoint",
        lambda found: _all(_measures(found, "fig5"), lambda gap: gap >= ALIGNMENT_MARGIN_POINTS),
    ),
    "fig4": SeedTarget(
        f"LITE's final-layer score within {SAME_SCORE_PCT:g} % of IT's",
        lambda found: _all(_measures(found, "fig4", "% of"), lambda pct: abs(pct - 100.0) <= SAME_SCORE_PCT),
    ),
    "fig3": SeedTarget("the headline's verdict", _verdict("fig3")),
    "fig6": SeedTarget("the headline's verdict", _verdict("fig6")),
    "fig11": SeedTarget("the headline's verdict", _verdict("fig11")),
    "fig8": SeedTarget("the headline's verdict", _verdict("fig8")),
    SAVING: SeedTarget(
        f"{SAVING_RANGE_PCT[0]:g}-{SAVING_RANGE_PCT[1]:g} % of the FLOPs saved at {KEPT_SCORE_PCT:g} % or "
        "more of the final layer's score",
        _saving,
    ),
    "fig12": SeedTarget(
        "the aggressive thresholds save more than dynamic exit and score no higher", _aggressive
    ),
    "table6": SeedTarget(
        f"every baseline at least {SAME_QUALITY_POINTS:g} points below dynamic exit",
        lambda found: _all(_measures(found, "table6"), lambda gap: gap >= SAME_QUALITY_POINTS),
    ),
    "frontier, table6": SeedTarget("the headline's verdict", _verdict("frontier, table6")),
}


def seed_findings(inputs: Inputs, models: Mapping[str, int], **options) -> dict[int, dict[str, Finding]]:
    """The headline findings of each model (records' ``model`` field) -> its seed, by seed."""
    present = {g["model"] for g in inputs.generations}
    missing = [m for m in models if m not in present]
    if missing:
        raise InputError(f"no generation records of {', '.join(missing)} among the inputs")
    return {
        seed: {f.shown_in: f for f in headline_findings(inputs, model, **options)}
        for model, seed in models.items()
    }


def seeds_tables(by_seed: Mapping[int, Mapping[str, Finding]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(findings, measures): per finding its target, whether each seed meets it and whether every
    seed does; per finding and measure its value on each seed, mean, standard deviation (n - 1),
    min and max."""
    seeds = list(by_seed)
    keys = [k for k in SEED_TARGETS if any(k in found for found in by_seed.values())]
    finding_rows, measure_rows = [], []
    for key in keys:
        target = SEED_TARGETS[key]
        met = [target.test(by_seed[seed]) if key in by_seed[seed] else None for seed in seeds]
        every = all(m is True for m in met)
        words = next(found[key].claim.words for found in by_seed.values() if key in found)
        finding_rows.append(
            {
                "finding": f"{words} ({key})",
                "target": target.words,
                **{f"seed {s}": _met(m) for s, m in zip(seeds, met, strict=True)},
                "every seed": "holds" if every else "does not hold",
            }
        )
        names = list(
            dict.fromkeys(n for found in by_seed.values() if key in found for n in found[key].measures)
        )
        for name in names:
            values = [
                by_seed[s][key].measures.get(name, np.nan) if key in by_seed[s] else np.nan for s in seeds
            ]
            known = np.array([v for v in values if not math.isnan(v)])
            measure_rows.append(
                {
                    "finding": key,
                    "measure": name,
                    **{f"seed {s}": v for s, v in zip(seeds, values, strict=True)},
                    "mean": known.mean() if known.size else np.nan,
                    "sd": known.std(ddof=1) if known.size > 1 else np.nan,
                    "min": known.min() if known.size else np.nan,
                    "max": known.max() if known.size else np.nan,
                }
            )
    return pd.DataFrame(finding_rows), pd.DataFrame(measure_rows)


def _met(value: bool | None) -> str:
    return {True: "meets", False: "misses", None: "not measured"}[value]


def seeds_table(findings: pd.DataFrame, measures: pd.DataFrame) -> pd.DataFrame:
    """One CSV of both: each measure's row carries its finding's target and verdicts."""
    verdicts = findings.rename(columns=lambda c: f"target {c}" if c.startswith("seed ") else c)
    verdicts = verdicts.assign(key=verdicts["finding"].str.extract(r"\(([^()]*)\)$")[0])
    return measures.merge(
        verdicts.drop(columns=["finding"]), left_on="finding", right_on="key", how="left"
    ).drop(columns=["key"])


def write_seeds(paths: list[str], models: Mapping[str, int], out: str, *, dynamic: str) -> list[str]:
    """Measure the headline findings of each model in ``models`` (name -> seed) from ``paths`` and
    write ``out`` (CSV) with its Markdown and HTML twins; returns the written paths."""
    from pathlib import Path

    from lite.io import atomic_write, save_resolved_config
    from lite.report.inputs import load_inputs
    from lite.report.tables import to_html, to_markdown

    options = {"tuning": "lite", "final": "final", "dynamic": dynamic, "aggressive": "dynamic-aggressive"}
    options["baseline"] = "it"
    by_seed = seed_findings(load_inputs(paths), models, **options)
    findings, measures = seeds_tables(by_seed)
    held = (findings["every seed"] == "holds").sum()
    caption = (
        f"The paper's headline findings on {len(by_seed)} seeds ({', '.join(map(str, by_seed))}: train and "
        f"generation seeds of the main model, base weights shared): {held} of {len(findings)} meet their "
        "target on every seed. Numbers are means over the eval sets, as in the headline table."
    )
    out = Path(out)
    texts = {
        out.with_suffix(".md"): to_markdown(findings, f"**seeds.** {caption}")
        + "\n"
        + to_markdown(measures, "Each measure on every seed, its mean, standard deviation, min and max."),
        out.with_suffix(".html"): to_html(findings, "seeds", caption)
        + to_html(measures, "seeds-measures", "Each measure on every seed."),
    }
    with atomic_write(out) as handle:
        seeds_table(findings, measures).to_csv(handle, index=False)
    for path, text in texts.items():
        with atomic_write(path) as handle:
            handle.write(text)
    written = [out, *texts]
    for path in written:
        save_resolved_config(path, {"artefact": "seeds", "inputs": paths, "models": dict(models), **options})
    return [str(p) for p in written]
