"""GPU hours per stage of a config, from the FLOPs accounting and a stated GPU throughput.

    lite plan-cost --configfile configs/paper-7b.yaml [--tflops 400] [--bandwidth 2000] \\
        [--gpu-memory 80] [--prompt-tokens 200] [--train-tokens 512] [--layer-overhead-ms 0.3]

Prints one row per stage (tune, generate, trace): jobs, the longest job's estimated minutes
against ``resources.<group>.runtime``, and GPU hours in all; then each generation job's GPU memory.
Every estimate is an upper bound on the work: responses run to ``max_new_tokens``, early exits are
counted as final-layer tokens, training examples are ``--train-tokens`` long. Set
``resources.*.runtime`` above the estimate before submitting.

The model of one GPU (all stated on the command line):
- matmuls at ``--tflops`` sustained (``lite.flops`` counts them: decoder layers, attention, heads);
- decoding is bound by memory reads: every step reads the weights of the layers it runs and the
  KV cache, at ``--bandwidth`` GB/s; a step takes the longer of the two;
- the decoders run layer by layer from Python: ``--layer-overhead-ms`` per layer and step
  (kernel launches and dispatch), which dominates small batches of small models;
- ``--load-minutes`` per job to load the model and start.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path

from lite.io import InputError

# Eval sets of a fixed size (lite.datasets); synthetic and Alpaca sets give ``n``.
SOURCE_SIZES = {"vicuna": 80, "koala": 180, "wizardlm": 218, "selfinstruct": 252, "alpaca": 52002}
BF16_BYTES = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configfile", required=True, help="workflow config, e.g. configs/paper-7b.yaml")
    parser.add_argument(
        "--tflops", type=float, default=400.0, help="sustained bf16 matmul TFLOP/s per GPU (default 400)"
    )
    parser.add_argument(
        "--bandwidth", type=float, default=2000.0, help="sustained memory GB/s per GPU (default 2000)"
    )
    parser.add_argument("--gpu-memory", type=float, default=80.0, help="GB per GPU (default 80)")
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        default=200,
        help="tokens per eval prompt, template included (default 200)",
    )
    parser.add_argument(
        "--train-tokens",
        type=int,
        default=None,
        help="tokens per training example (default train.max_length: every example padded to it)",
    )
    parser.add_argument(
        "--layer-overhead-ms",
        type=float,
        default=0.3,
        help="Python + launch time per layer and step (default 0.3)",
    )
    parser.add_argument("--load-minutes", type=float, default=3.0, help="model load per job (default 3)")


@dataclass(frozen=True)
class Gpu:
    """What one GPU is assumed to sustain."""

    flops: float  # matmul FLOP/s
    bandwidth: float  # memory bytes/s
    memory: float  # bytes
    layer_overhead: float  # seconds per decoder layer and decode step
    load: float  # seconds per job


@dataclass(frozen=True)
class Stage:
    """The estimate of one stage: ``jobs`` jobs of ``gpus`` GPUs, the longest taking ``longest`` s."""

    name: str
    group: str  # resources group whose runtime limits these jobs
    jobs: int
    gpus: int
    seconds: float  # all jobs together, on their GPUs (wall time x GPUs / gpus per job)
    longest: float  # the longest job, seconds

    @property
    def gpu_hours(self) -> float:
        return self.seconds * self.gpus / 3600


def model_shape(name: str, model: dict):
    """The ``ModelShape`` of a configured base model (tiny: from its settings; hf: known ids or a
    local folder's config.json)."""
    import json

    from lite.flops import LLAMA2_7B, LLAMA2_13B, SMOLLM2_135M, ModelShape

    base = model["base"]
    if base["kind"] == "tiny":
        heads = base["heads"]
        return ModelShape(
            hidden=base["hidden"],
            intermediate=base["intermediate"],
            heads=heads,
            kv_heads=base.get("kv_heads", heads),
            head_dim=base["hidden"] // heads,
            vocab=base["vocab"],
            layers=base["layers"],
        )
    if base["kind"] == "smollm2-gguf":
        return SMOLLM2_135M
    known = {"meta-llama/Llama-2-7b-hf": LLAMA2_7B, "meta-llama/Llama-2-13b-hf": LLAMA2_13B}
    source = base.get("source", "")
    if source in known:
        return known[source]
    config = Path(source, "config.json")
    if config.is_file():
        return ModelShape.from_config(argparse.Namespace(**json.loads(config.read_text(encoding="utf-8"))))
    raise InputError(f"models.{name}.base.source: {source!r} is neither a known model id nor a local folder")


def set_size(name: str, source: dict) -> int:
    if source.get("n") is not None:
        return min(source["n"], SOURCE_SIZES.get(source["source"], source["n"]))
    if source["source"] not in SOURCE_SIZES:
        raise InputError(f"data.eval.{name}.n: needed to size a {source['source']} set")
    return SOURCE_SIZES[source["source"]]


def decode_seconds(shape, gpu: Gpu, prompts: int, batch: int, prompt: int, new: int, heads: int = 1) -> float:
    """Greedy decoding of ``prompts`` prompts in batches of ``batch``, ``new`` tokens each (cached).

    Per step the larger of compute (matmuls of the batch) and memory (the weights of every layer
    plus ``heads`` LM heads, and the batch's KV cache so far), plus the per-layer overhead.
    """
    from lite.flops import decode_step_flops, head_flops, layer_flops

    batches = math.ceil(prompts / batch)
    layer_bytes = shape.layer_weights * BF16_BYTES
    head_bytes = shape.hidden * shape.vocab * BF16_BYTES
    prefill = (shape.layers * layer_flops(shape, prompt, prompt) + head_flops(shape)) * batch / gpu.flops
    total = prefill
    for step in range(new):
        context = prompt + step + 1
        flops = decode_step_flops(shape, context, shape.layers, heads) * batch
        read = shape.layers * layer_bytes + heads * head_bytes
        read += batch * context * shape.kv_per_position * BF16_BYTES
        total += max(flops / gpu.flops, read / gpu.bandwidth) + shape.layers * gpu.layer_overhead
    return batches * total


def nocache_seconds(shape, gpu: Gpu, prompts: int, prompt: int, new: int) -> float:
    """The paper's no-cache loop (every token recomputes its prefix through all N layers)."""
    from lite.flops import nocache_flops

    flops = nocache_flops(shape, prompt, [shape.layers] * new, [1] * new)
    return prompts * flops / gpu.flops + new * shape.layers * gpu.layer_overhead


def traced_sets(plan) -> list[tuple[str, str, str]]:
    """(model, tuning, eval set) of every trace the workflow makes: those the alignment tables of
    the drawn artefacts read, and the calibration set of each model with calibrated thresholds."""
    from lite.plan import CALIBRATION_SET

    traced = []
    for artefact in plan.artefacts():
        for path in plan.artefact_inputs(artefact):
            found = re.fullmatch(r"results/([^/]+)/analysis/([^/]+)/([^/]+)/\w+\.csv", path)
            if found:
                traced.append(found.groups())
    for name in plan.models:
        if "dynamic-calibrated" in plan.decoders(name, "lite"):
            traced.append((name, "lite", CALIBRATION_SET))
    return list(dict.fromkeys(traced))


def estimate(config: dict, gpu: Gpu, prompt_tokens: int, train_tokens: int | None) -> list[Stage]:
    """Tune, generate and trace stages of ``config`` (see the module docstring)."""
    from lite.decoders.names import decoder_name
    from lite.flops import head_flops, layer_flops
    from lite.plan import CALIBRATION_SET, Plan

    plan = Plan(config)
    generation, train, resources = plan.generation_settings, config["train"], config["resources"]
    shards = plan.shards
    batch = generation["batch_size"]
    new = generation["max_new_tokens"]
    kv_cache = bool(generation["kv_cache"])
    check = generation["agreement_prompts"]
    sizes = {name: set_size(name, source) for name, source in config["data"]["eval"].items()}
    sizes[CALIBRATION_SET] = set_size(CALIBRATION_SET, config["data"]["calibration"])
    shapes = {name: model_shape(name, model) for name, model in config["models"].items()}

    tune_gpus = max(1, resources.get("tune", {}).get("gpus", 0))
    length = train_tokens or train["max_length"]
    tune = []
    for name in plan.models:
        shape = shapes[name]
        for tuning in plan.tunings(name):
            steps = config["tunings"][tuning].get("max_steps", train["max_steps"])
            examples = steps * train["batch_size"] * train.get("grad_accum", 1) * tune_gpus
            heads = 1 if config["tunings"][tuning]["scheme"] == "final_only" else len(plan.checkpoints(name))
            forward = shape.layers * layer_flops(shape, length, length) + heads * head_flops(shape, length)
            # backward = 2 x forward; wall time spread over the job's GPUs
            tune.append(3 * forward * examples / (gpu.flops * tune_gpus) + gpu.load)

    # One generate job per decoder decodes every eval set (or its shard of each); one trace job per
    # tuning traces the eval sets, another the calibration set (lite.plan, workflow/rules/generate.smk).
    generate, trace = [], []
    for name in plan.models:
        shape = shapes[name]
        for tuning in plan.tunings(name):
            for decoder in map(decoder_name, plan.decoders(name, tuning)):
                reference = decoder.reference(kv_cache)  # what agreement_prompts decode again
                seconds = 0.0
                for evalset in plan.evalsets:
                    prompts = math.ceil(sizes[evalset] / shards)
                    if decoder.cached(kv_cache):
                        seconds += decode_seconds(shape, gpu, prompts, batch, prompt_tokens, new)
                    else:
                        seconds += nocache_seconds(shape, gpu, prompts, prompt_tokens, new)
                    checked = min(check, prompts)
                    if checked and reference == "hf-generate":  # one prompt at a time
                        seconds += decode_seconds(shape, gpu, checked, 1, prompt_tokens, new)
                    elif checked and reference == "nocache":
                        seconds += nocache_seconds(shape, gpu, checked, prompt_tokens, new)
                generate += [seconds + gpu.load] * shards
    traced: dict[tuple[str, str, bool], float] = {}
    for name, tuning, evalset in traced_sets(plan):  # final-layer decoding reading every layer's head
        shape, prompts = shapes[name], math.ceil(sizes[evalset] / shards)
        seconds = decode_seconds(shape, gpu, prompts, batch, prompt_tokens, new, heads=shape.layers)
        job = (name, tuning, evalset == CALIBRATION_SET)
        traced[job] = traced.get(job, 0.0) + seconds
    for seconds in traced.values():
        trace += [seconds + gpu.load] * shards

    def stage(name: str, group: str, jobs: list[float], gpus: int) -> Stage:
        return Stage(name, group, len(jobs), gpus, sum(jobs), max(jobs, default=0.0))

    return [
        stage("tune", "tune", tune, tune_gpus),
        stage("generate", "generate", generate, 1),
        stage("trace", "generate", trace, 1),
    ]


def generation_memory(config: dict, prompt_tokens: int) -> dict[str, float]:
    """Bytes on the GPU of one generation job per model: bf16 weights + the batch's full KV cache."""
    from lite.flags import with_defaults
    from lite.sections import GenerationSettings

    generation = with_defaults(GenerationSettings, config["generation"])
    positions = generation["batch_size"] * (prompt_tokens + generation["max_new_tokens"])
    memory = {}
    for name, model in config["models"].items():
        shape = model_shape(name, model)
        memory[name] = (shape.weights + positions * shape.kv_per_position) * BF16_BYTES
    return memory


def verdict(limit_minutes: float | None, estimate_minutes: float) -> str:
    """``ok`` with at least 50% to spare, ``tight`` below that, ``too short`` under the estimate."""
    if limit_minutes is None:
        return "no limit set"
    if limit_minutes >= 1.5 * estimate_minutes:
        return "ok"
    return "tight" if limit_minutes >= estimate_minutes else "too short"


def report(config: dict, stages: list[Stage], memory: dict[str, float], gpu: Gpu) -> str:
    resources = config["resources"]
    lines = [
        f"{'stage':<9} {'jobs':>5} {'GPUs/job':>8} {'longest job':>12} {'runtime limit':>14} "
        f"{'verdict':<12} {'GPU hours':>9}"
    ]
    for s in stages:
        limit = resources.get(s.group, {}).get("runtime")
        minutes = s.longest / 60
        shown = "-" if limit is None else f"{limit} min"
        lines.append(
            f"{s.name:<9} {s.jobs:>5} {s.gpus:>8} {minutes:>8.1f} min {shown:>14} "
            f"{verdict(limit, minutes) if s.jobs else '-':<12} {s.gpu_hours:>9.1f}"
        )
    lines.append(f"{'total':<9} {sum(s.jobs for s in stages):>5} {'':>8} {'':>12} {'':>14} {'':<12} "
                 f"{sum(s.gpu_hours for s in stages):>9.1f}")  # fmt: skip
    for name, size in memory.items():
        fits = "fits" if size <= 0.9 * gpu.memory else "does NOT fit"
        lines.append(
            f"generation memory, {name}: {size / 1e9:.1f} GB (bf16 weights + full KV cache of a batch) "
            f"{fits} in {gpu.memory / 1e9:.0f} GB"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    import yaml

    for flag in ("tflops", "bandwidth", "gpu_memory", "prompt_tokens"):
        if getattr(args, flag) <= 0:
            raise InputError(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    path = Path(args.configfile)
    if not path.is_file():
        raise InputError(f"--configfile: {path} does not exist")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    gpu = Gpu(
        flops=args.tflops * 1e12,
        bandwidth=args.bandwidth * 1e9,
        memory=args.gpu_memory * 1e9,
        layer_overhead=args.layer_overhead_ms / 1e3,
        load=args.load_minutes * 60,
    )
    stages = estimate(config, gpu, args.prompt_tokens, args.train_tokens)
    print(
        f"{path}: {args.tflops:g} TFLOP/s, {args.bandwidth:g} GB/s, {args.layer_overhead_ms:g} ms per layer "
        f"and step, {args.load_minutes:g} min load per job, {args.prompt_tokens} prompt tokens"
    )
    print(report(config, stages, generation_memory(config, args.prompt_tokens), gpu))
