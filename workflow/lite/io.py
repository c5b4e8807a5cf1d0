"""File helpers shared by every stage: atomic writes, JSONL, resolved configs, input errors.

Nothing here imports torch, so the analysis, judging and report stages stay light.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

Number = TypeVar("Number", int, float)


class SetupError(Exception):
    """A problem the user fixes (input data, settings, environment, an unreachable service).

    ``lite`` prints its message as one line, without a traceback (``--debug`` shows it).
    """


class InputError(SetupError, ValueError):
    """Bad input data or settings; the message names the file, line and field where known."""


def where(path: str | os.PathLike | None, line: int | None = None, field: str | None = None) -> str:
    """``file:line field`` prefix for error messages (parts that are unknown are left out)."""
    parts = []
    if path is not None:
        parts.append(f"{path}:{line}" if line is not None else str(path))
    if field is not None:
        parts.append(f"field {field!r}")
    return " ".join(parts)


def require_file(path: str | os.PathLike, what: str) -> None:
    """Raise ``InputError`` naming ``path`` unless it is a file; ``what`` says what it was given as."""
    if Path(path).is_dir():
        raise InputError(f"{where(path)}: is a directory, not a file ({what})")
    if not Path(path).is_file():
        raise InputError(f"{where(path)}: no such file ({what})")


def _numbers(text: str, kind: Callable[[str], Number]) -> tuple[Number, ...]:
    """``"2,4,6"`` -> ``(2, 4, 6)``; blank items are ignored. ``ValueError`` says what is wrong."""
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        raise ValueError(f"expected comma-separated {noun}, got {text!r}") from None
    if not values:
        raise ValueError("give at least one value")
    return values


def number_list(text: str, what: str, kind: Callable[[str], Number] = int) -> tuple[Number, ...]:
    """The one parser of comma-separated numbers (layers, batch sizes, bins): a bad item or an
    empty list is an ``InputError`` naming ``what`` (a flag or config key)."""
    try:
        return _numbers(text, kind)
    except ValueError as err:
        raise InputError(f"{what}: {err}") from None


def number_list_type(kind: Callable[[str], Number] = int) -> Callable[[str], tuple[Number, ...]]:
    """``number_list`` as an argparse ``type=``: a bad value is a usage error, which argparse
    prefixes with the flag's name."""

    def parse(text: str) -> tuple[Number, ...]:
        try:
            return _numbers(text, kind)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp file beside ``path`` for the block to fill; renamed over ``path`` only on success.

    A crash or an exception inside the block leaves no file under the final name (an existing one
    is kept untouched), so Snakemake never mistakes a half-written output for a finished one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes 0600 files; results on a shared cluster folder should follow the umask
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """``open(path, mode)`` through ``atomic_path``: the file appears whole or not at all."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records atomically, one JSON object per line; returns how many were written."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file of objects; a malformed line raises ``InputError`` naming the file and line."""
    records = []
    for number, record in numbered_jsonl(path):
        if not isinstance(record, dict):
            raise InputError(f"{where(path, number)}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def read_numbered(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """(line, value) for each record of a JSONL file or of a top-level JSON array (Alpaca's format)."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    return list(numbered_json_array(path) if head.startswith(b"[") else numbered_jsonl(path))


def _decode_utf8(path: str | os.PathLike, data: bytes, first_line: int = 1) -> str:
    """``data`` (the file's text from ``first_line`` on) as str; a bad byte names its line and column.

    Python's own error gives a byte offset into whatever chunk was being decoded, which names
    neither the file nor the line a user would open.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise InputError(
            f"{where(path, line)}: not valid UTF-8 (byte 0x{data[err.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None


def read_text(path: str | os.PathLike) -> str:
    """A whole UTF-8 text file; a byte that is not UTF-8 raises ``InputError`` naming its line."""
    return _decode_utf8(path, Path(path).read_bytes())


def numbered_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line; bad JSON or UTF-8 names the file and line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = _decode_utf8(path, raw, number)
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as err:
                raise InputError(f"{where(path, number)}: not valid JSON ({err.msg})") from None


def numbered_json_array(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line where the element starts, element) for each element of a top-level JSON array."""
    text = read_text(path)
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if not text.startswith("[", pos):
        raise InputError(f"{where(path, text.count(chr(10), 0, pos) + 1)}: expected a JSON array")
    pos = _skip_space(text, pos + 1)
    line, counted_to = 1, 0
    first = True
    while True:
        if text.startswith("]", pos):
            break
        if not first:
            if not text.startswith(",", pos):
                line += text.count("\n", counted_to, pos)
                raise InputError(f"{where(path, line)}: expected ',' or ']' between array elements")
            pos = _skip_space(text, pos + 1)
        first = False
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        try:
            element, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise InputError(f"{where(path, err.lineno)}: not valid JSON ({err.msg})") from None
        yield line, element
        pos = _skip_space(text, pos)
    if _skip_space(text, pos + 1) != len(text):
        raise InputError(f"{where(path)}: extra data after the JSON array")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, default=_jsonable)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"{where(path, err.lineno)}: not valid JSON ({err.msg})") from None


def config_path(result: str | os.PathLike) -> Path:
    """Where the resolved config of ``result`` lives: ``result.config.json`` (inside a folder result)."""
    result = Path(result)
    if result.is_dir():
        return result / "resolved_config.json"
    return result.with_name(result.name + ".config.json")


def save_resolved_config(result: str | os.PathLike, config: Any) -> Path:
    """Save the settings that produced ``result`` next to it (dataclasses are converted)."""
    target = config_path(result)
    write_json(target, config)
    return target


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
