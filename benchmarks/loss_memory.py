"""Peak memory and time of one training step: IT vs LITE (naive, chunked and fused head + CE).

    .venv/bin/python benchmarks/loss_memory.py
    .venv/bin/python benchmarks/loss_memory.py --hidden 128 --vocab 1280 --steps 3  # LLaMA-2-7B head ratio

A step is forward + backward of the loss on one batch (no optimizer: its state is the same in every
mode). Each mode runs in a fresh process so the allocator starts clean. Memory is measured as:
- CPU: the process's peak resident set size (VmHWM) during the step, minus its resident size right
  before it. The peak is reset just before the step by writing 5 to /proc/self/clear_refs, so model
  set-up does not mask it. Gradient buffers are allocated before the baseline (same in all modes).
- CUDA (when available): torch.cuda.max_memory_allocated() minus memory_allocated() before the step.
Time: median of ``--steps`` steps after the measured (warm-up) step. The modes run in turn,
``--rounds`` times (each round a fresh process per mode), so a slow drift of a shared machine hits
them alike; the table reports each mode's median over rounds (memory: the largest peak).

Modes: ``it_hf`` = HF ``model(..., labels=labels).loss`` (the IT baseline); ``it_lite`` = lite_loss
with {N: 1}; ``lite`` = lite_loss on exits + N, unchunked; ``lite_chunked`` = the same with head + CE
over chunks of ``--chunk`` positions under activation checkpointing; ``lite_fused`` = chunks of the
same size whose head gradients are made in the forward pass (no recomputation); ``lite_torch_lce`` =
the same loss through torch's ``F.linear_cross_entropy`` (chunks of ``--chunk`` rows), per exit.
The table also shows each mode's loss, so a variant that computes something else shows up.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODES = ("it_hf", "it_lite", "lite", "lite_chunked", "lite_fused", "lite_torch_lce")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--intermediate", type=int, default=None, help="MLP width (default 4 x hidden)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=32, help="leading positions per row labelled -100")
    parser.add_argument("--exits", default="2,4,6", help="intermediate exits (the final layer is added)")
    parser.add_argument("--chunk", type=int, default=512, help="positions per head + CE chunk")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per mode after the warm-up step")
    parser.add_argument("--rounds", type=int, default=3, help="times each mode runs, interleaved")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the results here as JSON (+ .config.json)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def torch_lce_loss(hidden_states, labels, norm, lm_head, weights, chunk):
    """``lite_loss``'s value, each exit's head + CE through ``F.linear_cross_entropy`` in chunks."""
    import torch
    import torch.nn.functional as F

    from lite.loss import IGNORE_INDEX, layer_outputs

    outputs = layer_outputs(hidden_states, len(hidden_states) - 1)
    keep = labels[:, 1:] != IGNORE_INDEX  # (batch, seq-1)
    targets = labels[:, 1:][keep]  # (tokens,)
    options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=chunk)
    total = 0.0
    for layer, weight in weights.items():
        hidden, normed = outputs[layer]
        rows = hidden[:, :-1][keep]  # (tokens, hidden)
        ce = F.linear_cross_entropy(
            rows if normed else norm(rows), lm_head.weight, targets, linear_bias=lm_head.bias, options=options
        )
        total = total + weight * ce
    return total / sum(weights.values())


def worker(args) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lite.loss import IGNORE_INDEX, lite_loss

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate or 4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=args.seq,
        tie_word_embeddings=False,
    )
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).to(device).train()
    input_ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)  # (batch, seq)
    labels = input_ids.clone()
    labels[:, : args.prompt] = IGNORE_INDEX
    mask = torch.ones_like(input_ids)
    n = args.layers
    exits = sorted({int(x) for x in args.exits.split(",") if x} | {n})
    weights = {n: 1.0} if args.worker.startswith("it") else {k: 1.0 for k in exits}
    chunk = args.chunk if args.worker in ("lite_chunked", "lite_fused") else None
    fused = args.worker == "lite_fused"

    def step():
        if args.worker == "it_hf":
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        elif args.worker == "lite_torch_lce":
            out = model.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            loss = torch_lce_loss(
                out.hidden_states, labels, model.model.norm, model.lm_head, weights, args.chunk
            )
        else:
            out = model.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            loss, _ = lite_loss(
                out.hidden_states, labels, model.model.norm, model.lm_head, weights, chunk, fused=fused
            )
        loss.backward()
        model.zero_grad(set_to_none=False)  # keep the buffers: they are part of the baseline
        return loss.item()

    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        peak_delta = (torch.cuda.max_memory_allocated() - before) / 2**20
        peak_total, how = torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated"
    else:
        reset = _reset_peak()
        before = _rss_kib("VmRSS")
        t0 = time.perf_counter()
        loss = step()
        first = time.perf_counter() - t0
        peak = _rss_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_delta, peak_total = (peak - before) / 1024, peak / 1024
        how = "RSS: VmHWM (reset via clear_refs) - VmRSS before" if reset else "RSS: ru_maxrss - VmRSS before"
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {
        "mode": args.worker,
        "device": device,
        "layers_with_loss": sorted(weights),
        "loss": round(loss, 6),
        "peak_step_mib": round(peak_delta, 1),
        "peak_total_mib": round(peak_total, 1),
        "memory_measure": how,
        "first_step_s": round(first, 3),
        "step_s": round(statistics.median(times), 3) if times else round(first, 3),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode in MODES:
            print(f"round {round_ + 1}/{args.rounds}: {mode} ...", file=sys.stderr, flush=True)
            proc = subprocess.run(
                [sys.executable, __file__, *passthrough, "--worker", mode],
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
            runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = [
        {
            **mode_runs[0],
            "peak_step_mib": max(r["peak_step_mib"] for r in mode_runs),
            "peak_total_mib": max(r["peak_total_mib"] for r in mode_runs),
            "step_s": statistics.median(r["step_s"] for r in mode_runs),
            "step_s_rounds": [r["step_s"] for r in mode_runs],
        }
        for mode_runs in runs.values()
    ]
    base = results[0]
    tokens = args.batch * (args.seq - args.prompt)
    print(
        f"\nmodel: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; batch {args.batch} x seq "
        f"{args.seq} ({tokens} target positions); exits {args.exits}+{args.layers}; chunk {args.chunk}; "
        f"threads {args.threads}; device {base['device']}"
    )
    print(
        f"memory: {base['memory_measure']} (largest of {args.rounds} rounds); time: median over "
        f"{args.rounds} interleaved rounds of the median of {args.steps} steps after a warm-up step\n"
    )
    header = (
        f"{'mode':<16}{'loss layers':<16}{'loss':>9}{'peak step MiB':>14}{'x IT':>7}{'peak total MiB':>16}"
    )
    print(header + f"{'x IT':>7}{'s/step':>9}{'x IT':>7}")
    for r in results:
        print(
            f"{r['mode']:<16}{','.join(map(str, r['layers_with_loss'])):<16}{r['loss']:>9.4f}"
            f"{r['peak_step_mib']:>14.1f}"
            f"{r['peak_step_mib'] / base['peak_step_mib']:>7.2f}{r['peak_total_mib']:>16.1f}"
            f"{r['peak_total_mib'] / base['peak_total_mib']:>7.2f}{r['step_s']:>9.3f}"
            f"{r['step_s'] / base['step_s']:>7.2f}"
        )
    if args.out is not None:
        from lite.io import save_resolved_config, write_json

        write_json(args.out, {"results": results})
        save_resolved_config(args.out, {k: v for k, v in vars(args).items() if k != "worker"})


if __name__ == "__main__":
    main()
