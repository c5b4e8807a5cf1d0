"""Alignment, calibration and exit thresholds computed from trace records.

A trace record (``docs/records.md``) holds, for every generated position ``t`` of ordinary
final-layer greedy generation, every layer's argmax token and max softmax probability. Layer ``i``
is *aligned* at ``t`` when its argmax equals the final layer's (column ``N-1``), the token that
was actually generated. From that:

- ``alignment``: per layer, the share of generated positions where the layer is aligned (Fig. 5).
- ``calibration``: per layer and confidence bin, the share of aligned positions (Fig. 6, 11, 15).
- ``choose_thresholds``: per checkpoint layer, the confidence from which every confidence bin is
  aligned at least ``target`` of the time: the paper's "confidence where alignment exceeds 95 %".

Everything here is plain numpy/pandas on lists of dicts, so it runs without GPU libraries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lite.flags import setting
from lite.io import InputError, read_jsonl, where

# Confidence bin edges of the paper's calibration plots; the last bin includes 1.0.
DEFAULT_BINS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99, 1.0)

# A threshold above any possible softmax probability: the dynamic decoder never exits there.
NEVER_EXIT = 1.01

GROUP_KEYS = ("model", "tuning", "evalset")


@dataclasses.dataclass(frozen=True)
class ThresholdConfig:
    """Settings of ``choose_thresholds`` (saved beside the thresholds file): ``lite thresholds``'s
    options and the ``calibration`` config section's defaults (its ``aggressive_target`` is the
    workflow's own: the same rule at a second target)."""

    layers: tuple[int, ...] = setting(
        help="checkpoint layers (1-indexed) that get a threshold, e.g. 2,4,6; the final layer always answers"
    )
    target: float = setting(
        0.95, help="required share of aligned positions among those that would exit (0 < target <= 1)"
    )
    min_count: int = setting(
        20, help="fewest positions in a confidence bin for its alignment to count as evidence"
    )
    bin_width: float = setting(
        0.05, help="width of the confidence bins the rule reads (1 must be a whole number of bins)"
    )

    def __post_init__(self) -> None:
        if not self.layers:
            raise InputError("ThresholdConfig field 'layers': give at least one layer")
        if any(not isinstance(layer, int) or layer < 1 for layer in self.layers):
            raise InputError(f"ThresholdConfig field 'layers': layers are integers >= 1, got {self.layers}")
        if not 0.0 < self.target <= 1.0:
            raise InputError(f"ThresholdConfig field 'target': must be in (0, 1], got {self.target}")
        if self.min_count < 1:
            raise InputError(f"ThresholdConfig field 'min_count': must be >= 1, got {self.min_count}")
        bins = 1 / self.bin_width if self.bin_width > 0 else 0
        if not (1 <= round(bins) and abs(bins - round(bins)) < 1e-6):
            raise InputError(
                f"ThresholdConfig field 'bin_width': must divide 1 into whole bins, got {self.bin_width}"
            )


@dataclasses.dataclass(frozen=True)
class _Trace:
    """One trace as arrays; ``argmax`` and ``confidence`` are (positions, layers)."""

    model: str
    tuning: str
    evalset: str
    id: str
    argmax: np.ndarray  # (T, N) int
    confidence: np.ndarray  # (T, N) float


def _as_trace(record: dict, index: int) -> _Trace:
    """Validate one trace record; errors name the record by its position and id."""
    label = f"trace record {index + 1} (id {record.get('id')!r})"
    for field in ("model", "tuning", "evalset", "id", "token_ids", "layer_argmax", "layer_confidence"):
        if field not in record:
            raise InputError(f"{label}: missing field {field!r}")
    argmax = np.asarray(record["layer_argmax"], dtype=np.int64)  # (T, N)
    confidence = np.asarray(record["layer_confidence"], dtype=np.float64)  # (T, N)
    tokens = np.asarray(record["token_ids"], dtype=np.int64)  # (T,)
    if argmax.size == 0:
        argmax = argmax.reshape(0, 0)
        confidence = confidence.reshape(0, 0)
    if argmax.ndim != 2:
        raise InputError(f"{label} field 'layer_argmax': expected a list of rows (positions x layers)")
    if confidence.shape != argmax.shape:
        raise InputError(
            f"{label} field 'layer_confidence': shape {confidence.shape} differs from "
            f"'layer_argmax' {argmax.shape}"
        )
    if argmax.shape[0] != tokens.shape[0]:
        raise InputError(
            f"{label} field 'layer_argmax': {argmax.shape[0]} rows but {tokens.shape[0]} token_ids"
        )
    if argmax.shape[0] and not np.array_equal(argmax[:, -1], tokens):
        bad = int(np.flatnonzero(argmax[:, -1] != tokens)[0])
        raise InputError(
            f"{label} field 'layer_argmax': the last column must equal token_ids (the final layer "
            f"generated them), first difference at position {bad}"
        )
    if np.any((confidence < 0) | (confidence > 1)):
        raise InputError(f"{label} field 'layer_confidence': probabilities must lie in [0, 1]")
    return _Trace(
        str(record["model"]),
        str(record["tuning"]),
        str(record["evalset"]),
        str(record["id"]),
        argmax,
        confidence,
    )


def read_traces(paths: Iterable[str]) -> list[dict]:
    """Read trace JSONL files, checking every record; errors name the file and line."""
    records = []
    for path in paths:
        for line, record in enumerate(read_jsonl(path), start=1):
            try:
                _as_trace(record, line - 1)
            except InputError as err:
                raise InputError(f"{where(path, line)}: {err}") from None
            records.append(record)
    return records


def _grouped(traces: Iterable[dict]) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]:
    """Stack all positions of each (model, tuning, evalset): aligned (P, N) bool, confidence (P, N)."""
    parsed: dict[tuple[str, str, str], list[_Trace]] = {}
    for index, record in enumerate(traces):
        trace = _as_trace(record, index)
        parsed.setdefault((trace.model, trace.tuning, trace.evalset), []).append(trace)
    out = {}
    for key, group in parsed.items():
        widths = {t.argmax.shape[1] for t in group if t.argmax.shape[0]}
        if len(widths) > 1:
            raise InputError(f"traces of {'/'.join(key)}: records disagree on the number of layers {widths}")
        n_layers = widths.pop() if widths else 0
        rows = [t for t in group if t.argmax.shape[0]]
        if not rows:
            out[key] = (np.zeros((0, n_layers), bool), np.zeros((0, n_layers)))
            continue
        argmax = np.concatenate([t.argmax for t in rows])  # (P, N)
        confidence = np.concatenate([t.confidence for t in rows])  # (P, N)
        aligned = argmax == argmax[:, -1:]  # (P, N): layer i agrees with the final layer
        out[key] = (aligned, confidence)
    return out


def _pooled(traces: Iterable[dict]) -> tuple[np.ndarray, np.ndarray]:
    """All positions of all traces together: aligned (P, N) bool, confidence (P, N)."""
    groups = list(_grouped(traces).values())
    if not groups:
        raise InputError("no trace records given")
    widths = {aligned.shape[1] for aligned, _ in groups if aligned.shape[0]}
    if len(widths) > 1:
        raise InputError(f"traces disagree on the number of layers {sorted(widths)}; pool one model only")
    aligned = np.concatenate([a for a, _ in groups])
    confidence = np.concatenate([c for _, c in groups])
    return aligned, confidence


def alignment(traces: Iterable[dict]) -> pd.DataFrame:
    """% of generated positions where layer ``i``'s argmax equals the final layer's, per layer.

    One row per (model, tuning, evalset, layer) with ``layer`` 1..N, ``count`` (generated
    positions), ``aligned`` (how many agree) and ``alignment_pct`` (100 * aligned / count; the
    final layer is 100 by definition).
    """
    rows = []
    for (model, tuning, evalset), (aligned, _) in sorted(_grouped(traces).items()):
        count = aligned.shape[0]
        for layer in range(1, aligned.shape[1] + 1):
            hits = int(aligned[:, layer - 1].sum())
            rows.append(
                {
                    "model": model,
                    "tuning": tuning,
                    "evalset": evalset,
                    "layer": layer,
                    "count": count,
                    "aligned": hits,
                    "alignment_pct": 100.0 * hits / count if count else float("nan"),
                }
            )
    return pd.DataFrame(rows, columns=[*GROUP_KEYS, "layer", "count", "aligned", "alignment_pct"])


def bin_labels(bins: Sequence[float]) -> list[str]:
    return [f"{lo:g}-{hi:g}" for lo, hi in zip(bins[:-1], bins[1:], strict=True)]


def _check_bins(bins: Sequence[float]) -> np.ndarray:
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise InputError(f"calibration bins: need at least two strictly increasing edges, got {list(bins)}")
    if edges[0] > 0.0 or edges[-1] < 1.0:
        raise InputError(f"calibration bins: edges must cover [0, 1], got {list(bins)}")
    return edges


def calibration(traces: Iterable[dict], bins: Sequence[float] = DEFAULT_BINS) -> pd.DataFrame:
    """Alignment as a function of confidence, per layer and confidence bin.

    Bins are ``[lo, hi)`` except the last, which is ``[lo, hi]`` so a confidence of exactly 1.0
    is counted. One row per (model, tuning, evalset, layer, bin), empty bins included (count 0,
    alignment NaN), so the counts of a layer sum to its number of generated positions.
    """
    edges = _check_bins(bins)
    labels = bin_labels(edges.tolist())
    rows = []
    for (model, tuning, evalset), (aligned, confidence) in sorted(_grouped(traces).items()):
        # (P, N) bin index; the right=True side puts 1.0 into the last bin instead of past it
        which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, len(labels) - 1)
        for layer in range(1, aligned.shape[1] + 1):
            for b, label in enumerate(labels):
                in_bin = which[:, layer - 1] == b
                count = int(in_bin.sum())
                hits = int(aligned[in_bin, layer - 1].sum())
                rows.append(
                    {
                        "model": model,
                        "tuning": tuning,
                        "evalset": evalset,
                        "layer": layer,
                        "bin": label,
                        "bin_low": float(edges[b]),
                        "bin_high": float(edges[b + 1]),
                        "count": count,
                        "aligned": hits,
                        "alignment_pct": 100.0 * hits / count if count else float("nan"),
                    }
                )
    columns = [*GROUP_KEYS, "layer", "bin", "bin_low", "bin_high", "count", "aligned", "alignment_pct"]
    return pd.DataFrame(rows, columns=columns)


def _threshold_for(aligned: np.ndarray, confidence: np.ndarray, config: ThresholdConfig) -> dict:
    """The threshold of one layer's positions and its evidence (see ``choose_thresholds``).

    ``aligned`` and ``confidence`` are (P,). Returns ``threshold`` (NEVER_EXIT if no bin qualifies),
    ``count`` and ``alignment`` of the positions at or above it, and ``bin_alignment`` of the
    lowest bin it rests on.
    """
    n_bins = round(1 / config.bin_width)
    edges = np.linspace(0.0, 1.0, n_bins + 1)  # (n_bins + 1,)
    # [lo, hi) bins, the last one closed, as in ``calibration``
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)  # (P,)
    counts = np.bincount(which, minlength=n_bins)  # (n_bins,)
    hits = np.bincount(which, weights=aligned.astype(np.float64), minlength=n_bins)  # (n_bins,)
    lowest = None
    for b in range(n_bins - 1, -1, -1):
        if counts[b] < config.min_count:
            continue  # too few positions to say anything; they exit with the bins around them
        # hits/count >= target, written without division so 0.95 * 20 == 19 is not lost to rounding
        if hits[b] < config.target * counts[b] - 1e-9:
            break
        lowest = b
    if lowest is None:
        return {"threshold": NEVER_EXIT, "count": 0, "alignment": float("nan"), "bin_alignment": float("nan")}
    above = which >= lowest
    return {
        "threshold": round(float(edges[lowest]), 10),
        "count": int(above.sum()),
        "alignment": float(aligned[above].mean()),
        "bin_alignment": float(hits[lowest] / counts[lowest]),
    }


def threshold_table(traces: Iterable[dict], layers: Sequence[int], **settings: Any) -> pd.DataFrame:
    """``choose_thresholds`` with its evidence: per layer the threshold, the positions at or above
    it (``count``), their alignment, and the alignment of the lowest bin it rests on. ``settings``
    are ``ThresholdConfig``'s others (target, min_count, bin_width); those left out keep its defaults."""
    config = ThresholdConfig(tuple(int(x) for x in layers), **settings)
    aligned, confidence = _pooled(traces)
    n_layers = aligned.shape[1]
    rows = []
    for layer in config.layers:
        if layer > n_layers:
            raise InputError(f"thresholds: layer {layer} does not exist; the traces have {n_layers} layers")
        evidence = _threshold_for(aligned[:, layer - 1], confidence[:, layer - 1], config)
        rows.append({"layer": layer, **evidence})
    return pd.DataFrame(rows, columns=["layer", "threshold", "count", "alignment", "bin_alignment"])


def choose_thresholds(traces: Iterable[dict], layers: Sequence[int], **settings: Any) -> dict[int, float]:
    """Per checkpoint layer, the confidence from which exiting there agrees with the final layer.

    All positions of all given traces are pooled (pass one model's calibration traces). Layer
    ``L``'s confidences are cut into bins of ``bin_width``; bins with fewer than ``min_count``
    positions carry no evidence. Walking down from the most confident bin, the threshold is the
    lower edge of the last bin with evidence whose alignment (share of positions where layer
    ``L``'s argmax equals the final layer's) is at least ``target``, stopping at the first bin
    with evidence that falls short. This is the paper's rule, "the confidence where alignment
    exceeds 95 %", read off the calibration curve bin by bin. A cumulative rule (the lowest
    confidence whose exits agree >= 95 % *in total*) collapses to "always exit" whenever most
    tokens are easy: the many aligned confident tokens outvote a low bin that is mostly wrong.
    When no bin qualifies the layer gets ``NEVER_EXIT`` (1.01).

    Each layer is judged on all positions, not only those that earlier checkpoints would leave
    for it; like the paper's by-eye choice, this treats the checkpoints independently.
    """
    table = threshold_table(traces, layers, **settings)
    return {int(row.layer): float(row.threshold) for row in table.itertuples()}


def thresholds_document(
    thresholds: dict[int, float], target: float, min_count: int, bin_width: float, evidence: list[dict]
) -> dict:
    """The thresholds file of ``docs/records.md`` (layer keys as strings, as JSON requires), with
    the evidence each threshold rests on."""
    return {
        "thresholds": {str(layer): value for layer, value in sorted(thresholds.items())},
        "target": target,
        "min_count": min_count,
        "bin_width": bin_width,
        "evidence": evidence,
    }
