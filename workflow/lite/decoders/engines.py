"""Greedy generation loops built from ``run_layers`` and ``exit_head``.

- ``greedy_cached``: one exit layer k for every token, with a KV cache; only layers 1..k ever run.
  k = N is ordinary generation (equal to ``model.generate(do_sample=False)``); ``every_layer=True``
  also reads the head after every layer (the trace).
- ``exit_nocache``: the paper's early exit without a KV cache. For every new token the whole prefix
  is recomputed through the checkpoint layers it visits, in ascending order, and an ``ExitPolicy``
  decides at each intermediate checkpoint; the final layer always answers. It is the reference a
  cached implementation must reproduce.

Each prompt yields one ``Generation`` (``lite.decoders.generation``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from lite.decoders.blocks import (
    PaddedBatch,
    RotaryTable,
    device_of,
    embed,
    exit_head,
    make_span,
    n_layers,
    new_cache,
    run_layers,
)
from lite.decoders.generation import Collector, Generation
from lite.decoders.policies import ExitPolicy


def exit_points(model, checkpoints: Sequence[int]) -> list[int]:
    """``checkpoints`` as a list, checked: an early-exit decoder's exit layers ascend and end with N."""
    total = n_layers(model)
    checkpoints = list(checkpoints)
    if not checkpoints or checkpoints[-1] != total or checkpoints != sorted(set(checkpoints)):
        raise ValueError(f"checkpoints must ascend and end with the final layer {total}, got {checkpoints}")
    return checkpoints


@torch.inference_mode()
def greedy_cached(
    model,
    prompts: Sequence[list[int]],
    exit_layer: int,
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    pad_id: int,
    every_layer: bool = False,
) -> list[Generation]:
    """Greedy decoding from layer ``exit_layer`` with a KV cache (layers above it never run).

    With ``every_layer`` all N layers run (``exit_layer`` must be N) and the head is read after each,
    filling ``layer_argmax`` / ``layer_confidence``; the tokens are still the final layer's.
    """
    total = n_layers(model)
    if not 1 <= exit_layer <= total:
        raise ValueError(f"exit layer {exit_layer} is outside 1..{total}")
    if every_layer and exit_layer != total:
        raise ValueError("every_layer reads all layers, so the exit layer must be the final one")
    batch = PaddedBatch.from_lists(list(prompts), pad_id, device_of(model))
    out = Collector(len(prompts), max_new_tokens, eos_ids, trace=every_layer)
    cache = new_cache(model)
    rotary = RotaryTable(model)
    ids, positions, key_real = batch.ids, batch.position_ids(), batch.real  # (batch, seq) each
    layers, ones = [exit_layer] * len(prompts), [1] * len(prompts)
    while True:
        hidden = embed(model, ids)  # (batch, q, hidden): the whole prompt first, then one token
        span = make_span(model, hidden, key_real, positions, rotary)
        if every_layer:
            # One layer's logits at a time: only its argmax and confidence are kept, so a trace of a
            # 32-layer model with a 32k vocabulary holds (batch, N) numbers, not (batch, N, vocab).
            tokens, confidences = [], []
            for layer in range(1, total + 1):
                hidden = run_layers(model, hidden, layer, layer, span, cache)
                head = exit_head(model, hidden)
                tokens.append(head.tokens)
                confidences.append(head.confidence)
            argmax = torch.stack(tokens, dim=1)  # (batch, N)
            confidence = torch.stack(confidences, dim=1)  # (batch, N)
            out.add(head.tokens, layers, head.confidence, ones, argmax, confidence)
        else:
            hidden = run_layers(model, hidden, 1, exit_layer, span, cache)
            head = exit_head(model, hidden)
            out.add(head.tokens, layers, head.confidence, ones)
        if out.finished:
            return out.rows
        ids = head.tokens[:, None]  # (batch, 1)
        positions = positions[:, -1:] + 1  # (batch, 1)
        key_real = torch.cat([key_real, torch.ones_like(ids, dtype=torch.bool)], dim=1)  # (batch, kv)


@torch.inference_mode()
def exit_nocache(
    model,
    prompts: Sequence[list[int]],
    checkpoints: Sequence[int],
    policy: ExitPolicy,
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    pad_id: int,
) -> list[Generation]:
    """Early-exit greedy decoding without a KV cache (the paper's procedure).

    ``checkpoints`` are ascending layers ending with the final layer N. Per token, the full prefix
    runs from the embeddings through the checkpoints one segment at a time; after each segment the
    head reads the last position and ``policy`` says which undecided rows exit there. The loop stops
    at the first checkpoint where no generating row is left undecided, and a row that has exited
    leaves the batch computation, so deeper layers are never computed for a token that has exited.
    """
    total = n_layers(model)
    checkpoints = exit_points(model, checkpoints)
    device = device_of(model)
    batch = PaddedBatch.from_lists(list(prompts), pad_id, device)
    out = Collector(len(prompts), max_new_tokens, eos_ids, trace=False)
    size = len(prompts)
    rotary = RotaryTable(model)
    step = 0

    def zeros(dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(size, dtype=dtype, device=device)  # (batch,)

    while True:
        # Only rows still generating are computed, and a row leaves the computation once it exits.
        undecided = torch.tensor(out.live, dtype=torch.bool, device=device)  # (batch,)
        rows = undecided.nonzero()[:, 0]  # (rows,) batch indices being computed
        hidden = embed(model, batch.ids[rows])  # (rows, seq, hidden)
        real = batch.real[rows]  # (rows, seq)
        span = make_span(model, hidden, real, PaddedBatch(batch.ids[rows], real).position_ids(), rotary)
        tokens, layers = zeros(torch.long), zeros(torch.long)  # (batch,) each
        confidence = zeros(torch.float32)  # (batch,)
        visited = zeros(torch.long)  # (batch,) heads read while undecided
        previous = 0
        for index, layer in enumerate(checkpoints):
            hidden = run_layers(model, hidden, previous + 1, layer, span)  # (rows, seq, hidden)
            previous = layer
            head = exit_head(model, hidden)
            head_tokens = zeros(torch.long).index_copy(0, rows, head.tokens)  # (batch,)
            head_confidence = zeros(torch.float32).index_copy(0, rows, head.confidence)  # (batch,)
            visited += undecided.long()
            if layer == total:
                leave = undecided
            else:
                leave = undecided & policy.exits(step, index, head_confidence)
            tokens = torch.where(leave, head_tokens, tokens)
            layers = torch.where(leave, torch.full_like(layers, layer), layers)
            confidence = torch.where(leave, head_confidence, confidence)
            undecided = undecided & ~leave
            keep = undecided[rows]  # (rows,)
            if not bool(keep.any()):
                break
            if not bool(keep.all()):
                rows, hidden, span = rows[keep], hidden[keep], span.select(keep)
        heads = visited if policy.uses_confidence else torch.ones_like(visited)
        out.add(tokens, layers, confidence, heads)
        if out.finished:
            return out.rows
        batch = batch.append(tokens)
        step += 1
