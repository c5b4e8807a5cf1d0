"""Eval records and the loaders that turn the real source files into train and eval records.

The common eval format (docs/records.md) is one JSON object per line:
``{"id", "instruction", "input", "category", "reference"}``; ``reference`` is a gold answer where
one exists (the synthetic sets) and ``null`` otherwise. Train records are Alpaca's
``{"instruction", "input", "output"}``; ``lite.data`` reads them back for tuning.

Each source loader reads one file in its upstream format (the pinned files are
``lite.download.SOURCES``) and raises ``InputError`` naming the file, line and field of the first
malformed record. Nothing here imports torch.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable
from typing import Any

from lite.io import InputError, numbered_json_array, numbered_jsonl, require_file, where, write_jsonl

# field -> allowed JSON types; ``reference`` may be null, every other field must be a string.
EVAL_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "instruction": (str,),
    "input": (str,),
    "category": (str,),
    "reference": (str, type(None)),
}
TRAIN_FIELDS: tuple[str, ...] = ("instruction", "input", "output")
# An empty set would run every later stage on nothing and report zeros as results.
NO_RECORDS = "no records (the file is empty or holds only blank lines)"


# --- the common eval format -------------------------------------------------------------------


def validate_eval_record(record: Any, path: str | os.PathLike | None = None, line: int | None = None) -> dict:
    """Check one eval record's fields and types; returns it unchanged or raises ``InputError``."""
    if not isinstance(record, dict):
        raise InputError(f"{where(path, line)}: expected a JSON object, got {type(record).__name__}")
    for field, types in EVAL_FIELDS.items():
        if field not in record:
            raise InputError(f"{where(path, line, field)}: missing")
        if not isinstance(record[field], types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise InputError(
                f"{where(path, line, field)}: expected {wanted}, got {type(record[field]).__name__}"
            )
    extra = sorted(set(record) - set(EVAL_FIELDS))
    if extra:
        # Strict on purpose: a misspelt field (e.g. "refrence") would otherwise vanish silently.
        raise InputError(f"{where(path, line, extra[0])}: not a field of the eval format")
    if not record["id"]:
        raise InputError(f"{where(path, line, 'id')}: empty")
    if not record["instruction"].strip():
        raise InputError(f"{where(path, line, 'instruction')}: empty")
    return record


def read_eval_records(path: str | os.PathLike) -> list[dict]:
    """Read an eval set in the common format; every field is checked and ids must be unique."""
    records = []
    seen: dict[str, int] = {}
    for line, record in numbered_jsonl(path):
        validate_eval_record(record, path, line)
        if record["id"] in seen:
            first = seen[record["id"]]
            raise InputError(
                f"{where(path, line, 'id')}: duplicate id {record['id']!r} (first on line {first})"
            )
        seen[record["id"]] = line
        records.append(record)
    if not records:
        raise InputError(f"{where(path)}: {NO_RECORDS}")
    return records


def write_eval_records(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Validate and write an eval set atomically; returns the number of records."""
    records = list(records)
    if not records:
        raise InputError(f"{where(path)}: no eval records to write")
    seen: set[str] = set()
    for index, record in enumerate(records):
        validate_eval_record(record, f"<record {index}>")
        if record["id"] in seen:
            raise InputError(f"{where(f'<record {index}>', None, 'id')}: duplicate id {record['id']!r}")
        seen.add(record["id"])
    # Fixed field order keeps the files diff-able.
    return write_jsonl(path, ({field: record[field] for field in EVAL_FIELDS} for record in records))


def eval_record(
    id: str, instruction: str, input: str = "", category: str = "", reference: str | None = None
) -> dict:
    """Build an eval record with the fields in the canonical order."""
    return {
        "id": id,
        "instruction": instruction,
        "input": input,
        "category": category,
        "reference": reference,
    }


# --- train records ----------------------------------------------------------------------------


def validate_train_record(
    record: Any, path: str | os.PathLike | None = None, line: int | None = None
) -> dict:
    """Check one Alpaca-format record: three string fields and a non-empty instruction.

    An empty ``output`` is allowed: Alpaca holds a few (tasks a text model cannot do, such as
    "create a logo"), and training on them teaches the model to stop at once, as upstream did.
    """
    if not isinstance(record, dict):
        raise InputError(f"{where(path, line)}: expected a JSON object, got {type(record).__name__}")
    for field in TRAIN_FIELDS:
        if field == "input" and record.get(field) is None:
            continue  # a missing or null input means none, as in Alpaca's no-input records
        if field not in record:
            raise InputError(f"{where(path, line, field)}: missing")
        if not isinstance(record[field], str):
            got = type(record[field]).__name__
            raise InputError(f"{where(path, line, field)}: expected a string, got {got}")
    if not record["instruction"].strip():
        raise InputError(f"{where(path, line, 'instruction')}: empty")
    return {
        "instruction": record["instruction"],
        "input": record.get("input") or "",
        "output": record["output"],
    }


def write_train_records(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Validate and write a train set atomically as JSONL (three fields, fixed order)."""
    records = list(records)
    if not records:
        raise InputError(f"{where(path)}: no train records to write")
    for index, record in enumerate(records):
        validate_train_record(record, f"<record {index}>")
    return write_jsonl(path, ({field: record[field] for field in TRAIN_FIELDS} for record in records))


# --- source loaders ---------------------------------------------------------------------------


def load_alpaca(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Stanford Alpaca's ``alpaca_data.json``: one JSON array of instruction/input/output objects.

    Errors name the line where the offending object starts, so a bad record in the 22 MB file can
    be found with an editor.
    """
    records = []
    for line, record in numbered_json_array(path):
        records.append(validate_train_record(record, path, line))
        if limit is not None and len(records) >= limit:
            break
    return records


def load_vicuna(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Vicuna's 80 questions, in FastChat's old ``text`` format or the llm_judge ``turns`` format."""

    def convert(record: dict, line: int) -> dict:
        qid = _require(record, "question_id", (int, str), path, line)
        category = _require(record, "category", (str,), path, line)
        if "turns" in record:
            turns = _require(record, "turns", (list,), path, line)
            if len(turns) != 1 or not isinstance(turns[0], str):
                # MT-bench style follow-up turns need the first answer in the prompt: not one record.
                raise InputError(
                    f"{where(path, line, 'turns')}: expected exactly one string turn, got {turns!r:.80}"
                )
            text = turns[0]
        else:
            text = _require(record, "text", (str,), path, line)
        return eval_record(f"vicuna_{qid}", text, "", category, None)

    return _load_jsonl_source(path, convert, limit)


def load_koala(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Koala's test set: ``{"id", "prompt"}``; it has no categories, so every record gets "koala"."""

    def convert(record: dict, line: int) -> dict:
        rid = _require(record, "id", (str, int), path, line)
        prompt = _require(record, "prompt", (str,), path, line)
        rid = str(rid)
        return eval_record(rid if rid.startswith("koala") else f"koala_{rid}", prompt, "", "koala", None)

    return _load_jsonl_source(path, convert, limit)


def load_wizardlm(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """WizardLM's test set: ``{"idx", "Skill", "Difficulty", "Instruction"}``; category = Skill.

    Skill names are kept as the source spells them (including "Writting"), so categories match
    the WizardLM paper's plots.
    """

    def convert(record: dict, line: int) -> dict:
        idx = _require(record, "idx", (int, str), path, line)
        skill = _require(record, "Skill", (str,), path, line)
        instruction = _require(record, "Instruction", (str,), path, line)
        return eval_record(f"wizardlm_{idx}", instruction, "", skill, None)

    return _load_jsonl_source(path, convert, limit)


def load_selfinstruct(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Self-Instruct's 252 user-oriented tasks; the first instance's input becomes ``input``.

    category = ``motivation_app``. The instance's output is an annotator's sample answer, not a
    gold answer, so ``reference`` stays null as for the other real sets.
    """

    def convert(record: dict, line: int) -> dict:
        rid = _require(record, "id", (str,), path, line)
        app = _require(record, "motivation_app", (str,), path, line)
        instruction = _require(record, "instruction", (str,), path, line)
        instances = _require(record, "instances", (list,), path, line)
        if not instances or not isinstance(instances[0], dict):
            raise InputError(f"{where(path, line, 'instances')}: expected a non-empty list of objects")
        text_input = instances[0].get("input", "")
        if not isinstance(text_input, str):
            raise InputError(
                f"{where(path, line, 'instances[0].input')}: expected str, got {type(text_input).__name__}"
            )
        return eval_record(rid, instruction, text_input, app, None)

    return _load_jsonl_source(path, convert, limit)


# source name -> loader; the names are what ``lite prepare-eval --source`` accepts.
# Alpaca prompts held out for evaluation or calibration come from the file's last tenth;
# `prepare-train --n` keeps records from the start, so the two never meet while n <= 90 %.
HELDOUT_FRACTION = 0.1


def alpaca_heldout(records: list[dict], n: int | None, seed: int, path: str | os.PathLike) -> list[dict]:
    """A seeded sample of the last tenth of Alpaca ``records`` (read from ``path``) as eval records.

    The output is the reference: real instruction data with a gold-ish answer, so the reference
    judge can score it offline, and the calibrated thresholds can be chosen on it
    (configs/smollm2-135m.yaml, configs/paper-*.yaml).
    """
    if not records:
        raise InputError(f"{where(path)}: {NO_RECORDS}")
    start = len(records) - max(1, int(len(records) * HELDOUT_FRACTION))
    indices = list(range(start, len(records)))
    random.Random(seed).shuffle(indices)
    chosen = sorted(indices if n is None else indices[:n])
    held = []
    for i in chosen:
        record = records[i]
        if record["output"].strip():
            held.append(
                eval_record(f"alpaca_{i}", record["instruction"], record["input"], "alpaca", record["output"])
            )
    if not held:
        raise InputError(f"{where(path)}: no record of the held-out last tenth has a non-empty output")
    return held


EVAL_SOURCES: dict[str, Callable[..., list[dict]]] = {
    "vicuna": load_vicuna,
    "koala": load_koala,
    "wizardlm": load_wizardlm,
    "selfinstruct": load_selfinstruct,
}
TRAIN_SOURCES: dict[str, Callable[..., list[dict]]] = {"alpaca": load_alpaca}


def load_source(kind: str, path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Load a real source file by kind (a key of ``TRAIN_SOURCES`` or ``EVAL_SOURCES``)."""
    if limit is not None and limit < 1:
        raise InputError(f"limit must be >= 1, got {limit}")
    loader = TRAIN_SOURCES.get(kind) or EVAL_SOURCES.get(kind)
    if loader is None:
        raise InputError(f"unknown source {kind!r}; choose from {', '.join([*TRAIN_SOURCES, *EVAL_SOURCES])}")
    require_file(path, f"source {kind!r}")
    records = loader(path, limit=limit)
    if not records:
        raise InputError(f"{where(path)}: {NO_RECORDS}")
    return records


def load_checked_source(kind: str, path: str | os.PathLike, limit: int | None, verify: bool) -> list[dict]:
    """``load_source``, after making sure ``path`` is the pinned file of a known set (``verify``).

    The checksum catches a cut or edited copy; the record count then catches a loader that reads
    the right bytes wrongly. ``verify=False`` is for data of one's own under a known format.
    """
    if not verify:
        return load_source(kind, path, limit)
    from lite.download import get_source, verify_pinned

    source = get_source(kind)
    verify_pinned(source, path)
    records = load_source(kind, path)
    if len(records) != source.records:
        raise InputError(
            f"{where(path)}: read {len(records)} records from the pinned {kind} file, "
            f"expected {source.records}"
        )
    return records if limit is None else records[:limit]


# --- helpers ----------------------------------------------------------------------------------


def _require(record: dict, field: str, types: tuple[type, ...], path, line: int) -> Any:
    if field not in record:
        raise InputError(f"{where(path, line, field)}: missing")
    value = record[field]
    # bool is an int subclass; an id of `true` is a data error, not a number.
    if not isinstance(value, types) or isinstance(value, bool):
        wanted = " or ".join(t.__name__ for t in types)
        raise InputError(f"{where(path, line, field)}: expected {wanted}, got {type(value).__name__}")
    return value


def _load_jsonl_source(path, convert: Callable[[dict, int], dict], limit: int | None) -> list[dict]:
    records = []
    seen: dict[str, int] = {}
    for line, raw in numbered_jsonl(path):
        if not isinstance(raw, dict):
            raise InputError(f"{where(path, line)}: expected a JSON object, got {type(raw).__name__}")
        record = convert(raw, line)
        if not record["instruction"].strip():
            raise InputError(f"{where(path, line)}: empty instruction")
        if record["id"] in seen:
            first = seen[record["id"]]
            raise InputError(f"{where(path, line)}: duplicate id {record['id']!r} (first on line {first})")
        seen[record["id"]] = line
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    return records
