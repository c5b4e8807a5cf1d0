"""Running decoders: ``decode`` runs the decoder a ``DecoderSpec`` names, whatever its kind; ``trace``
is final-layer generation reading every layer's head.

Exactness: in float32 ``final`` equals HF ``generate``, the cached exit equals the no-cache loop
and ``speculative-L{E}`` equals ``final``, token for token (tests/unit/test_decoding.py,
tests/unit/test_fast_exits.py). In bfloat16 a block of several positions and a single position can
round differently, so a near-tie may flip a token; ``lite.decoders.agreement`` measures how often.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from lite.decoders.blocks import n_layers
from lite.decoders.cached import exit_cached
from lite.decoders.engines import exit_nocache, greedy_cached
from lite.decoders.generation import Generation
from lite.decoders.slots import Meter
from lite.decoders.specs import DecoderSpec
from lite.decoders.speculative import speculative


def decode(
    model,
    prompts: Sequence[list[int]],
    spec: DecoderSpec,
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    pad_id: int,
    keys: Sequence[str] | None = None,
    kv_cache: bool = False,
    meter: Meter | None = None,
) -> list[Generation]:
    """Greedy generation for a batch of token-id prompts; ``keys`` name them for the random baselines.

    ``kv_cache`` runs the early-exit decoders with a KV cache and exact catch-up
    (lite.decoders.cached): the same tokens and exits as the paper's no-cache loop, much faster.
    ``meter`` (``Meter(ModelShape.from_config(model.config), len(prompts))``) is filled with the
    work done, for decoders that meter it (``DecoderName.meters``).
    """
    spec = spec.resolve(n_layers(model))
    if meter is not None and not spec.named.meters(kv_cache):
        raise ValueError(f"decoder {spec.name!r} (kv_cache={kv_cache}) counts no work in a Meter")
    keys = [str(i) for i in range(len(prompts))] if keys is None else list(keys)
    common = {"max_new_tokens": max_new_tokens, "eos_ids": eos_ids, "pad_id": pad_id}
    if spec.kind == "final":
        return greedy_cached(model, prompts, n_layers(model), **common)
    if spec.kind == "fixed":
        return greedy_cached(model, prompts, spec.layer, **common)
    if spec.kind == "speculative":
        return speculative(model, prompts, spec.draft, meter=meter, **common)
    if spec.named.cached(kv_cache):  # the options run with a cache only
        return exit_cached(
            model,
            prompts,
            spec.checkpoints,
            spec.policy(keys),
            meter=meter,
            gate=spec.exit_gate(model),
            fill=spec.fill,
            **common,
        )
    return exit_nocache(model, prompts, spec.checkpoints, spec.policy(keys), **common)


def trace(
    model, prompts: Sequence[list[int]], *, max_new_tokens: int, eos_ids: Collection[int], pad_id: int
) -> list[Generation]:
    """Final-layer greedy generation that also reads every layer's head at every generated position."""
    return greedy_cached(
        model,
        prompts,
        n_layers(model),
        max_new_tokens=max_new_tokens,
        eos_ids=eos_ids,
        pad_id=pad_id,
        every_layer=True,
    )
