"""Latency benchmark of the decoders on the same prompts, side by side in one run (``lite latency``).

Decoders (every one greedy, the same prompts, the same number of new tokens), each run by
``lite.decoders.dispatch.decode`` but HF's:

- ``hf-generate``: final-layer decoding by ``model.generate`` with its KV cache (the baseline);
- ``final``: the same tokens from ``lite``'s own cached layer loop (its overhead against HF's);
- ``dynamic-nocache``: the paper's confidence exit, prefix recomputed every token;
- ``dynamic-cached``: the same exits with a KV cache and exact catch-up (``lite.decoders.cached``);
- ``speculative-L{E}``: drafts from layer E verified by layers E+1..N (``lite.decoders.speculative``);
- ``speculative-adaptive``: the same, the draft layer (among the ``draft_layers``) and the number of
  drafts chosen every round from the acceptance seen so far, drafting stopped below the layer's
  dynamic-exit threshold;
- ``hf-layerskip-L{E}``, one per draft layer E: the peer a user would pick, transformers' own
  LayerSkip self-speculation, ``model.generate(..., assistant_early_exit=E)``, greedy, with HF's
  default drafting (up to 20 drafts a round, drafting stopped below a draft confidence of 0.4;
  the draft's own KV cache of layers 1..E). Exact greedy speculation: it must make
  ``hf-generate``'s tokens. Batch size 1 only: HF's assisted generation refuses batches, so the
  table has no row for it at other batch sizes.

Batches: the prompts are decoded in consecutive batches of each of ``batch_sizes`` (left-padded;
HF ``generate`` with its attention mask), the same prompts at every size. Every decoder must make
the same tokens at every batch size as at the smallest, and those of the decoder it reproduces.
``LatencyConfig.runs`` lists the (batch size, decoder) pairs.

Responses are exactly ``max_new_tokens`` long. ``eos="forbid"`` (the default) gives EOS no
probability at any head, as HF's ``min_new_tokens`` does: the model goes on answering, and a
prompt asking for a long answer gets one. ``eos="ignore"`` lets EOS be chosen and decodes on past
it, as vLLM's ``ignore_eos``: whatever follows an answer is text the model was never tuned to
write, which early layers (and drafts) predict badly.

Each repeat times every (batch size, decoder) once, in an order rotated per repeat so slow drifts
of a shared machine hit all alike; the table reports medians and ratios to ``hf-generate``, to our
own final-layer loop (``final``: what exiting buys) and to ``dynamic-nocache`` at the same batch
size, measured in the same run, and the ratio to ``final`` of each decoder's fastest repeat
(``speedup_vs_final_best``). FLOPs, counted in an untimed run: executed (the ``Meter``'s kernel
count for the cached and speculative decoders, padding and states ridden along included;
``lite.flops``' analytic count for the plain loops; for HF's LayerSkip ``lite.flops``' per-block
formulas applied to every forward pass it makes, read by hooks: ``_HFCounter``) and needed (the
accounting of the exits, or the drafts and verifications of speculative decoding, HF's included).
The needed FLOPs of the final layer over a decoder's are the speed-up they imply, its limit; the
measured speed-up over it is the efficiency. ``same_tokens`` holds the checks above.

``widen(model, f)`` makes an f-times wider copy that computes the same function (every residual
coordinate, attention head and MLP unit repeated f times, input weights divided by f): the same
exits and acceptances as the trained model at the cost of an f^2-times larger one. It lets a tiny
model trained in minutes stand in for a model large enough that layer compute, not Python
overhead, dominates; the table names the width of every row.

The module imports torch only inside the functions that measure; the table and the figures are
drawn without it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from lite.io import InputError
from lite.report.metrics import ACCOUNTINGS
from lite.sections import HF_LAYERSKIP, LatencyConfig

# benchmark name -> (decoder name, KV cache) of the decoders that ``decode`` runs
_DECODER_NAMES = {
    "final": ("final", False),
    "dynamic-nocache": ("dynamic", False),
    "dynamic-cached": ("dynamic", True),
}
# the benchmark's run of each reference a decoder reproduces (``DecoderName.reference``)
_REFERENCE_RUNS = {"hf-generate": "hf-generate", "nocache": "dynamic-nocache"}


@dataclass(frozen=True)
class _HF:
    """A decoder of HF ``generate``'s (an entry of ``_decoders``): plain greedy (``early_exit``
    None: ``hf-generate``) or LayerSkip self-speculation drafting from layer ``early_exit``."""

    early_exit: int | None = None


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# ---- measuring (torch from here on, imported lazily) -------------------------------------------


def widen(model, factor: int):
    """A ``factor``-times wider LlamaForCausalLM computing the same function (see the module docstring)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if factor == 1:
        return model
    if model.config.model_type != "llama":  # the copy below is LLaMA's layer layout and arithmetic
        raise ValueError(f"widths other than 1 widen LLaMA models only, not {model.config.model_type!r}")
    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    settings = config.to_dict()
    for key in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        settings.pop(key, None)
    settings.update(
        hidden_size=config.hidden_size * factor,
        intermediate_size=config.intermediate_size * factor,
        num_attention_heads=heads * factor,
        num_key_value_heads=kv_heads * factor,
        head_dim=head_dim,
        tie_word_embeddings=False,  # the embedding and the head are scaled differently
    )
    wide = LlamaForCausalLM(LlamaConfig(**settings)).to(device=model.device, dtype=model.dtype).eval()
    wide.config._attn_implementation = getattr(config, "_attn_implementation", "sdpa")
    wide.generation_config = model.generation_config

    def rows(w):  # every output unit (residual coordinate, MLP unit) repeated f times in place
        return w.repeat_interleave(factor, dim=0)

    def cols(w):  # every input unit repeated f times, divided by f: the same sum
        return w.repeat_interleave(factor, dim=1) / factor

    with torch.no_grad():
        old, new = model.model, wide.model
        new.embed_tokens.weight.copy_(old.embed_tokens.weight.repeat_interleave(factor, dim=1))
        # the RMS of a vector with every coordinate repeated is unchanged, so the norms only repeat
        new.norm.weight.copy_(old.norm.weight.repeat_interleave(factor))
        wide.lm_head.weight.copy_(cols(model.lm_head.weight))
        for a, b in zip(old.layers, new.layers, strict=True):
            b.input_layernorm.weight.copy_(a.input_layernorm.weight.repeat_interleave(factor))
            b.post_attention_layernorm.weight.copy_(
                a.post_attention_layernorm.weight.repeat_interleave(factor)
            )
            # f whole copies of the heads, one after the other: query head n still reads kv head n // G
            for name in ("q_proj", "k_proj", "v_proj"):
                getattr(b.self_attn, name).weight.copy_(
                    cols(getattr(a.self_attn, name).weight).repeat(factor, 1)
                )
            b.self_attn.o_proj.weight.copy_(rows(a.self_attn.o_proj.weight.repeat(1, factor) / factor))
            for name in ("gate_proj", "up_proj", "down_proj"):
                getattr(b.mlp, name).weight.copy_(rows(cols(getattr(a.mlp, name).weight)))
    return wide


def widen_gates(document: dict, factor: int) -> dict:
    """An exit-gates document (``lite.probes``) for ``widen(model, factor)``: the same gate decisions.

    The wide model's states are the narrow ones with every coordinate repeated ``factor`` times, and
    so are its normed states (the RMS of a repeated vector is unchanged). A probe's weights are
    repeated and divided by ``factor`` (the same dot product); saturation's cosine is unchanged.
    """
    if factor == 1:
        return document
    wide = copy.deepcopy(document)
    if "hidden" in wide:
        wide["hidden"] *= factor
    for entry in wide["layers"].values():
        entry["probe"]["weight"] = [w / factor for w in entry["probe"]["weight"] for _ in range(factor)]
    return wide


@contextlib.contextmanager
def forbidden(model, token_ids: Collection[int]):
    """Within the block, ``token_ids`` get logit -inf at the LM head, for every decoder alike."""
    ids = sorted(set(token_ids))

    def mask(module, args, logits):
        logits[..., ids] = float("-inf")
        return logits

    handle = model.lm_head.register_forward_hook(mask) if ids else None
    try:
        yield model
    finally:
        if handle is not None:
            handle.remove()


class _HFCounter:
    """Work and drafting of one batch of HF ``generate``, counted from the forward passes it makes
    (hooks on the decoder stack and the LM head): per pass, the layers it ran (HF's early-exit
    assistant lowers ``config.num_hidden_layers`` to E while it drafts), the positions it fed and
    those already cached, and the positions the head was applied to, each counted with
    ``lite.flops``' formulas (matmuls; norms and embeddings are not counted).

    ``kernel``: whole (queries x keys) rectangles, as the ``Meter``'s kernel count; ``causal``:
    every query against its causal keys, as ``kvcache_flops`` (of plain greedy decoding it is
    exactly that). ``rounds``: full-depth passes (verifications; for plain ``generate`` every
    token's); ``proposed``: draft passes, each proposing one token. Positions are counted per row,
    left padding included: exact at batch size 1, where LayerSkip runs.
    """

    def __init__(self, model):
        from lite.flops import ModelShape

        self.model = model
        self.base = getattr(model, model.base_model_prefix)
        self.shape = ModelShape.from_config(model.config)
        self.kernel = self.causal = self.rounds = self.proposed = 0

    def _layers(self, module, args, kwargs) -> None:
        from lite.flops import layer_flops

        fed = kwargs.get("input_ids")
        if fed is None:
            fed = kwargs.get("inputs_embeds")
        if fed is None:
            fed = args[0]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        rows, queries = fed.shape[0], fed.shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        layers = self.base.config.num_hidden_layers
        shape = self.shape
        self.kernel += rows * layers * layer_flops(shape, queries, past + queries)
        # query i (0-based) of the block sits at position past + i and sees past + i + 1 keys
        keys = queries * past + queries * (queries + 1) // 2
        per_key = 4 * shape.heads * shape.head_dim
        self.causal += rows * layers * (2 * shape.layer_weights * queries + per_key * keys)
        if layers < shape.layers:
            self.proposed += rows
        else:
            self.rounds += rows

    def _head(self, module, args, logits) -> None:
        from lite.flops import head_flops

        flops = logits.shape[0] * head_flops(self.shape, logits.shape[-2])
        self.kernel += flops
        self.causal += flops

    @contextlib.contextmanager
    def counting(self):
        handles = [
            self.base.register_forward_pre_hook(self._layers, with_kwargs=True),
            self.model.lm_head.register_forward_hook(self._head),
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


def _decoders(
    model,
    checkpoints: Sequence[int],
    thresholds: dict[int, float],
    config: LatencyConfig,
    exits: Mapping[str, dict[int, float]],
    gates: dict | None,
) -> dict:
    """benchmark name -> (its ``DecoderSpec``, KV cache), or ``_HF`` for HF ``generate``'s.
    ``exits``: the thresholds of each of ``config.exits``; ``gates``: the exit-gates document
    their ``-probe`` / ``-saturation`` options read."""
    from lite.decoders.blocks import n_layers
    from lite.decoders.specs import decoder_from_name

    def spec(name: str):
        return decoder_from_name(
            name,
            checkpoints,
            thresholds,
            n_layers=n_layers(model),
            draft_tokens=config.draft_tokens,
            draft_threshold=config.draft_threshold,
            draft_layers=config.draft_layers,
        )

    table = {}
    for name in config.decoders():
        if name in config.exits:  # a workflow decoder, with its own thresholds, always cached
            if name not in exits:
                raise InputError(f"bench exit {name!r}: no thresholds given (--exit-thresholds)")
            named = decoder_from_name(
                name, checkpoints, exits[name], n_layers=n_layers(model), gates=gates, gates_source="--gates"
            )
            table[name] = (named, True)
        elif name == "hf-generate":
            table[name] = _HF()
        elif name.startswith(HF_LAYERSKIP):
            layer = int(name.removeprefix(HF_LAYERSKIP))
            if not 1 <= layer < n_layers(model):
                raise ValueError(f"{name!r}: layer {layer} is outside 1..{n_layers(model) - 1}")
            table[name] = _HF(layer)
        else:
            decoder, kv_cache = _DECODER_NAMES.get(name, (name, False))
            table[name] = (spec(decoder), kv_cache)
    return table


def _run(
    model, decoder, prompts: Sequence[list[int]], batch: int, pad_id: int, new: int, metered: bool
) -> list:
    """One decoder (an entry of ``_decoders``) on ``prompts``, ``batch`` at a time: per prompt its
    ``Generation`` and, in a ``metered`` run, the ``Meter`` of its batch for a decoder that has one
    (HF's LayerSkip: its ``_HFCounter``; else None). Timed runs go without: counting costs time."""
    from lite.decoders.agreement import hf_greedy_batch
    from lite.decoders.blocks import n_layers
    from lite.decoders.dispatch import decode
    from lite.decoders.generation import Acceptance, Generation
    from lite.decoders.slots import Meter
    from lite.flops import ModelShape

    common = {"max_new_tokens": new, "eos_ids": set(), "pad_id": pad_id}
    runs = []
    for start in range(0, len(prompts), batch):
        chunk = list(prompts[start : start + batch])
        if isinstance(decoder, _HF):  # HF generate: every token the final layer's
            layerskip = decoder.early_exit is not None
            if layerskip and len(chunk) > 1:
                raise ValueError("HF's LayerSkip (assisted generation) decodes one prompt at a time")
            counter = _HFCounter(model) if metered and layerskip else None
            with counter.counting() if counter is not None else contextlib.nullcontext():
                responses = hf_greedy_batch(model, chunk, assistant_early_exit=decoder.early_exit, **common)
            for tokens in responses:  # heads: the final layer's, one per token (LayerSkip's: its meter)
                gen = Generation(tokens, exit_layers=[n_layers(model)] * len(tokens), heads=[1] * len(tokens))
                if counter is not None:  # every verification makes its accepted drafts and one more
                    accepted = len(tokens) - counter.rounds
                    gen.acceptance = Acceptance(counter.proposed, accepted, counter.rounds)
                runs.append((gen, counter))
            continue
        spec, kv_cache = decoder
        meter = None
        if metered and spec.named.meters(kv_cache):
            meter = Meter(ModelShape.from_config(model.config), len(chunk))
        runs.extend(
            (gen, meter) for gen in decode(model, chunk, spec, kv_cache=kv_cache, meter=meter, **common)
        )
    return runs


def _reference_run(decoder) -> str | None:
    """The benchmark run whose tokens ``decoder`` (an entry of ``_decoders``) must reproduce exactly
    (None: no such promise)."""
    if isinstance(decoder, _HF):  # HF generate is the reference itself; LayerSkip reproduces it
        return None if decoder.early_exit is None else "hf-generate"
    spec, kv_cache = decoder
    reference = spec.named.reference(kv_cache)
    return None if reference is None else _REFERENCE_RUNS[reference]


def _kind(decoder) -> str:
    """How a benchmark decoder (an entry of ``_decoders``) works: ``speculative`` (HF's LayerSkip
    too), ``final`` (HF ``generate`` too), or its ``DecoderSpec``'s kind."""
    if isinstance(decoder, _HF):
        return "final" if decoder.early_exit is None else "speculative"
    return decoder[0].kind


def _flops(decoder, runs: list, accounted: dict[str, float]) -> tuple[int, int]:
    """What a decoder (an entry of ``_decoders``) did: (executed, needed) FLOPs.

    Executed: its meters' kernel count (padding, masked keys, states ridden along included), else
    ``lite.flops``' accounting. Needed: the accounting of its exits as it runs (``accounted``, its
    ``_accountings``: the KV-cache one, the paper's for the no-cache loop), for speculative decoding
    the meters' causal count (the drafts and verifications it makes are its work; HF's LayerSkip: its
    ``_HFCounter``s'). Their quotient to the final layer's needed FLOPs is the speed-up the FLOPs
    imply.
    """
    counters = list({id(c): c for _, c in runs if isinstance(c, _HFCounter)}.values())
    if counters:  # HF's LayerSkip
        return sum(c.kernel for c in counters), sum(c.causal for c in counters)
    # HF generate and every decoder of lite's but the paper's no-cache loop keep a KV cache
    cached = isinstance(decoder, _HF) or decoder[0].named.cached(decoder[1])
    needed = accounted["kvcache" if cached else "nocache"]
    meters = list({id(meter): meter for _, meter in runs if meter is not None}.values())
    if not meters:
        return needed, needed
    executed = sum(meter.kernel for meter in meters)
    if _kind(decoder) == "speculative":  # meters were filled: a decoder of lite's ran, not HF's
        needed = sum(int(meter.causal.sum()) for meter in meters)
    return executed, needed


def _accountings(model, decoder, prompts: Sequence[list[int]], runs: list) -> dict[str, float]:
    """Both of ``lite.flops``' accountings of a decoder's exits on ``prompts`` (``generation_flops``:
    its options' gates and copies included; HF ``generate``: the final layer's), NaN for the
    speculative decoders, whose work is not a choice of exits."""
    from lite.flops import ModelShape, generation_flops

    if _kind(decoder) == "speculative":
        return {"nocache": math.nan, "kvcache": math.nan}
    shape = ModelShape.from_config(model.config)
    spec = None if isinstance(decoder, _HF) else decoder[0]
    options = {} if spec is None else {"fill": spec.fill, "gate": spec.gate}
    totals = {"nocache": 0, "kvcache": 0}
    for prompt, (gen, _) in zip(prompts, runs, strict=True):
        counts = generation_flops(
            shape, len(prompt), gen.exit_layers, gen.heads, gate_checks=gen.gate_checks, **options
        )
        for key in totals:
            totals[key] += counts[key]
    return totals


def _summary(decoder, gens: list) -> dict:
    """The table's decoder-specific columns (``decoder``: an entry of ``_decoders``): exits of the
    dynamic ones, drafting of speculative ones (HF's LayerSkip: its acceptance is counted in the
    metered run only, so ``gens`` must come from that)."""
    kind = _kind(decoder)
    if kind == "dynamic":
        return {"mean_exit_layer": statistics.mean([layer for g in gens for layer in g.exit_layers])}
    if kind == "speculative":
        proposed = sum(g.acceptance.proposed for g in gens)
        accepted = sum(g.acceptance.accepted for g in gens)
        return {
            "acceptance": accepted / proposed if proposed else float("nan"),
            "tokens_per_round": sum(len(g.token_ids) for g in gens) / sum(g.acceptance.rounds for g in gens),
        }
    return {}


def measure(
    model,
    prompts: Sequence[list[int]],
    checkpoints: Sequence[int],
    thresholds: dict[int, float],
    config: LatencyConfig,
    pad_id: int,
    label: str,
    progress: Callable[[str], None] | None = None,
    eos_ids: Collection[int] = (),
    exits: Mapping[str, dict[int, float]] | None = None,
    gates: dict | None = None,
) -> pd.DataFrame:
    """Time every decoder on ``prompts``; one row per (decoder, repeat) with tokens, seconds, FLOPs.

    ``eos_ids`` are the model's stop tokens, forbidden when ``config.eos == "forbid"``; ``exits``
    and ``gates``: the thresholds and exit gates of ``config.exits``.
    """
    decoders = _decoders(model, checkpoints, thresholds, config, exits or {}, gates)
    with forbidden(model, eos_ids if config.eos == "forbid" else ()):
        return _measure(model, prompts, decoders, config, pad_id, label, progress)


def _measure(model, prompts, decoders, config, pad_id, label, progress) -> pd.DataFrame:
    import torch

    torch.manual_seed(config.seed)
    new = config.max_new_tokens
    runs = config.runs()
    # One untimed run per decoder and batch size: it counts the FLOPs and pays for first-call
    # allocations and lazy imports. The timed runs below carry no meter, as HF generate carries none.
    counted = {}
    for batch, name in runs:
        if progress is not None:
            progress(f"{label} batch {batch} counting: {name}")
        counted[batch, name] = _run(model, decoders[name], prompts, batch, pad_id, new, metered=True)
    outputs = {key: [gen.token_ids for gen, _ in value] for key, value in counted.items()}
    accountings = {
        (batch, name): _accountings(model, decoders[name], prompts, counted[batch, name])
        for batch, name in runs
    }
    flops = {key: _flops(decoders[key[1]], counted[key], accountings[key]) for key in runs}
    # deterministic, so read once, off the metered run (the only one where HF's LayerSkip counts)
    summaries = {key: _summary(decoders[key[1]], [gen for gen, _ in value]) for key, value in counted.items()}
    rows = []
    for repeat in range(config.repeats):
        order = runs[repeat % len(runs) :] + runs[: repeat % len(runs)]
        for batch, name in order:
            if progress is not None:
                progress(f"{label} repeat {repeat + 1}/{config.repeats} batch {batch}: {name}")
            start = time.perf_counter()
            timed = _run(model, decoders[name], prompts, batch, pad_id, new, metered=False)
            seconds = time.perf_counter() - start
            gens = [gen for gen, _ in timed]
            tokens = [gen.token_ids for gen in gens]
            executed, needed = flops[batch, name]
            rows.append(
                {
                    "model": label,
                    "batch": batch,
                    "decoder": name,
                    "repeat": repeat,
                    "seconds": seconds,
                    "tokens": sum(len(t) for t in tokens),
                    "flops": executed,
                    "flops_needed": needed,
                    **{f"flops_{key}": value for key, value in accountings[batch, name].items()},
                    "same_tokens": tokens == outputs[batch, name],  # deterministic, metered or not
                    **summaries[batch, name],
                }
            )
    frame = pd.DataFrame(rows)
    for batch, name in runs:  # equal to the decoder it must reproduce, and to itself at any batch size
        reference = _reference_run(decoders[name])
        smallest = min(b for b, n in runs if n == name)
        same = outputs[batch, name] == outputs[smallest, name]
        if reference is not None:
            same = same and outputs[batch, name] == outputs[batch, reference]
        frame.loc[(frame["decoder"] == name) & (frame["batch"] == batch), "same_tokens"] &= same
    return frame


def acceptance(
    models: dict[str, object],
    prompts: Sequence[list[int]],
    draft_tokens: int,
    max_new_tokens: int,
    pad_id: int,
    eos_ids: Collection[int],
    eos: str = "forbid",
) -> pd.DataFrame:
    """Acceptance rate of self-speculative decoding per model and draft layer (every layer below N).

    Measured twice: responses ending at EOS (what the model really answers) and fixed-length ones
    with EOS forbidden or ignored (``eos``, as in the latency table).
    """
    from lite.decoders.blocks import n_layers
    from lite.decoders.specs import Draft
    from lite.decoders.speculative import speculative

    rows = []
    for name, model in models.items():
        for mode, stops in (("until-eos", set(eos_ids)), ("fixed-length", set())):
            banned = eos_ids if mode == "fixed-length" and eos == "forbid" else ()
            for layer in range(1, n_layers(model)):
                with forbidden(model, banned):
                    gens = speculative(
                        model,
                        list(prompts),
                        Draft(layer, draft_tokens),
                        max_new_tokens=max_new_tokens,
                        eos_ids=stops,
                        pad_id=pad_id,
                    )
                stats = [g.acceptance for g in gens]
                proposed, accepted = sum(s.proposed for s in stats), sum(s.accepted for s in stats)
                tokens = sum(len(g.token_ids) for g in gens)
                rows.append(
                    {
                        "model": name,
                        "responses": mode,
                        "draft_layer": layer,
                        "draft_tokens": draft_tokens,
                        "tokens": tokens,
                        "proposed": proposed,
                        "acceptance": accepted / proposed if proposed else float("nan"),
                        "tokens_per_round": tokens / sum(s.rounds for s in stats),
                    }
                )
    return pd.DataFrame(rows)


# ---- table and figure (no torch) ---------------------------------------------------------------


def summarize(raw: pd.DataFrame, threads: int) -> pd.DataFrame:
    """Medians per (model, batch, decoder) and the ratios measured in the same run, at the same batch."""
    if "batch" not in raw:  # a table of batch-1 runs only
        raw = raw.assign(batch=1)
    if "flops_needed" not in raw:
        raw = raw.assign(flops_needed=raw["flops"])
    extras = [c for c in ("mean_exit_layer", "acceptance", "tokens_per_round") if c in raw]
    keys = ["model", "batch", "decoder"]
    grouped = raw.groupby(keys, sort=False)
    table = grouped.agg(
        tokens=("tokens", "first"),
        seconds=("seconds", "median"),
        seconds_min=("seconds", "min"),
        seconds_max=("seconds", "max"),
        repeats=("seconds", "size"),
        flops=("flops", "first"),
        flops_needed=("flops_needed", "first"),
        **{f"flops_{a}": (f"flops_{a}", "first") for a in ACCOUNTINGS if f"flops_{a}" in raw},
        same_tokens=("same_tokens", "all"),
        **{c: (c, "first") for c in extras},
    ).reset_index()
    table["tokens_per_s"] = table["tokens"] / table["seconds"]

    def at_same_batch(decoder: str, column: str) -> pd.Series:
        reference = table[table["decoder"] == decoder].set_index(["model", "batch"])[column]
        return pd.Series(
            [
                reference.get((m, b), float("nan"))
                for m, b in zip(table["model"], table["batch"], strict=True)
            ],
            index=table.index,
        )

    table["speedup_vs_hf"] = table["tokens_per_s"] / at_same_batch("hf-generate", "tokens_per_s")
    # Against our own final-layer loop: what exiting buys, without the per-step overhead our loop
    # saves over HF generate whatever the decoder does.
    table["speedup_vs_final"] = table["tokens_per_s"] / at_same_batch("final", "tokens_per_s")
    table["speedup_vs_nocache"] = table["tokens_per_s"] / at_same_batch("dynamic-nocache", "tokens_per_s")
    # The same from each decoder's fastest repeat: a run of 0.3-2 s is slowed, never sped up, by
    # whatever else the machine does, so the best of the repeats is the least disturbed (on a quiet
    # 2-core machine five repeats of one decoder spread by 14-25 %, up to 80 % when one is hit).
    table["tokens_per_s_best"] = table["tokens"] / table["seconds_min"]
    table["speedup_vs_final_best"] = table["tokens_per_s_best"] / at_same_batch("final", "tokens_per_s_best")
    table["flops_vs_final"] = table["flops"] / at_same_batch("hf-generate", "flops")
    # The speed limit beside the speed: the speed-up over HF generate that the FLOPs the decoder
    # needs would give, and the share of it measured (the rest is head checks, catch-up passes,
    # states ridden along, per-layer and per-step overhead, which the needed FLOPs do not count).
    table["flops_speedup"] = at_same_batch("hf-generate", "flops_needed") / table["flops_needed"]
    table["efficiency"] = table["speedup_vs_hf"] / table["flops_speedup"]
    # both accountings of the exits, as the generation records and table1 count them
    saved = []
    for a in ACCOUNTINGS:
        if f"flops_{a}" in table:
            table[f"saved_pct_{a}"] = 100.0 * (
                1.0 - table[f"flops_{a}"] / at_same_batch("final", f"flops_{a}")
            )
            saved.append(f"saved_pct_{a}")
    table["threads"] = threads
    columns = [
        "model",
        "batch",
        "decoder",
        "tokens",
        "seconds",
        "tokens_per_s",
        "speedup_vs_hf",
        "speedup_vs_final",
        "speedup_vs_final_best",
        "speedup_vs_nocache",
        "flops",
        "flops_vs_final",
        "flops_needed",
        "flops_speedup",
        "efficiency",
        *[f"flops_{a}" for a in ACCOUNTINGS if f"flops_{a}" in table],
        *saved,
        "same_tokens",
        *extras,
        "seconds_min",
        "seconds_max",
        "repeats",
        "threads",
    ]
    return table[columns]


def draw(table: pd.DataFrame, out: str | os.PathLike):
    """Tokens/s and FLOPs (relative to final) per decoder at the smallest batch, one column of
    panels per model."""
    from lite.report.style import FINAL_COLOR, GRID, OTHER_COLOR, grid, save_figure, tuning_color

    if "batch" in table:
        table = table[table["batch"] == table["batch"].min()]
    models = list(dict.fromkeys(table["model"]))
    fig, axes = grid(2, len(models), width=4.2, height=2.8)
    for col, model in enumerate(models):
        part = table[table["model"] == model]
        names = list(part["decoder"])
        colors = [
            FINAL_COLOR
            if n in ("hf-generate", "final")
            else OTHER_COLOR  # HF's LayerSkip: the peer
            if n.startswith(HF_LAYERSKIP)
            else tuning_color("lite")
            for n in names
        ]
        speed, cost = axes[0, col], axes[1, col]
        speed.bar(names, part["speedup_vs_hf"], color=colors)
        if "flops_speedup" in part:  # the speed-up the FLOPs imply: a dashed cap over each bar
            speed.hlines(part["flops_speedup"], [x - 0.4 for x in range(len(names))],
                         [x + 0.4 for x in range(len(names))], colors="black", linestyles="dashed",
                         linewidth=0.8, label="FLOPs-implied")  # fmt: skip
        speed.axhline(1.0, color="grey", linewidth=0.8)
        top = max(part["speedup_vs_hf"].max(), part.get("flops_speedup", part["speedup_vs_hf"]).max(), 1.0)
        speed.set_ylim(0, 1.25 * top)  # room for the labels
        speed.set_title(model, fontsize=9)
        speed.set_ylabel("tokens/s relative to HF generate")
        cost.bar(names, part["flops_vs_final"], color=colors)
        cost.axhline(1.0, color="grey", linewidth=0.8)
        cost.set_yscale("log")
        cost.set_ylabel("FLOPs relative to final")
        for ax in (speed, cost):
            ax.grid(**GRID)
            ax.tick_params(axis="x", labelrotation=40, labelsize=7)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
        for x, (ratio, rate) in enumerate(zip(part["speedup_vs_hf"], part["tokens_per_s"], strict=True)):
            speed.annotate(f"{ratio:.2f}x\n{rate:.0f}/s", (x, ratio), ha="center", va="bottom", fontsize=6)
    return save_figure(fig, out)


def draw_throughput(table: pd.DataFrame, out: str | os.PathLike):
    """Tokens/s against batch size per decoder, one panel per model; dashed in the decoder's colour,
    the limit its needed FLOPs imply (HF generate's tokens/s times ``flops_speedup``)."""
    import matplotlib.pyplot as plt

    from lite.report.style import GRID, grid, save_figure

    models = list(dict.fromkeys(table["model"]))
    decoders = list(dict.fromkeys(table["decoder"]))
    palette = plt.get_cmap("tab20").colors  # more decoders than tab10 has colours; cycled beyond 20
    colors = {decoder: palette[i % len(palette)] for i, decoder in enumerate(decoders)}
    fig, axes = grid(1, len(models), width=4.6, height=3.4)
    for col, model in enumerate(models):
        ax = axes[0, col]
        part = table[table["model"] == model]
        hf = part[part["decoder"] == "hf-generate"].set_index("batch")["tokens_per_s"]
        for decoder in decoders:
            rows = part[part["decoder"] == decoder].sort_values("batch")
            color = colors[decoder]
            ax.plot(
                rows["batch"], rows["tokens_per_s"], marker="o", color=color, label=decoder, linewidth=1.2
            )
            if decoder not in ("hf-generate", "final", "dynamic-nocache"):
                limit = rows["batch"].map(hf) * rows["flops_speedup"]
                ax.plot(rows["batch"], limit, linestyle="dashed", color=color, linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(part["batch"].unique()))
        ax.set_xticklabels([str(b) for b in sorted(part["batch"].unique())])
        ax.set_xlabel("batch size")
        ax.set_ylabel("tokens/s (dashed: FLOPs-implied limit)")
        ax.set_title(model, fontsize=9)
        ax.grid(**GRID)
    axes[0, -1].legend(fontsize=6, loc="upper left")
    return save_figure(fig, out)
