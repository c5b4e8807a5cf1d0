"""Greedy generation with one decoder over eval sets -> generation records (JSONL), one file per set.

    lite generate --model results/tiny12/tuned/lite --evalset results/data/eval/vic.jsonl \
        --decoder dynamic-paper --out results/tiny12/generations/lite/vic/dynamic-paper.jsonl \
        --model-name tiny12 --tuning lite --evalset-name vic --checkpoints 3,6,9,12 \
        [--thresholds FILE_OR_JSON] --max-new-tokens 64 --batch-size 8 --seed 0 --threads 2 [--limit K] \
        [--shard I --num-shards N] [--device auto|cpu|cuda] [--dtype float32|bfloat16] [--agreement-prompts K]

``--evalset``, ``--evalset-name`` and ``--out`` may be repeated, once per eval set (the i-th of
each belong together): the model is loaded, and torch and transformers imported, once for all of
them. On a CPU the imports take longer than decoding a tiny model's eval set, so the workflow runs
one job per decoder over every eval set. Each file equals what a run on that set alone writes.

Decoders: final, fixed-L{k}, dynamic[-paper|-aggressive|-calibrated] (need --thresholds),
random-half, random-k, sequential, speculative-L{E} (see ``lite.decoders.specs``). The records are
written atomically and ``OUT.config.json`` beside them records the settings that produced them.
With ``--num-shards N`` only records j with j % N == I are decoded (``lite merge-shards`` joins the
N files; ``lite.shards``).

``--device``/``--dtype`` choose where and in what precision the model, its KV caches and every
decoder tensor live; the config records both. In float32 the decoders reproduce their references
bit for bit; in bfloat16 they may not (blocks of different shapes round differently), so
``--agreement-prompts K`` decodes the first K records again with the reference (HF ``generate``
for final, the no-cache loop for the cached exit) and records the agreement in the config.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
from pathlib import Path

from lite.flags import add_setting_arguments, option_name, settings_from_args
from lite.io import InputError, number_list
from lite.sections import DEVICE_SETTINGS, GenerationSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--decoder", required=True, help="decoder name, e.g. final, fixed-L4, dynamic-paper")
    parser.add_argument(
        "--checkpoints", required=True, help="checkpoint layers, comma-separated, e.g. 2,4,6,8"
    )
    parser.add_argument(
        "--thresholds",
        default=None,
        help='dynamic decoders: a thresholds file ({"thresholds": {"2": 0.9, ...}}) or that JSON inline',
    )
    parser.add_argument(
        "--gates",
        default=None,
        metavar="JSON",
        help="-probe / -saturation decoders: the exit-gates file (lite probes)",
    )


def add_common_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Arguments shared with ``lite trace``: the eval sets and labels, and every
    ``GenerationSettings`` option but those in ``skip``."""
    parser.add_argument("--model", required=True, help="HF model folder (model + tokenizer)")
    parser.add_argument(
        "--evalset", required=True, action="append", help="eval records, JSONL (docs/records.md); repeatable"
    )
    parser.add_argument("--out", required=True, action="append", help="output JSONL, one per --evalset")
    parser.add_argument(
        "--model-name", required=True, help="base model name written into records, e.g. tiny12"
    )
    parser.add_argument("--tuning", required=True, help="tuning name written into records, e.g. lite")
    parser.add_argument(
        "--evalset-name",
        required=True,
        action="append",
        help="eval set name written into records, e.g. vic; one per --evalset",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first K eval records")
    parser.add_argument(
        "--shard", type=int, default=0, help="which shard of the eval set to run, 0..N-1 (default 0)"
    )
    parser.add_argument(
        "--num-shards",
        type=int,
        default=1,
        help="split the eval set into N shards, record j going to shard j %% N (default 1: no split)",
    )
    add_setting_arguments(parser, GenerationSettings, skip=skip)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype`` alone, for ``lite latency`` (its other options are its own)."""
    others = [
        field.name for field in dataclasses.fields(GenerationSettings) if field.name not in DEVICE_SETTINGS
    ]
    add_setting_arguments(parser, GenerationSettings, skip=others)


def device_settings(args: argparse.Namespace) -> GenerationSettings:
    """``lite latency``'s ``--device`` and ``--dtype``, the rest at their defaults (``--seed`` and
    ``--max-new-tokens`` there are the benchmark's, not generation's)."""
    given = argparse.Namespace(**{name: getattr(args, name) for name in DEVICE_SETTINGS})
    return settings_from_args(GenerationSettings, given)


def _torch_without_gpu_support() -> str | None:
    """The torch version when the installed build has neither CUDA nor ROCm, else None.

    Read from torch/version.py without importing torch (seconds on a busy node): a CPU-only build
    can then refuse ``--device cuda`` at once.
    """
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    found = dict(re.findall(r"^(__version__|cuda|hip)\b[^=]*=\s*(.+)$", text, re.M))
    if found.get("cuda") == "None" and found.get("hip") == "None":
        return found.get("__version__", "?").strip("'\"")
    return None


def resolve_device(settings: GenerationSettings, command: str):
    """The ``torch.device`` of ``--device``, checked before anything slow.

    ``--device cuda`` without a usable GPU ends the command at once with one line naming the
    setting (SystemExit, no traceback): a GPU job that silently fell back to the CPU would run
    for days inside a time limit sized for a GPU.
    """
    if settings.device == "cuda":
        version = _torch_without_gpu_support()
        if version is not None:
            raise SystemExit(
                f"lite {command}: --device cuda: torch {version} is a CPU-only build; "
                "use --device auto or cpu, or install a CUDA build of torch"
            )
    import torch

    if settings.device == "cpu" or (settings.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit(
            f"lite {command}: --device cuda: torch {torch.__version__} sees no CUDA device "
            "(no GPU allotted, or CUDA_VISIBLE_DEVICES empty); use --device auto or cpu"
        )
    return torch.device("cuda", torch.cuda.current_device())


def device_description(device) -> str:
    """What ran the job, for the config: ``cpu`` or ``cuda:0 (NVIDIA H200)``."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """One eval set of a run: its file, its name in the records, its output, its records."""

    path: str
    name: str
    out: str
    records: list[dict]  # this shard's records (all of them, unsharded)
    total_records: int  # before the split into shards: a shard's config records both


def eval_set_flags(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(file, name, output) per eval set from the repeated ``--evalset``/``--evalset-name``/``--out``."""
    counts = (len(args.evalset), len(args.evalset_name), len(args.out))
    if len(set(counts)) != 1:
        raise InputError(
            "give one --evalset-name and one --out per --evalset (got {} --evalset, {} --evalset-name, "
            "{} --out)".format(*counts)
        )
    for flag, values in (("--evalset-name", args.evalset_name), ("--out", args.out)):
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise InputError(f"{flag} {repeated[0]} is given more than once")
    return list(zip(args.evalset, args.evalset_name, args.out, strict=True))


def load_inputs(args: argparse.Namespace, settings: GenerationSettings, device):
    """Seed, threads, the records of every eval set, and the model (on ``device``, in ``--dtype``)
    and tokenizer. Every eval set is read before the model: a bad record fails in seconds."""
    import torch

    from lite.datasets import read_eval_records
    from lite.modeling import load_model, load_tokenizer
    from lite.shards import check_shard, select_shard

    for name in ("max_new_tokens", "batch_size"):
        if getattr(settings, name) < 1:
            raise InputError(f"{option_name(name)} must be >= 1, got {getattr(settings, name)}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    torch.manual_seed(settings.seed)
    check_shard(args.shard, args.num_shards)
    sets = []
    for path, name, out in eval_set_flags(args):
        records = read_eval_records(path)
        if args.limit is not None:
            records = records[: args.limit]
        shard = select_shard(records, args.shard, args.num_shards)
        sets.append(EvalSet(path, name, out, shard, len(records)))
    if not Path(args.model, "config.json").is_file():
        raise InputError(f"{args.model}: not a model folder (no config.json)")
    model = load_model(args.model, dtype=settings.dtype, device=device)
    return sets, model, load_tokenizer(args.model)


def base_config(
    args: argparse.Namespace, settings: GenerationSettings, evalset: EvalSet, model, tokenizer
) -> dict:
    import torch
    import transformers

    from lite.decoders.records import pad_id, stop_ids
    from lite.shards import shard_info

    config = {
        "model_dir": args.model,
        "evalset_file": evalset.path,
        "model": args.model_name,
        "tuning": args.tuning,
        "evalset": evalset.name,
        "max_new_tokens": settings.max_new_tokens,
        "batch_size": settings.batch_size,
        "seed": settings.seed,
        "threads": args.threads,
        "limit": args.limit,
        "n_records": len(evalset.records),
        "n_layers": model.config.num_hidden_layers,
        "eos_ids": sorted(stop_ids(model, tokenizer)),
        "pad_id": pad_id(tokenizer),
        "device": device_description(model.device),
        "dtype": settings.dtype,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    if args.num_shards > 1:  # unsharded results keep the config they always had
        config["shard"] = shard_info(args.shard, args.num_shards, evalset.total_records)
    return config


def run(args: argparse.Namespace) -> None:
    settings = settings_from_args(GenerationSettings, args)
    device = resolve_device(settings, "generate")  # first: a job on the wrong machine ends in seconds
    from lite.decoders.agreement import agreement_check
    from lite.decoders.records import RunLabels, generate_records
    from lite.decoders.specs import decoder_from_name, parse_thresholds
    from lite.io import save_resolved_config, write_jsonl
    from lite.probes import read_gates

    if settings.agreement_prompts < 0:
        raise InputError(f"--agreement-prompts must be >= 0, got {settings.agreement_prompts}")
    checkpoints = number_list(args.checkpoints, "--checkpoints")
    thresholds = None if args.thresholds is None else parse_thresholds(args.thresholds)
    # an exit-gates file is checked whole here (lite.probes), before the model loads
    document = None if args.gates is None else read_gates(args.gates).to_document()
    gates = {"gates": document, "gates_source": args.gates or ""}
    # Check the decoder name before the (slower) model load, then again against the model's depth.
    decoder_from_name(args.decoder, checkpoints, thresholds, settings.seed, **gates)
    sets, model, tokenizer = load_inputs(args, settings, device)
    spec = decoder_from_name(
        args.decoder, checkpoints, thresholds, settings.seed, n_layers=model.config.num_hidden_layers, **gates
    )
    for evalset in sets:
        out = generate_records(
            model,
            tokenizer,
            evalset.records,
            spec,
            RunLabels(args.model_name, args.tuning, evalset.name),
            max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size,
            kv_cache=settings.kv_cache,
        )
        config = base_config(args, settings, evalset, model, tokenizer)
        config.update(
            {
                "command": "generate",
                "decoder": spec,
                "thresholds_source": args.thresholds,
                "kv_cache": settings.kv_cache,
            }
        )
        if settings.agreement_prompts:  # unchecked runs keep the config they always had
            config["agreement"] = agreement_check(
                model,
                tokenizer,
                evalset.records[: settings.agreement_prompts],
                out[: settings.agreement_prompts],
                spec,
                max_new_tokens=settings.max_new_tokens,
                batch_size=settings.batch_size,
                kv_cache=settings.kv_cache,
            )
        write_jsonl(evalset.out, out)
        save_resolved_config(evalset.out, config)
