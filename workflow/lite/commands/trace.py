"""Final-layer greedy generation recording every layer's argmax and confidence -> trace records (JSONL).

    lite trace --model results/tiny12/tuned/lite --evalset results/data/eval/vic.jsonl \
        --out results/tiny12/traces/lite/vic.jsonl --model-name tiny12 --tuning lite --evalset-name vic \
        --max-new-tokens 64 --batch-size 8 --seed 0 --threads 2 [--limit K] [--shard I --num-shards N] \
        [--device auto|cpu|cuda] [--dtype float32|bfloat16]

Row t, column i-1 of ``layer_argmax`` / ``layer_confidence`` is layer i's argmax token / max softmax
probability at generated position t (docs/records.md "Trace record"). Written atomically, with
``OUT.config.json`` beside it. ``--shard``/``--num-shards`` split the eval set as in ``lite generate``;
``--device``/``--dtype`` too, and as there ``--evalset``/``--evalset-name``/``--out`` may be repeated
to trace several eval sets with one model load. Layers are read one at a time (argmax and
confidence kept, logits dropped), so the trace of a large model never holds every layer's logits
at once.
"""

from __future__ import annotations

import argparse

from lite.commands.generate import add_common_arguments, base_config, load_inputs, resolve_device
from lite.flags import settings_from_args
from lite.sections import GenerationSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, skip=("agreement_prompts",))


def run(args: argparse.Namespace) -> None:
    settings = settings_from_args(GenerationSettings, args)
    device = resolve_device(settings, "trace")  # first: a job on the wrong machine ends in seconds
    from lite.decoders.records import RunLabels, trace_records
    from lite.io import save_resolved_config, write_jsonl

    sets, model, tokenizer = load_inputs(args, settings, device)
    for evalset in sets:
        labels = RunLabels(args.model_name, args.tuning, evalset.name)
        out = trace_records(
            model,
            tokenizer,
            evalset.records,
            labels,
            max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size,
        )
        write_jsonl(evalset.out, out)
        config = base_config(args, settings, evalset, model, tokenizer)
        config["command"] = "trace"
        save_resolved_config(evalset.out, config)
