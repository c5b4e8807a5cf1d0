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
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

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
