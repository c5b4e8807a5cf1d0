"""Split an eval set into shards that run as separate jobs, and merge the shards' records back.

    lite generate ... --shard 1 --num-shards 3 \\
        --out results/tiny12/shards/generations/lite/vic/final/1-of-3.jsonl
    lite merge-shards --out results/tiny12/generations/lite/vic/final.jsonl \\
        results/tiny12/shards/generations/lite/vic/final/{0,1,2}-of-3.jsonl

Record ``j`` of the eval set goes to shard ``j % N`` (round robin, so long and short prompts, and
clustered categories, spread evenly over the jobs). Merging interleaves the shards back into the
eval set's order, so the merged file equals the unsharded one record for record: decoding does
not depend on which prompts share a batch, and the random baselines are seeded per prompt id
(tokens, exits and FLOPs match exactly; a confidence may differ in its last float32 bit, as the
prompts are padded and batched differently).

Each shard's resolved config (``SHARD.config.json``) says which shard it is; the merge checks that
the files are shards 0..N-1 of one split, made with the same settings, before writing anything.
Nothing here imports torch: merges run on the login node.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from lite.io import InputError, config_path, read_json, read_jsonl, save_resolved_config, where, write_jsonl

T = TypeVar("T")

# Config keys that differ between the shards of one split by design.
_PER_SHARD_KEYS = ("shard", "n_records")


def check_shard(shard: int, num_shards: int) -> None:
    """Raise ``InputError`` unless ``0 <= shard < num_shards``."""
    if num_shards < 1:
        raise InputError(f"--num-shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise InputError(f"--shard must be in 0..{num_shards - 1} (--num-shards {num_shards}), got {shard}")


def select_shard(records: Sequence[T], shard: int, num_shards: int) -> list[T]:
    """The records of one shard: every ``num_shards``-th record, starting at index ``shard``."""
    check_shard(shard, num_shards)
    return list(records[shard::num_shards])


def shard_size(n_records: int, shard: int, num_shards: int) -> int:
    """How many of ``n_records`` records shard ``shard`` of ``num_shards`` holds."""
    return len(range(shard, n_records, num_shards))


def shard_info(shard: int, num_shards: int, total_records: int) -> dict[str, int]:
    """What a shard's resolved config records about its place in the split."""
    return {"index": shard, "count": num_shards, "total_records": total_records}


def shard_file(merged: str, index: int | str, num_shards: int | str) -> str:
    """One shard file of a merged result (``index`` and ``num_shards`` may be wildcards).

    ``results/M/generations/T/E/D.jsonl`` -> ``results/M/shards/generations/T/E/D/I-of-N.jsonl``
    (and the same for ``traces``): the shards live in their own tree beside the merged results.
    """
    parts = Path(merged).parts
    if len(parts) < 4 or parts[0] != "results" or Path(merged).suffix != ".jsonl":
        raise ValueError(f"{merged}: expected results/<model>/<kind>/.../<name>.jsonl")
    stem = Path(*parts[:2], "shards", *parts[2:]).with_suffix("")
    return str(stem / f"{index}-of-{num_shards}.jsonl")


def shard_files(merged: str, num_shards: int) -> list[str]:
    """The shard files of a merged result, in shard order (``shard_file``)."""
    return [shard_file(merged, index, num_shards) for index in range(num_shards)]


def merge_records(shards: Sequence[Sequence[T]]) -> list[T]:
    """Interleave shards made by ``select_shard`` back into the original record order."""
    total = sum(len(shard) for shard in shards)
    for index, shard in enumerate(shards):
        if len(shard) != shard_size(total, index, len(shards)):
            raise ValueError(
                f"shard {index} of {len(shards)} holds {len(shard)} records; a round-robin split of "
                f"{total} records gives it {shard_size(total, index, len(shards))}"
            )
    return [shards[j % len(shards)][j // len(shards)] for j in range(total)]


def merge_shards(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> dict[str, Any]:
    """Merge shard files (given in shard order) into ``out`` with its resolved config; returns it.

    Raises ``InputError`` naming the file and field when the files are not shards 0..N-1 of one
    split (missing config, wrong index or count, different settings, duplicate ids).
    """
    if not paths:
        raise InputError("merge-shards: no shard files given")
    configs = [_shard_config(path) for path in paths]
    first = configs[0]
    total = first["shard"]["total_records"]
    for index, (path, config) in enumerate(zip(paths, configs, strict=True)):
        shard = config["shard"]
        if shard["count"] != len(paths):
            raise InputError(
                f"{where(config_path(path), field='shard.count')}: a shard of {shard['count']}, "
                f"but {len(paths)} files were given"
            )
        if shard["index"] != index:
            raise InputError(
                f"{where(config_path(path), field='shard.index')}: shard {shard['index']} given in "
                f"position {index}; pass the shards in order 0..{len(paths) - 1}"
            )
        if shard["total_records"] != total:
            raise InputError(
                f"{where(config_path(path), field='shard.total_records')}: {shard['total_records']} "
                f"records in the split, but {paths[0]} says {total}"
            )
        for key in sorted(set(config) | set(first)):
            if key not in _PER_SHARD_KEYS and config.get(key) != first.get(key):
                raise InputError(
                    f"{where(config_path(path), field=key)}: differs from {paths[0]}'s; "
                    "the shards were made with different settings"
                )
    shards = [read_jsonl(path) for path in paths]
    for path, config, records in zip(paths, configs, shards, strict=True):
        if len(records) != config["n_records"]:
            raise InputError(
                f"{path}: holds {len(records)} records, its config says n_records={config['n_records']}"
            )
    try:
        merged = merge_records(shards)
    except ValueError as err:
        raise InputError(f"{paths[0]} ...: {err}") from None
    if len(merged) != total:
        raise InputError(f"{paths[0]} ...: {len(merged)} records in all, the split had {total}")
    ids = [record.get("id") for record in merged]
    if None not in ids and len(set(map(str, ids))) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"{paths[0]} ...: id {duplicate!r} occurs in more than one record")

    write_jsonl(out, merged)
    resolved = {key: value for key, value in first.items() if key not in _PER_SHARD_KEYS}
    resolved.update({"n_records": len(merged), "merged_from": [str(path) for path in paths]})
    save_resolved_config(out, resolved)
    return resolved


def _shard_config(path: str | os.PathLike) -> dict[str, Any]:
    source = config_path(path)
    if not Path(path).is_file():
        raise InputError(f"{path}: no such shard file")
    if not source.is_file():
        raise InputError(f"{source}: missing; every shard needs the resolved config its command wrote")
    config = read_json(source)
    shard = config.get("shard") if isinstance(config, dict) else None
    if not isinstance(shard, dict) or not {"index", "count", "total_records"} <= set(shard):
        raise InputError(
            f"{where(source, field='shard')}: not a shard's config (run lite generate/trace with --shard)"
        )
    return config
