"""Latency benchmark of the decoders on the same prompts -> latency table (CSV + Markdown) and figure.

    lite latency --model results/tiny12/tuned/lite --evalset results/data/eval/vicuna.jsonl \\
        --checkpoints 2,4,6,8 --thresholds '{"2": 0.95, "4": 0.9, "6": 0.8}' \\
        --out results/tables/latency.csv --figure results/figures/latency.pdf \\
        --throughput-figure results/figures/throughput.pdf --batch-sizes 1,4,16 \\
        --prompts 16 --max-new-tokens 256 --repeats 3 --draft-layers 2 --draft-tokens 4 --widths 1,4 \\
        --threads 1 [--device auto|cpu|cuda] [--dtype float32|bfloat16] \
        [--compare it=results/tiny12/tuned/it --acceptance-out results/tables/acceptance.csv]

Times HF ``generate`` (final layer, KV cache), lite's own final-layer loop, the paper's no-cache
dynamic exit, the KV-cached dynamic exit and self-speculative decoding from each draft layer and
with adaptive drafting, side by side, at each batch size, and HF's own LayerSkip self-speculation
from each draft layer at batch size 1 (see ``lite.latency``). ``--widths 1,4``
also measures a 4x wider copy of the model that computes the same function. With
``--acceptance-out`` the acceptance rate of self-speculative decoding from every layer below N is
measured for this model and each ``--compare NAME=DIR`` one.
Every output is written atomically; ``OUT.config.json`` holds the settings, the machine and every
timed repeat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lite import latency
from lite.commands.generate import add_device_arguments, device_description, device_settings, resolve_device
from lite.flags import add_setting_arguments, settings_from_args
from lite.io import InputError, number_list


def _compare(items: list[str]) -> dict[str, str]:
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--compare: expected NAME=MODEL_DIR, got {item!r}")
        models[name] = path
    return models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="LITE-tuned HF model folder (model + tokenizer)")
    parser.add_argument("--name", default="lite", help="label of this model in the tables (default lite)")
    parser.add_argument("--evalset", required=True, help="eval records (JSONL); the first --prompts are used")
    parser.add_argument("--checkpoints", required=True, help="exit layers, comma-separated, e.g. 2,4,6,8")
    parser.add_argument("--thresholds", required=True, help="dynamic-exit thresholds: file or inline JSON")
    parser.add_argument("--out", required=True, help="latency table (CSV); a Markdown twin goes beside it")
    parser.add_argument("--figure", required=True, help="latency figure (PDF); a PNG twin goes beside it")
    parser.add_argument(
        "--throughput-figure",
        default=None,
        help="tokens/s against batch size (PDF); a PNG twin goes beside it",
    )
    parser.add_argument(
        "--category",
        default=None,
        help="decode only the eval records of this category (task family), e.g. cycle (default: all)",
    )
    add_setting_arguments(parser, latency.LatencyConfig)
    parser.add_argument(
        "--exit-thresholds",
        action="append",
        default=[],
        metavar="NAME=THRESHOLDS",
        help="thresholds of one of --exits (repeatable): a thresholds file or inline JSON",
    )
    parser.add_argument(
        "--gates", default=None, metavar="JSON", help="exit gates of --exits' -probe/-saturation options"
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another tuning's model for the acceptance table (repeatable), e.g. it=results/tiny12/tuned/it",
    )
    parser.add_argument(
        "--acceptance-prompts", type=int, default=16, help="prompts for the acceptance table (default 16)"
    )
    parser.add_argument(
        "--acceptance-tokens",
        type=int,
        default=64,
        help="longest response for the acceptance table (default 64)",
    )
    parser.add_argument(
        "--acceptance-out",
        default=None,
        help="acceptance table (CSV): per draft layer, this model and the --compare ones",
    )
    add_device_arguments(parser)


def run(args: argparse.Namespace) -> None:
    generation = device_settings(args)
    device = resolve_device(generation, "latency")  # first: a job on the wrong machine ends in seconds
    import pandas as pd
    import torch
    from tqdm import tqdm

    from lite.datasets import read_eval_records
    from lite.decoders.records import fit_to_context, pad_id, stop_ids
    from lite.decoders.specs import parse_thresholds
    from lite.io import atomic_write, save_resolved_config
    from lite.modeling import load_model, load_tokenizer
    from lite.probes import read_gates
    from lite.report.tables import to_markdown

    compare = _compare(args.compare)
    for name in ("acceptance_prompts", "acceptance_tokens"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if compare and args.acceptance_out is None:
        raise InputError("--compare needs --acceptance-out (where the acceptance table goes)")
    try:
        config = settings_from_args(latency.LatencyConfig, args)
    except ValueError as err:
        raise InputError(str(err)) from None
    checkpoints = number_list(args.checkpoints, "--checkpoints")
    thresholds = parse_thresholds(args.thresholds)
    exits = {}
    for item in args.exit_thresholds:
        name, sep, source = item.partition("=")
        if not sep or name not in config.exits:
            raise InputError(f"--exit-thresholds: expected NAME=THRESHOLDS for one of --exits, got {item!r}")
        exits[name] = parse_thresholds(source)
    gates = None if args.gates is None else read_gates(args.gates).to_document()
    for path in (args.model, *compare.values()):
        if not Path(path, "config.json").is_file():
            raise InputError(f"{path}: not a model folder (no config.json)")
    torch.set_num_threads(config.threads)
    records = read_eval_records(args.evalset)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=generation.dtype, device=device)
    total = model.config.num_hidden_layers
    missing = [c for c in checkpoints if c != total and c not in thresholds]
    if missing:
        raise InputError(f"--thresholds: no threshold for checkpoint layer {missing[0]}")
    # room for the longest response either table generates
    longest = max(config.max_new_tokens, args.acceptance_tokens)
    fitted = [fit_to_context(model, tokenizer, record, longest) for record in records]
    encoded = [prompt for prompt, _ in fitted]
    chosen = [
        (record, prompt, cut)
        for record, (prompt, cut) in zip(records, fitted, strict=True)
        if args.category is None or record.get("category") == args.category
    ][: config.prompts]
    if chosen and len(chosen) < config.prompts:
        of = "" if args.category is None else f" of category {args.category}"
        raise InputError(
            f"{args.evalset}: {len(chosen)} records{of}, --prompts asks {config.prompts}"
            f" (batches of {', '.join(map(str, config.batch_sizes))})"
        )
    if not chosen:
        categories = sorted({str(r.get("category")) for r in records})
        raise InputError(
            f"{args.evalset}: no record of category {args.category!r} (has: {', '.join(categories)})"
        )
    prompts = [prompt for _, prompt, _ in chosen]
    pad = pad_id(tokenizer)
    stops = stop_ids(model, tokenizer)

    steps = len(config.widths) * (config.repeats + 1) * len(config.runs())
    raw = []
    with tqdm(total=steps, desc="latency", unit="run", file=sys.stderr) as bar:

        def progress(text: str) -> None:
            bar.set_postfix_str(text)
            bar.update(1)

        for factor in config.widths:
            wide = latency.widen(model, factor)
            label = f"{args.name} h{wide.config.hidden_size} {total}L" + (
                f" (x{factor})" if factor > 1 else ""
            )
            raw.append(
                latency.measure(
                    wide,
                    prompts,
                    checkpoints,
                    thresholds,
                    config,
                    pad,
                    label,
                    progress,
                    stops,
                    exits,
                    None if gates is None else latency.widen_gates(gates, factor),
                )
            )
    frame = pd.concat(raw, ignore_index=True)
    table = latency.summarize(frame, config.threads)
    out = Path(args.out)
    with atomic_write(out) as handle:
        table.to_csv(handle, index=False)
    with atomic_write(out.with_suffix(".md")) as handle:
        handle.write(
            to_markdown(
                table,
                f"**latency.** {config.max_new_tokens} new tokens per prompt (EOS {config.eos}), "
                f"{len(prompts)} prompts{'' if args.category is None else ' of category ' + args.category}, "
                f"batch sizes {', '.join(map(str, config.batch_sizes))}, {config.threads} thread(s)",
            )
        )
    written = [out, out.with_suffix(".md"), *latency.draw(table, args.figure)]
    if args.throughput_figure is not None:
        written += latency.draw_throughput(table, args.throughput_figure)
    resolved = {
        "command": "latency",
        "model_dir": args.model,
        "evalset_file": args.evalset,
        "category": args.category,
        "prompt_ids": [record["id"] for record, _, _ in chosen],
        "checkpoints": checkpoints,
        "thresholds": thresholds,
        "latency": config,
        "machine": {**latency.machine(), "torch_threads": torch.get_num_threads()},
        "device": device_description(device),
        "dtype": generation.dtype,
        "versions": {"torch": torch.__version__},
        "prompt_tokens": [len(p) for p in prompts],
        "prompt_truncated_chars": [cut for _, _, cut in chosen],
        "repeats": frame.to_dict(orient="records"),
    }
    for path in written:
        save_resolved_config(path, resolved)
    if args.acceptance_out is not None:
        others = {
            name: load_model(path, dtype=generation.dtype, device=device) for name, path in compare.items()
        }
        models = {args.name: model, **others}
        rates = latency.acceptance(
            models,
            encoded[: args.acceptance_prompts],
            config.draft_tokens,
            args.acceptance_tokens,
            pad,
            stops,
            config.eos,
        )
        with atomic_write(args.acceptance_out) as handle:
            rates.to_csv(handle, index=False)
        settings = {
            "compare": compare,
            "acceptance_prompts": len(encoded[: args.acceptance_prompts]),
            "acceptance_tokens": args.acceptance_tokens,
            "repeats": None,
        }
        save_resolved_config(args.acceptance_out, {**resolved, **settings})
        written.append(Path(args.acceptance_out))
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
