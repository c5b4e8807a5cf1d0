"""Latency benchmark of the decoders on the same prompts, side by side in one run (``lite bench``).

Decoders (every one greedy, the same prompts, the same number of new tokens):

- ``hf-generate``: final-layer decoding by ``model.generate`` with its KV cache (the baseline);
- ``final``: the same tokens from ``lite``'s own cached layer loop (its overhead against HF's);
- ``dynamic-nocache``: the paper's confidence exit, prefix recomputed every token;
- ``dynamic-cached``: the same exits with a KV cache and exact catch-up (``lite.decoders.cached``);
- ``speculative-L{E}``: drafts from layer E verified by layers E+1..N (``lite.decoders.speculative``).

Responses are exactly ``max_new_tokens`` long. ``eos="forbid"`` (the default) gives EOS no
probability at any head, as HF's ``min_new_tokens`` does: the model goes on answering, and a
prompt asking for a long answer gets one. ``eos="ignore"`` lets EOS be chosen and decodes on past
it, as vLLM's ``ignore_eos``: whatever follows an answer is text the model was never tuned to
write, which early layers (and drafts) predict badly.

Each repeat times every decoder once, in an order rotated per repeat so slow drifts of a shared
machine hit all decoders alike; the table reports medians and ratios to ``hf-generate`` and to
``dynamic-nocache`` measured in the same run. FLOPs are what each decoder executes: analytic
(``lite.flops``) for the plain loops, the ``Meter``'s count for the cached and speculative ones.
``same_tokens`` checks each decoder against the one whose output it must equal.

``widen(model, f)`` makes an f-times wider copy that computes the same function (every residual
coordinate, attention head and MLP unit repeated f times, input weights divided by f): the same
exits and acceptances as the trained model at the cost of an f^2-times larger one. It lets a tiny
model trained in minutes stand in for a model large enough that layer compute, not Python
overhead, dominates; the table names the width of every row.

The module imports torch only inside the functions that measure; the table and the figure are
drawn without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import pandas as pd

DECODERS = ("hf-generate", "final", "dynamic-nocache", "dynamic-cached")  # + speculative-L{E}
EOS_MODES = ("forbid", "ignore")


def reference_of(decoder: str) -> str | None:
    """The decoder whose tokens ``decoder`` must reproduce exactly (None: no such promise)."""
    if decoder == "final" or decoder.startswith("speculative-"):
        return "hf-generate"
    return "dynamic-nocache" if decoder == "dynamic-cached" else None


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one benchmark run."""

    prompts: int = 4  # eval records used (the first ones); each is decoded on its own (batch 1)
    max_new_tokens: int = 256  # tokens per response, the same for every decoder (see ``eos``)
    repeats: int = 3  # timed runs per decoder; the table reports the median
    draft_layers: tuple[int, ...] = (2,)  # speculative draft layers E
    draft_tokens: int = 4  # drafts per verification round
    draft_threshold: float | None = None  # stop drafting below this draft confidence (None: always k)
    widths: tuple[int, ...] = (1,)  # widen factors to measure (1 = the model as trained)
    threads: int = 1  # torch intra-op threads (the machine is shared; 1 keeps timings steady)
    seed: int = 0
    eos: str = "forbid"  # forbid: EOS never chosen (HF's min_new_tokens) | ignore: decode on past it

    def __post_init__(self) -> None:
        for name in ("prompts", "max_new_tokens", "repeats", "draft_tokens", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BenchConfig.{name} must be an integer >= 1, got {value!r}")
        if not self.draft_layers or any(layer < 1 for layer in self.draft_layers):
            raise ValueError(f"BenchConfig.draft_layers must be layers >= 1, got {self.draft_layers!r}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"BenchConfig.widths must be factors >= 1, got {self.widths!r}")
        if self.eos not in EOS_MODES:
            raise ValueError(f"BenchConfig.eos must be one of {', '.join(EOS_MODES)}, got {self.eos!r}")
        if self.draft_threshold is not None and not 0.0 <= self.draft_threshold <= 1.0:
            raise ValueError(f"BenchConfig.draft_threshold must be in [0, 1], got {self.draft_threshold!r}")


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


@dataclass
class _Outcome:
    tokens: list[list[int]]
    flops: int
    extra: dict = dataclasses.field(default_factory=dict)


def _decoders(
    model,
    checkpoints: Sequence[int],
    thresholds: dict[int, float],
    config: BenchConfig,
    pad_id: int,
    metered: bool,
):
    """name -> function(prompts) -> _Outcome, each decoding prompt by prompt (batch 1).

    ``metered``: the cached and speculative decoders count their FLOPs as they go (a ``Meter``),
    which costs time; timed runs go without (their FLOPs are 0 then).
    """
    from lite.decoders.blocks import n_layers
    from lite.decoders.cached import Meter, exit_cached
    from lite.decoders.engines import exit_nocache, greedy_cached
    from lite.decoders.policies import ThresholdPolicy
    from lite.decoders.speculative import Draft, speculative
    from lite.decoding import hf_greedy
    from lite.flops import ModelShape, kvcache_flops, nocache_flops

    shape = ModelShape.from_config(model.config)
    total = n_layers(model)
    cps = sorted({*checkpoints, total})
    policy = [thresholds[c] for c in cps[:-1]]
    new = config.max_new_tokens
    common = {"max_new_tokens": new, "eos_ids": set(), "pad_id": pad_id}

    def final_flops(prompts) -> int:
        return sum(kvcache_flops(shape, len(p), [total] * new, [1] * new) for p in prompts)

    def hf(prompts):
        return _Outcome([hf_greedy(model, p, **common) for p in prompts], final_flops(prompts))

    def final(prompts):
        gens = [greedy_cached(model, [p], total, **common)[0] for p in prompts]
        return _Outcome([g.token_ids for g in gens], final_flops(prompts))

    def nocache(prompts):
        gens = [exit_nocache(model, [p], cps, ThresholdPolicy(policy), **common)[0] for p in prompts]
        flops = sum(
            nocache_flops(shape, len(p), g.exit_layers, g.heads) for p, g in zip(prompts, gens, strict=True)
        )
        return _Outcome([g.token_ids for g in gens], flops, _exit_summary(gens))

    def meter():
        return Meter(shape, 1) if metered else None

    def cached(prompts):
        gens, flops = [], 0
        for p in prompts:
            count = meter()
            gens.append(exit_cached(model, [p], cps, ThresholdPolicy(policy), meter=count, **common)[0])
            flops += count.kernel if metered else 0
        return _Outcome([g.token_ids for g in gens], flops, _exit_summary(gens))

    def spec(layer: int) -> Callable:
        draft = Draft(layer, config.draft_tokens, config.draft_threshold)

        def run(prompts):
            gens, flops, proposed, accepted, rounds = [], 0, 0, 0, 0
            for p in prompts:
                count = meter()
                (gen,), (stat,) = speculative(model, [p], draft, meter=count, **common)
                gens.append(gen)
                flops += count.kernel if metered else 0
                proposed, accepted, rounds = (
                    proposed + stat.proposed,
                    accepted + stat.accepted,
                    rounds + stat.rounds,
                )
            extra = {
                "acceptance": accepted / proposed if proposed else float("nan"),
                "tokens_per_round": sum(len(g.token_ids) for g in gens) / rounds,
            }
            return _Outcome([g.token_ids for g in gens], flops, extra)

        return run

    table = {"hf-generate": hf, "final": final, "dynamic-nocache": nocache, "dynamic-cached": cached}
    for layer in config.draft_layers:
        if not layer < total:
            raise ValueError(f"draft layer {layer} must be below the final layer {total}")
        table[f"speculative-L{layer}"] = spec(layer)
    return table


def _exit_summary(gens) -> dict:
    layers = [layer for g in gens for layer in g.exit_layers]
    return {"mean_exit_layer": statistics.mean(layers)}


def measure(
    model,
    prompts: Sequence[list[int]],
    checkpoints: Sequence[int],
    thresholds: dict[int, float],
    config: BenchConfig,
    pad_id: int,
    label: str,
    progress: Callable[[str], None] | None = None,
    eos_ids: Collection[int] = (),
) -> pd.DataFrame:
    """Time every decoder on ``prompts``; one row per (decoder, repeat) with tokens, seconds, FLOPs.

    ``eos_ids`` are the model's stop tokens, forbidden when ``config.eos == "forbid"``.
    """
    with forbidden(model, eos_ids if config.eos == "forbid" else ()):
        return _measure(model, prompts, checkpoints, thresholds, config, pad_id, label, progress)


def _measure(model, prompts, checkpoints, thresholds, config, pad_id, label, progress) -> pd.DataFrame:
    import torch

    torch.manual_seed(config.seed)
    decoders = _decoders(model, checkpoints, thresholds, config, pad_id, metered=False)
    names = list(decoders)
    # One untimed run per decoder: it counts the FLOPs and pays for first-call allocations and
    # lazy imports. The timed runs below carry no meter, as HF generate carries none.
    counted = {name: run(list(prompts)) for name, run in _decoders(
        model, checkpoints, thresholds, config, pad_id, metered=True
    ).items()}  # fmt: skip
    rows, outputs = [], {name: outcome.tokens for name, outcome in counted.items()}
    for repeat in range(config.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            if progress is not None:
                progress(f"{label} repeat {repeat + 1}/{config.repeats}: {name}")
            start = time.perf_counter()
            outcome = decoders[name](list(prompts))
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "model": label,
                    "decoder": name,
                    "repeat": repeat,
                    "seconds": seconds,
                    "tokens": sum(len(t) for t in outcome.tokens),
                    "flops": counted[name].flops,
                    "same_tokens": outcome.tokens == outputs[name],  # deterministic, metered or not
                    **outcome.extra,
                }
            )
    frame = pd.DataFrame(rows)
    for name in names:  # equal to the decoder it must reproduce (and to itself across repeats)
        reference = reference_of(name)
        if reference is not None:
            frame.loc[frame["decoder"] == name, "same_tokens"] &= outputs[name] == outputs[reference]
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
    from lite.decoders.speculative import Draft, speculative

    rows = []
    for name, model in models.items():
        for mode, stops in (("until-eos", set(eos_ids)), ("fixed-length", set())):
            banned = eos_ids if mode == "fixed-length" and eos == "forbid" else ()
            for layer in range(1, n_layers(model)):
                with forbidden(model, banned):
                    gens, stats = speculative(
                        model,
                        list(prompts),
                        Draft(layer, draft_tokens),
                        max_new_tokens=max_new_tokens,
                        eos_ids=stops,
                        pad_id=pad_id,
                    )
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
    """Medians per (model, decoder) and the ratios measured in the same run."""
    extras = [c for c in ("mean_exit_layer", "acceptance", "tokens_per_round") if c in raw]
    grouped = raw.groupby(["model", "decoder"], sort=False)
    table = grouped.agg(
        tokens=("tokens", "first"),
        seconds=("seconds", "median"),
        seconds_min=("seconds", "min"),
        seconds_max=("seconds", "max"),
        repeats=("seconds", "size"),
        flops=("flops", "first"),
        same_tokens=("same_tokens", "all"),
        **{c: (c, "first") for c in extras},
    ).reset_index()
    table["tokens_per_s"] = table["tokens"] / table["seconds"]
    for base, column in (("hf-generate", "speedup_vs_hf"), ("dynamic-nocache", "speedup_vs_nocache")):
        reference = table[table["decoder"] == base].set_index("model")["tokens_per_s"]
        table[column] = table["tokens_per_s"] / table["model"].map(reference)
    final_flops = table[table["decoder"] == "hf-generate"].set_index("model")["flops"]
    table["flops_vs_final"] = table["flops"] / table["model"].map(final_flops)
    table["threads"] = threads
    columns = [
        "model",
        "decoder",
        "tokens",
        "seconds",
        "tokens_per_s",
        "speedup_vs_hf",
        "speedup_vs_nocache",
        "flops",
        "flops_vs_final",
        "same_tokens",
        *extras,
        "seconds_min",
        "seconds_max",
        "repeats",
        "threads",
    ]
    return table[columns]


def draw(table: pd.DataFrame, out: str | os.PathLike):
    """Tokens/s and FLOPs (relative to final) per decoder, one column of panels per model."""
    from lite.report.style import FINAL_COLOR, GRID, grid, save_figure, tuning_color

    models = list(dict.fromkeys(table["model"]))
    fig, axes = grid(2, len(models), width=4.2, height=2.8)
    for col, model in enumerate(models):
        part = table[table["model"] == model]
        names = list(part["decoder"])
        colors = [FINAL_COLOR if n in ("hf-generate", "final") else tuning_color("lite") for n in names]
        speed, cost = axes[0, col], axes[1, col]
        speed.bar(names, part["speedup_vs_hf"], color=colors)
        speed.axhline(1.0, color="grey", linewidth=0.8)
        speed.set_ylim(0, 1.25 * max(part["speedup_vs_hf"].max(), 1.0))  # room for the labels
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
