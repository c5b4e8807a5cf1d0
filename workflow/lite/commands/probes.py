"""Fit cheap exit gates per checkpoint layer from calibration traces (``lite.probes``).

    lite probes --model results/tiny12/tuned/lite --eval results/data/eval/calibration.jsonl \\
        --traces results/tiny12/traces/lite/calibration.jsonl --layers 3,6,9 --recall 0.95 \\
        --max-new-tokens 40 --threads 1 --out results/tiny12/probes/lite.json

Each trace's prompt is encoded from its eval record as generation encoded it (``fit_to_context``
with --max-new-tokens, which must be the traces') and the model is run teacher-forced over
prompt + generated tokens (fp32, CPU). Per layer: a logistic probe on the normed hidden state of
whether the layer's head predicts the final layer's token, and CALM's saturation (cosine with the
previous checkpoint's hidden state), each with the cut-off that passes --recall of the positions
where it does. That agreement is recomputed from the model and must match the traces' own
``layer_argmax`` on at least 99% of positions: less means another model, other prompts or another
--max-new-tokens. The final layer needs no gate and is skipped if given.
"""

from __future__ import annotations

import argparse
import sys
import time

from lite.flags import add_setting_arguments
from lite.io import InputError, number_list_type, save_resolved_config, where, write_json
from lite.sections import ProbeSettings

MIN_LABEL_AGREEMENT = 0.99
AT = 0.9  # the reference threshold of the printed summary (one of lite.probes.THRESHOLDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example command's layout
    parser.add_argument("--model", required=True, help="the model folder the traces were made with")
    parser.add_argument(
        "--eval", required=True, metavar="FILE", help="eval records the traces were made from"
    )
    parser.add_argument("--traces", nargs="+", required=True, metavar="FILE", help="trace records (JSONL)")
    parser.add_argument(
        "--layers", required=True, type=number_list_type(), help="checkpoint layers, e.g. 2,5,8"
    )
    add_setting_arguments(parser, ProbeSettings)
    parser.add_argument(
        "--max-new-tokens", type=int, required=True, help="the traces' --max-new-tokens (prompt fitting)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", required=True, metavar="JSON", help="exit-gates file")


def prompts_for(model, tokenizer, eval_path: str, records: list[dict], path: str, traces: list[dict],
                max_new_tokens: int) -> list[list[int]]:  # fmt: skip
    """Each trace's prompt ids from its eval record, checked against the trace's ``prompt_tokens``."""
    from lite.decoders.records import fit_to_context

    by_id = {str(r["id"]): r for r in records}
    prompts = []
    for trace in traces:
        record = by_id.get(str(trace["id"]))
        if record is None:
            raise InputError(f"{where(path, field='id')}: trace {trace['id']!r} has no record in {eval_path}")
        if len(trace["token_ids"]) > max_new_tokens:
            raise InputError(
                f"{where(path, field='token_ids')}: trace {trace['id']!r} has {len(trace['token_ids'])} "
                f"tokens, more than --max-new-tokens {max_new_tokens}"
            )
        prompt, _ = fit_to_context(model, tokenizer, record, max_new_tokens)
        if "prompt_tokens" in trace and len(prompt) != trace["prompt_tokens"]:
            raise InputError(
                f"{where(path, field='prompt_tokens')}: trace {trace['id']!r} says {trace['prompt_tokens']} "
                f"but its record in {eval_path} encodes to {len(prompt)} tokens"
            )
        prompts.append(prompt)
    return prompts


def run(args: argparse.Namespace) -> None:
    from lite.analysis import read_traces
    from lite.datasets import read_eval_records

    if not 0 < args.recall <= 1:
        raise InputError(f"--recall must lie in (0, 1], got {args.recall}")
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    records = read_eval_records(args.eval)
    per_file = [(path, read_traces([path])) for path in args.traces]  # every input checked before torch
    runs = {(t["model"], t["tuning"]) for _, traces in per_file for t in traces}
    if len(runs) > 1:
        raise InputError(f"--traces: traces of several models/tunings {sorted(runs)}; give one's")

    import numpy as np
    import torch

    from lite.flops import ModelShape, check_cost_ratio
    from lite.modeling import load_model, load_tokenizer
    from lite.probes import fit_gates, gate_features, held_out_positions, trace_labels

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model)
    tokenizer = load_tokenizer(args.model)
    total = model.config.num_hidden_layers
    for path, traces in per_file:
        for trace in traces:
            if trace.get("n_layers", total) != total:
                raise InputError(
                    f"{where(path, field='n_layers')}: trace {trace['id']!r} has {trace['n_layers']} layers, "
                    f"the model {total}"
                )
    layers = sorted(set(args.layers))
    if total in layers:
        print(f"lite probes: layer {total} is the final layer; it needs no gate", file=sys.stderr)
        layers.remove(total)
    if not layers or not all(1 <= layer < total for layer in layers):
        raise InputError(f"--layers: need layers within 1..{total - 1}, got {list(args.layers)}")

    prompts, traces = [], []
    for path, file_traces in per_file:
        prompts += prompts_for(model, tokenizer, args.eval, records, path, file_traces, args.max_new_tokens)
        traces += file_traces
    start = time.perf_counter()
    features = gate_features(model, prompts, [t["token_ids"] for t in traces], layers)
    forward_s = time.perf_counter() - start
    expected = trace_labels(traces, layers)
    agreement = {}
    for layer in layers:
        ours = features.labels[layer].numpy()
        agreement[layer] = float(np.mean(ours == expected[layer])) if ours.size else 1.0
        if agreement[layer] < MIN_LABEL_AGREEMENT:
            raise InputError(
                f"{where(', '.join(args.traces), field='layer_argmax')}: layer {layer}'s teacher-forced head "
                f"agrees with the traces on only {agreement[layer]:.1%} of positions (need "
                f"{MIN_LABEL_AGREEMENT:.0%}): another model, other prompts or another --max-new-tokens?"
            )
    start = time.perf_counter()
    held_out = held_out_positions([len(t["token_ids"]) for t in traces])
    check = check_cost_ratio(ModelShape.from_config(model.config))  # a head check, in layers
    gates = fit_gates(features, recall=args.recall, held_out=held_out, check_layers=check, total=total)
    fit_s = time.perf_counter() - start
    write_json(args.out, gates.to_document())
    save_resolved_config(
        args.out,
        {
            "command": "probes",
            "model": args.model,
            "eval": args.eval,
            "traces": list(args.traces),
            "layers": layers,
            "recall": args.recall,
            "max_new_tokens": args.max_new_tokens,
            "threads": args.threads,
            "label_agreement_pct": {str(layer): 100.0 * value for layer, value in agreement.items()},
        },
    )
    print(f"lite probes: features {forward_s:.1f}s, fitting {fit_s:.1f}s", file=sys.stderr)
    for layer, g in gates.layers.items():
        auc = "n/a" if g.auc is None else f"{g.auc:.3f}"
        probe, saturation = g.probe_at[AT], g.saturation_at[AT]
        print(
            f"layer {layer}: {g.positions} positions, {g.agree_pct:.1f}% agree "
            f"(labels match the traces' on {agreement[layer]:.1%}); probe AUC {auc} gate {g.probe_gate:.4g} "
            f"passes {_pct(probe.passed_pct)}, keeping {_pct(probe.exits_kept_pct)} of the exits at t={AT}; "
            f"saturation gate {g.saturation_gate:.4g} passes {_pct(saturation.passed_pct)}, keeping "
            f"{_pct(saturation.exits_kept_pct)}" + (f" ({g.note})" if g.note else ""),
            file=sys.stderr,
        )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"
