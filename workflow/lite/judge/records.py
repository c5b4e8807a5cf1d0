"""The judge's inputs and outputs: two systems' generation records in, judgment records out.

Generation records are read as ``docs/records.md`` describes them; a judgment record is one line
per (instance, pair) with both orders kept (see ``docs/records.md``, "Judgment record").
"""

from __future__ import annotations

import dataclasses
import os

from lite.io import InputError, read_jsonl, where

GENERATION_FIELDS = ("model", "tuning", "evalset", "decoder", "id", "instruction", "text")
JUDGMENT_FIELDS = (
    "model",
    "evalset",
    "id",
    "category",
    "system_a",
    "system_b",
    "orders",
    "score_a",
    "score_b",
    "outcome",
    "consistent",
    "parsed",
    "judge",
)


@dataclasses.dataclass(frozen=True)
class Instance:
    """One prompt answered by both systems."""

    id: str
    category: str | None
    instruction: str
    input: str
    reference: str | None
    answer_a: str
    answer_b: str
    # Where each answer came from, so the reference judge can name a missing gold answer.
    line_a: int


@dataclasses.dataclass(frozen=True)
class Pair:
    model: str
    evalset: str
    system_a: str  # "{tuning}.{decoder}"
    system_b: str
    path_a: str
    instances: list[Instance]


def _read_generations(path: str | os.PathLike) -> tuple[str, dict[str, tuple[int, dict]]]:
    """(system name, id -> (line, record)) of one generation file; checks fields and duplicates."""
    records = read_jsonl(path)
    if not records:
        raise InputError(f"{where(path)}: no generation records")
    by_id: dict[str, tuple[int, dict]] = {}
    system = None
    # read_jsonl skips blank lines; these numbers are record numbers, equal to line numbers
    # for the files lite writes (no blank lines).
    for number, record in enumerate(records, start=1):
        for field in GENERATION_FIELDS:
            if field not in record:
                raise InputError(f"{where(path, number, field)}: missing")
        name = f"{record['tuning']}.{record['decoder']}"
        if system is None:
            system = name
        elif name != system:
            raise InputError(
                f"{where(path, number, 'tuning')}: system {name!r} differs from {system!r} on line 1; "
                "one file holds one system"
            )
        if record["id"] in by_id:
            raise InputError(
                f"{where(path, number, 'id')}: duplicate id {record['id']!r} "
                f"(first on line {by_id[record['id']][0]})"
            )
        by_id[record["id"]] = (number, record)
    return system, by_id


def load_pair(path_a: str | os.PathLike, path_b: str | os.PathLike) -> Pair:
    """Both systems' answers per id, in file A's order. The files must hold the same ids."""
    system_a, gen_a = _read_generations(path_a)
    system_b, gen_b = _read_generations(path_b)
    only_a = [i for i in gen_a if i not in gen_b]
    only_b = [i for i in gen_b if i not in gen_a]
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"ids only in {path_a}: {', '.join(map(str, only_a[:20]))}")
        if only_b:
            parts.append(f"ids only in {path_b}: {', '.join(map(str, only_b[:20]))}")
        raise InputError("the two generation files must hold the same ids; " + "; ".join(parts))
    first_a = next(iter(gen_a.values()))[1]
    first_b = next(iter(gen_b.values()))[1]
    for field in ("model", "evalset"):
        if first_a[field] != first_b[field]:
            raise InputError(
                f"{where(path_b, 1, field)}: {first_b[field]!r} differs from {first_a[field]!r} in {path_a}; "
                "judge two systems of the same model on the same eval set"
            )
    instances = []
    for key, (line_a, rec_a) in gen_a.items():
        line_b, rec_b = gen_b[key]
        for field in ("model", "evalset"):
            if rec_a[field] != first_a[field]:
                raise InputError(f"{where(path_a, line_a, field)}: {rec_a[field]!r} differs from line 1")
            if rec_b[field] != first_a[field]:
                raise InputError(f"{where(path_b, line_b, field)}: {rec_b[field]!r} differs from {path_a}")
        if rec_a["instruction"] != rec_b["instruction"] or (rec_a.get("input") or "") != (
            rec_b.get("input") or ""
        ):
            raise InputError(
                f"{where(path_b, line_b, 'instruction')}: id {key!r} has a different prompt than in {path_a}"
            )
        instances.append(
            Instance(
                id=key,
                category=rec_a.get("category"),
                instruction=rec_a["instruction"],
                input=rec_a.get("input") or "",
                reference=rec_a.get("reference"),
                answer_a=rec_a["text"],
                answer_b=rec_b["text"],
                line_a=line_a,
            )
        )
    return Pair(
        model=first_a["model"],
        evalset=first_a["evalset"],
        system_a=system_a,
        system_b=system_b,
        path_a=str(path_a),
        instances=instances,
    )


def read_judgments(path: str | os.PathLike) -> list[dict]:
    """Judgment records of one file, each checked for the fields ``docs/records.md`` lists."""
    records = read_jsonl(path)
    for number, record in enumerate(records, start=1):
        for field in JUDGMENT_FIELDS:
            if field not in record:
                raise InputError(f"{where(path, number, field)}: missing")
        if len(record["orders"]) != 2:
            raise InputError(
                f"{where(path, number, 'orders')}: expected both orders, got {len(record['orders'])}"
            )
    return records
