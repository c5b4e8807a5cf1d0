"""Read the files an artefact needs and sort them by what they are, judged by their fields.

Record files (JSONL) and tables (CSV) are recognised by content, never by path:

- judgment records: ``system_a`` and ``outcome``
- trace records: ``layer_argmax``
- generation records: ``decoder`` and ``token_ids``
- eval records: ``instruction`` and ``id`` without ``decoder`` (these carry no eval-set field, so
  their eval set is the file's stem, as in ``results/data/eval/{evalset}.jsonl``)
- alignment CSV (``lite align``): ``layer`` and ``alignment_pct`` without ``bin``
- calibration CSV (``lite align``): ``bin`` and ``alignment_pct``
- similarity CSV (``lite similarity``): ``similarity``, ``system_a``, ``system_b``
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lite import analysis
from lite.decoders.names import decoder_name
from lite.io import InputError, read_jsonl, where

SOURCE = "_where"  # key added to every record: "file:line", for error messages downstream


@dataclasses.dataclass
class Inputs:
    generations: list[dict] = dataclasses.field(default_factory=list)
    judgments: list[dict] = dataclasses.field(default_factory=list)
    traces: list[dict] = dataclasses.field(default_factory=list)
    evals: list[dict] = dataclasses.field(default_factory=list)
    alignment: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None
    similarity: pd.DataFrame | None = None
    paths: list[str] = dataclasses.field(default_factory=list)


def record_kind(record: dict) -> str | None:
    if "system_a" in record and "outcome" in record:
        return "judgments"
    if "layer_argmax" in record:
        return "traces"
    if "decoder" in record and "token_ids" in record:
        return "generations"
    if "instruction" in record and "id" in record:
        return "evals"
    return None


def table_kind(columns: Iterable[str]) -> str | None:
    columns = set(columns)
    if {"similarity", "system_a", "system_b"} <= columns:
        return "similarity"
    if {"bin", "alignment_pct", "layer"} <= columns:
        return "calibration"
    if {"layer", "alignment_pct"} <= columns:
        return "alignment"
    return None


def _concat(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    return new if old is None else pd.concat([old, new], ignore_index=True)


def load_inputs(paths: Iterable[str | os.PathLike]) -> Inputs:
    """Read every file and file it under its kind; an unrecognised file is an error."""
    inputs = Inputs()
    for path in paths:
        path = Path(path)
        inputs.paths.append(str(path))
        if path.suffix == ".csv":
            frame = pd.read_csv(path)
            kind = table_kind(frame.columns)
            if kind is None:
                raise InputError(f"{where(path)}: unknown table (columns {list(frame.columns)})")
            setattr(inputs, kind, _concat(getattr(inputs, kind), frame))
            continue
        if path.suffix != ".jsonl":
            raise InputError(f"{where(path)}: expected a .jsonl record file or a .csv table")
        kinds = set()
        for line, record in enumerate(read_jsonl(path), start=1):
            kind = record_kind(record)
            if kind is None:
                raise InputError(f"{where(path, line)}: not a generation, trace, judgment or eval record")
            kinds.add(kind)
            if len(kinds) > 1:
                raise InputError(f"{where(path, line)}: file mixes {sorted(kinds)} records")
            record = dict(record)
            record[SOURCE] = f"{path}:{line}"
            if kind == "evals":
                record.setdefault("evalset", path.stem)
            getattr(inputs, kind).append(record)
    return inputs


def field(record: dict, name: str):
    """``record[name]``, or an ``InputError`` naming the record's file and line."""
    if name not in record:
        raise InputError(f"{record.get(SOURCE, 'record')}: missing field {name!r}")
    return record[name]


def _first_seen(*columns: Iterable) -> list:
    """Distinct values in order of first appearance, missing values left out."""
    seen: dict = {}
    for column in columns:
        for value in column:
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                seen.setdefault(value, None)
    return list(seen)


def _column_values(inputs: Inputs, key: str) -> list[list]:
    frames = [f[key] for f in (inputs.alignment, inputs.calibration, inputs.similarity) if f is not None]
    records = inputs.generations + inputs.judgments + inputs.traces + inputs.evals
    return [[r.get(key) for r in records], *frames]


def evalset_order(inputs: Inputs) -> list[str]:
    """Eval sets in the order the files came (the workflow passes them in config order)."""
    return _first_seen(*_column_values(inputs, "evalset"))


def model_order(inputs: Inputs) -> list[str]:
    """Base models in the order the files came: the workflow passes the main model's first."""
    return _first_seen(*_column_values(inputs, "model"))


def sorted_like(values: Iterable, order: list) -> list:
    """The distinct ``values`` in ``order``; values not in it last."""
    values = list(dict.fromkeys(values))
    return sorted(values, key=lambda v: order.index(v) if v in order else len(order))


def alignment_table(inputs: Inputs) -> pd.DataFrame:
    """Alignment per layer (``lite.analysis.alignment``): the CSVs given, plus any from traces."""
    frames = [inputs.alignment] if inputs.alignment is not None else []
    if inputs.traces or not frames:
        frames.append(analysis.alignment(inputs.traces))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def calibration_table(inputs: Inputs) -> pd.DataFrame:
    """Alignment per layer and confidence bin: the CSVs given, else computed from the traces."""
    return inputs.calibration if inputs.calibration is not None else analysis.calibration(inputs.traces)


def fixed_exits(inputs: Inputs, tuning: str) -> list[tuple[int, str]]:
    """(layer, system) of every fixed exit of ``tuning`` judged among the inputs, shallowest first."""
    systems = {s for j in inputs.judgments for s in (j.get("system_a"), j.get("system_b")) if s}
    exits = []
    for system in systems:
        system_tuning, _, decoder = system.partition(".")
        if system_tuning == tuning and (named := decoder_name(decoder)).family == "fixed":
            exits.append((named.layer, system))
    return sorted(exits)


def early_checkpoints(inputs: Inputs, tuning: str) -> list[int]:
    """The checkpoints below the final layer, as the generation records of ``tuning`` name them."""
    named = {
        int(k) for g in inputs.generations if g.get("tuning") == tuning for k in g.get("checkpoints") or []
    }
    return sorted(named)[:-1]


def calibration_layers(
    inputs: Inputs, frame: pd.DataFrame, tuning: str, layers: Sequence[int] | None
) -> list[int]:
    """The layers a calibration figure shows: ``layers``, else the early checkpoints the generation
    records name, else every layer of ``frame`` but the final one."""
    if layers is not None:
        return list(layers)
    return early_checkpoints(inputs, tuning) or list(range(1, int(frame["layer"].max())))


def judged_decoders(inputs: Inputs, tuning: str, final: str) -> list[str]:
    """Every non-fixed decoder of ``tuning`` judged against its final layer: dynamic exits first."""
    reference = f"{tuning}.{final}"
    prefix = f"{tuning}."
    systems = set()
    for j in inputs.judgments:
        pair = {j.get("system_a"), j.get("system_b")}
        if reference in pair:
            systems |= {s for s in pair if s and s != reference and s.startswith(prefix)}
    decoders = [decoder_name(s[len(prefix) :]) for s in systems]
    # dynamic exit first (the sweep's points too), then the baselines, each alphabetically
    ordered = sorted((not d.thresholded, d.name) for d in decoders if d.family != "fixed")
    return [name for _, name in ordered]
