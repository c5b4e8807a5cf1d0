"""Held-out cross-entropy of every checkpoint's exit (shared norm + LM head) on reference answers,
and how often the exit's argmax equals the final layer's there.

    lite layer-ce --model results/smollm2-135m/tuned/lite --evalset results/data/eval/alpaca.jsonl \\
        --layers 10,20,30 --out results/smollm2-135m/layer_ce/lite/alpaca.csv

The training log reports each layer's CE only for the layers a tuning trains (IT: the final one);
this scores every checkpoint of any model the same way, teacher-forced on the eval records'
``reference`` answers (prompt template and response tokens as in tuning), token-weighted over
the set. ``agreement`` is the share of those answer positions where the exit's argmax token is
the final layer's: a teacher-forced stand-in for fig5's alignment that needs no generation, so
short tuning probes can read both sides of LITE's trade-off (final-layer CE against intermediate
alignment) from one pass. One CSV row per layer: ``layer, ce, agreement, tokens, records``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lite.io import InputError, atomic_write, number_list_type, save_resolved_config, where


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example command's layout
    parser.add_argument("--model", required=True, help="a tuned model folder")
    parser.add_argument("--evalset", required=True, help="eval records with a 'reference' answer (JSONL)")
    parser.add_argument(
        "--layers", required=True, type=number_list_type(), help="checkpoint layers, e.g. 10,20,30"
    )
    parser.add_argument("--max-length", type=int, default=512, help="tokens per example (prompt + answer)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", required=True, metavar="CSV")


def layer_ce(model, tokenizer, records: Sequence[dict], layers: Sequence[int], max_length: int) -> dict:
    """``{layer: (summed CE over answer tokens, answer tokens whose argmax is the final layer's,
    answer tokens)}``, one record at a time (no padding)."""
    import torch
    import torch.nn.functional as F

    from lite.architectures import exit_modules
    from lite.data import encode_example
    from lite.loss import IGNORE_INDEX, layer_outputs
    from lite.modeling import decoder_layer_count

    norm, head = exit_modules(model)
    n_layers = decoder_layer_count(model)
    sums = dict.fromkeys(layers, 0.0)
    agreed = dict.fromkeys(layers, 0)
    tokens = 0
    with torch.no_grad():
        for record in records:
            example = encode_example(tokenizer, {**record, "output": record["reference"]}, max_length)
            ids = torch.tensor([example["input_ids"]])  # (1, seq)
            labels = torch.tensor([example["labels"]])  # (1, seq)
            hidden = model(input_ids=ids, output_hidden_states=True, use_cache=False, logits_to_keep=1)
            keep = labels[0, 1:] != IGNORE_INDEX  # (seq-1,): the answer positions
            targets = labels[0, 1:][keep]  # (answer tokens,): position t predicts token t+1
            outputs = layer_outputs(hidden.hidden_states, n_layers)
            ce, argmax = {}, {}
            for layer in {*layers, n_layers}:  # each exit's logits once, for its CE and its argmax
                rows, normed = outputs[layer]
                rows = rows[0, :-1][keep]  # (answer tokens, hidden)
                logits = head(rows if normed else norm(rows)).float()  # (answer tokens, vocab)
                ce[layer] = float(F.cross_entropy(logits, targets, reduction="sum"))
                argmax[layer] = logits.argmax(dim=-1)  # (answer tokens,)
            for layer in layers:
                sums[layer] += ce[layer]
                agreed[layer] += int((argmax[layer] == argmax[n_layers]).sum())
            tokens += int(keep.sum())
    return {layer: (sums[layer], agreed[layer], tokens) for layer in layers}


def run(args: argparse.Namespace) -> None:
    import torch

    from lite.datasets import read_eval_records
    from lite.modeling import load_model, load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    records = read_eval_records(args.evalset)
    missing = [r["id"] for r in records if not r.get("reference")]
    if missing:
        raise InputError(f"{where(args.evalset, field='reference')}: records without one: {missing[:5]}")
    model = load_model(args.model)
    tokenizer = load_tokenizer(args.model)
    result = layer_ce(model, tokenizer, records, args.layers, args.max_length)
    with atomic_write(args.out) as handle:
        handle.write("layer,ce,agreement,tokens,records\n")
        for layer, (total, agreed, tokens) in result.items():
            handle.write(f"{layer},{total / tokens:.4f},{agreed / tokens:.4f},{tokens},{len(records)}\n")
            print(
                f"layer {layer}: CE {total / tokens:.4f}, argmax = final layer's on {agreed / tokens:.1%} "
                f"of {tokens} answer tokens",
                file=sys.stderr,
            )
    save_resolved_config(args.out, {"command": "layer-ce", **vars(args)})
