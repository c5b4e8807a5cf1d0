"""Agreement statistics for ratings: Krippendorff's alpha (interval) and Spearman's rho.

Alpha follows Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011): a unit is one
rated thing (here one response to one prompt), units with fewer than two values are not pairable
and drop out, missing ratings are allowed, and alpha = 1 - D_o / D_e with the squared difference
as the interval metric. 1 is perfect agreement, 0 agreement at chance level. Spearman's rho is
the Pearson correlation of average ranks (ties share their mean rank).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd


def _pair_sum(values: np.ndarray) -> float:
    """Sum of (c - k)^2 over ordered pairs of distinct positions: 2 (m sum v^2 - (sum v)^2)."""
    return float(2 * (len(values) * np.sum(values**2) - np.sum(values) ** 2))


def krippendorff_alpha_interval(units: Iterable[Sequence[float | None]]) -> float:
    """Alpha for interval data; each unit lists its values (None or NaN: not rated). NaN when
    fewer than two units are pairable or the pairable values do not vary."""
    pairable = []
    for unit in units:
        values = np.array([v for v in unit if v is not None and not math.isnan(v)], dtype=float)
        if len(values) >= 2:
            pairable.append(values)
    if len(pairable) < 2:
        return math.nan
    everything = np.concatenate(pairable)
    n = len(everything)
    observed = sum(_pair_sum(values) / (len(values) - 1) for values in pairable) / n
    expected = _pair_sum(everything) / (n * (n - 1))
    return math.nan if expected == 0 else 1 - observed / expected


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho of two equally long sequences; NaN with fewer than 3 pairs or a constant side."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} vs {len(y)} values")
    if len(x) < 3:
        return math.nan
    rx = pd.Series(x, dtype=float).rank().to_numpy()
    ry = pd.Series(y, dtype=float).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])
