"""The two building blocks every decoder is made of, plus the batch plumbing they need.

- ``run_layers(model, hidden, first, last, span, cache)``: decoder layers ``first..last`` (1-indexed,
  inclusive) on hidden states, optionally against a KV cache (LayerSkip's ``forward_early`` /
  ``forward_remainder`` are both this function with different layer ranges).
- ``exit_head(model, hidden)``: the shared final RMSNorm + LM head on one layer's output at the
  last position -> logits, argmax token, confidence (max softmax probability).

Layers are numbered 1..N. The hidden state after ``run_layers(..., last=k)`` is the *raw* output of
layer k, so ``exit_head`` always applies the final norm, also for k = N (unlike HF's
``hidden_states[N]``, which is already normed; ml-probe section 2).

Batches are left-padded (``PaddedBatch``): real tokens end at the same column, so the last position
is the one to predict from in every row. Position ids count real tokens only, and every block of
queries gets an explicit additive mask unless it is provably unnecessary: transformers 5.24's sdpa
wrapper crops the keys of a multi-token block run against a cache when the mask is None
(ml-probe section 3), and eager attention is not causal without one.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache
from transformers.models.llama import modeling_llama

# Decoder-layer keyword names moved across transformers versions (ml-probe section 3 table):
# the cache is ``cache`` in 5.24, ``past_key_values`` in 4.57-5.0, ``past_key_value`` in 4.46;
# ``cache_position`` disappeared in 5.24.
_LAYER_PARAMS = inspect.signature(modeling_llama.LlamaDecoderLayer.forward).parameters
CACHE_KWARG = next(name for name in ("cache", "past_key_values", "past_key_value") if name in _LAYER_PARAMS)
_NEEDS_CACHE_POSITION = "cache_position" in _LAYER_PARAMS


def n_layers(model) -> int:
    """Number of decoder layers N."""
    return len(model.model.layers)


def new_cache(model) -> DynamicCache:
    """An empty KV cache with one slot per decoder layer (layers never run keep length 0)."""
    return DynamicCache(config=model.config)


@dataclass(frozen=True)
class PaddedBatch:
    """Left-padded token ids of several sequences; ``real`` marks the non-padding positions."""

    ids: torch.Tensor  # (batch, seq) long
    real: torch.Tensor  # (batch, seq) bool

    @classmethod
    def from_lists(cls, sequences: list[list[int]], pad_id: int) -> PaddedBatch:
        if not sequences or any(len(seq) == 0 for seq in sequences):
            raise ValueError("every prompt needs at least one token")
        width = max(len(seq) for seq in sequences)
        ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)  # (batch, seq)
        real = torch.zeros((len(sequences), width), dtype=torch.bool)  # (batch, seq)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            real[row, width - len(seq) :] = True
        return cls(ids, real)

    def append(self, tokens: torch.Tensor) -> PaddedBatch:
        """The batch with one more real column ``tokens`` (batch,) on the right."""
        column = torch.ones((tokens.shape[0], 1), dtype=torch.bool)
        return PaddedBatch(
            torch.cat([self.ids, tokens[:, None]], dim=1), torch.cat([self.real, column], dim=1)
        )

    def position_ids(self) -> torch.Tensor:
        """(batch, seq) RoPE positions: 0 at each row's first real token (padding gets 0, unused)."""
        return (self.real.long().cumsum(dim=1) - 1).clamp(min=0)


@dataclass(frozen=True)
class Span:
    """What decoder layers need to process a block of ``q`` query positions at once."""

    position_ids: torch.Tensor  # (batch, q)
    position_embeddings: tuple[torch.Tensor, torch.Tensor]  # RoPE (cos, sin), each (batch, q, head_dim)
    mask: torch.Tensor | None  # (batch, 1, q, kv) additive float, or None when no masking is needed
    cache_position: torch.Tensor  # (q,) slots of the block in the cache; only old transformers use it

    def select(self, rows: torch.Tensor) -> Span:
        """The span of a subset of the batch rows (``rows``: (batch,) bool or indices)."""
        cos, sin = self.position_embeddings
        mask = None if self.mask is None else self.mask[rows]
        return Span(self.position_ids[rows], (cos[rows], sin[rows]), mask, self.cache_position)


def make_span(model, hidden: torch.Tensor, key_real: torch.Tensor, position_ids: torch.Tensor) -> Span:
    """Rotary angles and attention mask for the block ``hidden`` (batch, q, hidden).

    ``key_real`` (batch, kv) marks which of all keys visible to the block (cached ones, then the
    block's own q) are real tokens. Query i of the block sits at key index kv - q + i and sees keys
    at or before it. A padding query also sees itself, so its softmax row is never empty (its output
    is garbage nobody reads, but it must not be NaN).
    """
    q, kv = hidden.shape[1], key_real.shape[1]
    cos_sin = model.model.rotary_emb(hidden, position_ids)
    slots = torch.arange(kv - q, kv)  # (q,)
    implementation = getattr(model.config, "_attn_implementation", "sdpa")
    # No mask needed: a single query with no padding sees everything; sdpa treats a square block with
    # mask None as causal. Any other case (cache + block, eager, padding) gets an explicit mask.
    if bool(key_real.all()) and (q == 1 or (q == kv and implementation == "sdpa")):
        return Span(position_ids, cos_sin, None, slots)
    keys = torch.arange(kv)  # (kv,)
    causal = keys[None, :] <= slots[:, None]  # (q, kv)
    diagonal = keys[None, :] == slots[:, None]  # (q, kv)
    allowed = causal[None] & (key_real[:, None, :] | diagonal[None])  # (batch, q, kv)
    mask = torch.zeros(allowed.shape, dtype=hidden.dtype)
    mask.masked_fill_(~allowed, torch.finfo(hidden.dtype).min)
    return Span(position_ids, cos_sin, mask[:, None], slots)  # mask (batch, 1, q, kv)


def embed(model, ids: torch.Tensor) -> torch.Tensor:
    """Token embeddings (batch, seq) -> (batch, seq, hidden)."""
    return model.model.embed_tokens(ids)


def run_layers(
    model,
    hidden: torch.Tensor,
    first: int,
    last: int,
    span: Span,
    cache: DynamicCache | None = None,
) -> torch.Tensor:
    """Decoder layers ``first..last`` (1-indexed, inclusive) on ``hidden`` (batch, q, hidden).

    Returns the raw output of layer ``last`` (batch, q, hidden). With a ``cache`` each layer appends
    the block's keys/values to its own slot and attends over everything cached there; the caller's
    ``span`` mask must then cover all cached keys. ``first > last`` is a no-op (nothing to run).
    """
    total = n_layers(model)
    if not 1 <= first <= total + 1 or not 0 <= last <= total:
        raise ValueError(f"layer range {first}..{last} is outside 1..{total}")
    kwargs = {
        "attention_mask": span.mask,
        "position_ids": span.position_ids,
        "position_embeddings": span.position_embeddings,
    }
    if cache is not None:
        kwargs[CACHE_KWARG] = cache
        kwargs["use_cache"] = True
        if _NEEDS_CACHE_POSITION:
            kwargs["cache_position"] = span.cache_position
    for layer in model.model.layers[first - 1 : last]:
        out = layer(hidden, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out  # tuple before transformers 4.5x
    return hidden


@dataclass(frozen=True)
class HeadOutput:
    """The shared head's prediction at one position for every row."""

    logits: torch.Tensor  # (batch, vocab)
    tokens: torch.Tensor  # (batch,) argmax
    confidence: torch.Tensor  # (batch,) max softmax probability, float32


def exit_head(model, hidden: torch.Tensor) -> HeadOutput:
    """Final RMSNorm + LM head on the last position of any layer's raw output.

    ``hidden`` is (batch, seq, hidden) or (batch, hidden). Argmax is taken on the logits (as
    ``generate`` does) and the confidence is that token's softmax probability, i.e. the maximum.
    """
    if hidden.dim() == 3:
        hidden = hidden[:, -1]  # (batch, hidden)
    logits = model.lm_head(model.model.norm(hidden))  # (batch, vocab)
    tokens = logits.argmax(dim=-1)  # (batch,)
    probs = torch.softmax(logits.float(), dim=-1)  # (batch, vocab)
    confidence = probs.gather(1, tokens[:, None])[:, 0]  # (batch,)
    return HeadOutput(logits, tokens, confidence)
