"""The two building blocks every decoder is made of, plus the batch plumbing they need.

- ``run_layers(model, hidden, first, last, span, cache)``: decoder layers ``first..last`` (1-indexed,
  inclusive) on hidden states, optionally against a KV cache (LayerSkip's ``forward_early`` /
  ``forward_remainder`` are both this function with different layer ranges). Each layer is
  ``decoder_layer``: LLaMA's layer arithmetic written out over the module's weights, bitwise equal
  to calling the module but without its call chain, which costs as much as a decode step's
  matmuls on a CPU.
- ``exit_head(model, hidden)``: the shared final RMSNorm + LM head on one layer's output at the
  last position -> logits, argmax token, confidence (max softmax probability).

Families (``lite.architectures``): LLaMA, Mistral and Qwen2 layers are LLaMA's arithmetic and run
written out; Qwen3, Phi-3 and Gemma 2/3 layers run their own module ``forward`` with the same
spans and caches (exact by construction, slower on a CPU). Sliding-window layers get their own
mask (and Gemma3 its own RoPE table) in ``Span.local``; caches keep every key, and the window
lives in the mask.

Layers are numbered 1..N. The hidden state after ``run_layers(..., last=k)`` is the *raw* output of
layer k, so ``exit_head`` always applies the final norm, also for k = N (unlike HF's
``hidden_states[N]``, which is already normed; tests/unit/test_loss.py checks it).

Batches are left-padded (``PaddedBatch``): real tokens end at the same column, so the last position
is the one to predict from in every row. Position ids count real tokens only, and every block of
queries gets an explicit additive mask unless it is provably unnecessary: transformers 5.24's sdpa
wrapper crops the keys of a multi-token block run against a cache when the mask is None, and
eager attention is not causal without one.
"""

from __future__ import annotations

import inspect
import itertools
import weakref
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama import modeling_llama

from lite.architectures import adapter


def n_layers(model) -> int:
    """Number of decoder layers N."""
    return len(model.model.layers)


def attn_implementation(model) -> str:
    """The attention the model's config asks for (transformers' default: sdpa)."""
    return getattr(model.config, "_attn_implementation", None) or "sdpa"


def device_of(model) -> torch.device:
    """The device the model's weights (and so every tensor a decoder makes for it) live on."""
    return model.model.embed_tokens.weight.device


def new_cache(model) -> DynamicCache:
    """An empty KV cache that keeps every key of every layer (layers never run keep length 0).

    Not ``DynamicCache(config=...)``: for sliding-window layers that one drops keys beyond the
    window, while a span's masks cover every key and carry the window themselves (``make_span``).
    """
    return DynamicCache()


@dataclass(frozen=True)
class PaddedBatch:
    """Left-padded token ids of several sequences; ``real`` marks the non-padding positions."""

    ids: torch.Tensor  # (batch, seq) long
    real: torch.Tensor  # (batch, seq) bool

    @classmethod
    def from_lists(cls, sequences: list[list[int]], pad_id: int, device: torch.device) -> PaddedBatch:
        if not sequences or any(len(seq) == 0 for seq in sequences):
            raise ValueError("every prompt needs at least one token")
        width = max(len(seq) for seq in sequences)
        # padded in Python, then one copy to the device instead of one per row
        ids = [[pad_id] * (width - len(seq)) + list(seq) for seq in sequences]
        real = [[False] * (width - len(seq)) + [True] * len(seq) for seq in sequences]
        return cls(
            torch.tensor(ids, dtype=torch.long, device=device),  # (batch, seq)
            torch.tensor(real, dtype=torch.bool, device=device),  # (batch, seq)
        )

    def append(self, tokens: torch.Tensor) -> PaddedBatch:
        """The batch with one more real column ``tokens`` (batch,) on the right."""
        column = torch.ones((tokens.shape[0], 1), dtype=torch.bool, device=tokens.device)
        return PaddedBatch(
            torch.cat([self.ids, tokens[:, None]], dim=1), torch.cat([self.real, column], dim=1)
        )

    def position_ids(self) -> torch.Tensor:
        """(batch, seq) RoPE positions: 0 at each row's first real token (padding gets 0, unused)."""
        return (self.real.long().cumsum(dim=1) - 1).clamp(min=0)


@dataclass(frozen=True)
class Span:
    """What decoder layers need to process a block of ``q`` query positions at once."""

    # written-out layers: (cos, signed sin), each (batch, 1, q, head_dim); layer modules: HF's
    # (cos, sin), each (batch, q, rotary_dim). See RotaryTable.
    rope: tuple[torch.Tensor, torch.Tensor]
    mask: torch.Tensor | None  # (batch, 1, q, kv) additive float, or None when no masking is needed
    local: Span | None = None  # what sliding-window layers use instead; None when there are none

    def select(self, rows: torch.Tensor) -> Span:
        """The span of a subset of the batch rows (``rows``: (batch,) bool or indices)."""
        cos, sin = self.rope
        mask = None if self.mask is None else self.mask[rows]
        return Span((cos[rows], sin[rows]), mask, None if self.local is None else self.local.select(rows))


class RotaryTable:
    """RoPE factors of every position a decode reaches, computed once instead of per block.

    For written-out layers, ``rope(hidden, position_ids)`` gives (cos, signed sin), each
    (batch, 1, q, head_dim), such that ``x * cos + roll(x, d/2) * signed`` is bitwise HF's
    ``x * cos + rotate_half(x) * sin`` with ``(cos, sin) = model.model.rotary_emb(hidden, position_ids)``:

    - the angles are elementwise products of position and frequency, so a row of the table is the
      same numbers as a call for that position alone;
    - rotate_half(x) is cat(-x2, x1) and roll(x, d/2) is cat(x2, x1): the sign moves onto the first
      half of sin, and IEEE products only depend on the operands' magnitudes and signs. One roll
      replaces rotate_half's two slices, negation and concatenation, in every layer.

    For layer modules it gives HF's own (cos, sin), each (batch, q, rotary_dim), which their
    ``forward`` takes as ``position_embeddings``. RoPE types whose frequencies depend on the
    sequence length (dynamic, longrope) are computed per call instead.

    Gemma3 rotates sliding-window layers with another base (its ``rotary_emb`` takes the layer
    type): the table of the full layers then keeps the sliding layers' table in ``local``. A Gemma3
    shallower than its sliding-window pattern has only sliding layers, and its ``rotary_emb`` only
    their table: the table is then the sliding one, with no ``local``.
    """

    def __init__(self, model, layer_type: str | None = None):
        self.rotary = model.model.rotary_emb
        typed = "layer_type" in inspect.signature(self.rotary.forward).parameters
        self.local: RotaryTable | None = None
        if typed and layer_type is None:
            sliding = adapter(model).sliding
            layer_type = "sliding_attention" if all(sliding) else "full_attention"
            if layer_type == "full_attention" and any(sliding):
                self.local = RotaryTable(model, "sliding_attention")
        self.layer_type = layer_type if typed else None
        self.written_out = adapter(model).written_out
        rope_type = getattr(self.rotary, "rope_type", "default")
        if isinstance(rope_type, dict):  # Gemma3: one per layer type
            rope_type = rope_type.get(self.layer_type, "default")
        self.per_call = rope_type in ("dynamic", "longrope")
        self.cos: torch.Tensor | None = None  # (positions, head_dim)
        self.sin: torch.Tensor | None = None  # (positions, head_dim): signed for written-out layers

    def _factors(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (cos, sin), each (batch, q, rotary_dim), in the form the layers take (signed or HF's)
        if self.layer_type is None:
            cos, sin = self.rotary(hidden, position_ids)
        else:
            cos, sin = self.rotary(hidden, position_ids, self.layer_type)
        return (cos, _signed(sin)) if self.written_out else (cos, sin)

    def _shaped(self, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # written-out layers broadcast over heads themselves; HF's apply_rotary_pos_emb unsqueezes
        return (cos[:, None], sin[:, None]) if self.written_out else (cos, sin)

    def rope(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.per_call:
            return self._shaped(*self._factors(hidden, position_ids))
        if self.cos is not None and self.cos.dtype == hidden.dtype:
            try:  # the table usually covers the positions: no max() to read on every call
                return self._shaped(self.cos[position_ids], self.sin[position_ids])
            except IndexError:
                pass
        size = max(int(position_ids.max()) + 1, 256, 0 if self.cos is None else 2 * self.cos.shape[0])
        cos, sin = self._factors(hidden, torch.arange(size, device=hidden.device)[None])  # (1, size, d)
        self.cos, self.sin = cos[0], sin[0]
        return self._shaped(self.cos[position_ids], self.sin[position_ids])


def _signed(sin: torch.Tensor) -> torch.Tensor:
    half = sin.shape[-1] // 2
    return torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)


def make_span(
    model,
    hidden: torch.Tensor,
    key_real: torch.Tensor,
    position_ids: torch.Tensor,
    rotary: RotaryTable | None = None,
    *,
    padded: bool | None = None,
) -> Span:
    """Rotary angles and attention masks for the block ``hidden`` (batch, q, hidden).

    ``key_real`` (batch, kv) marks which of all keys visible to the block (cached ones, then the
    block's own q) are real tokens. Query i of the block sits at key index kv - q + i and sees keys
    at or before it. A padding query also sees itself, so its softmax row is never empty (its output
    is garbage nobody reads, but it must not be NaN). ``padded``: whether any of ``key_real`` is
    False, when the caller knows (None: look).

    A model with sliding-window layers also gets ``Span.local``: there a query at position p sees
    only real keys at positions > p - window (HF's ``sliding_window_overlay``). Positions count
    real tokens (the key of column j is at ``key_real[:, :j+1].sum() - 1``), so left padding and
    the holes of speculative decoding never count as distance.
    """
    rotary = rotary or RotaryTable(model)
    rope = rotary.rope(hidden, position_ids)
    if padded is None and _maskless_shape(model, hidden.shape[1], key_real.shape[1]):
        padded = not bool(key_real.all())  # read only where it decides (a device sync on a GPU)
    mask = _mask(model, hidden, key_real, position_ids, padded, None)
    window = adapter(model).window
    if window is None:
        return Span(rope, mask)
    local_rope = rope if rotary.local is None else rotary.local.rope(hidden, position_ids)
    return Span(rope, mask, Span(local_rope, _mask(model, hidden, key_real, position_ids, padded, window)))


def _maskless_shape(model, q: int, kv: int) -> bool:
    """Whether a block of q queries against kv keys can attend without a mask when nothing is padded:
    a single query sees every key; sdpa treats a square block with mask None as causal."""
    return q == 1 or (q == kv and attn_implementation(model) == "sdpa")


def _mask(
    model, hidden, key_real, position_ids, padded: bool | None, window: int | None
) -> torch.Tensor | None:
    """(batch, 1, q, kv) additive mask of a block, or None when the attention needs none.

    Any block other than a maskless shape without padding (cache + block, eager, padding, a window
    shorter than the keys) gets an explicit mask. ``padded`` may be None only for other shapes.
    """
    q, kv = hidden.shape[1], key_real.shape[1]
    if _maskless_shape(model, q, kv) and not padded and (window is None or kv <= window):
        return None
    slots = torch.arange(kv - q, kv, device=hidden.device)  # (q,)
    keys = torch.arange(kv, device=hidden.device)  # (kv,)
    causal = keys[None, :] <= slots[:, None]  # (q, kv)
    diagonal = keys[None, :] == slots[:, None]  # (q, kv)
    visible = key_real[:, None, :]  # (batch, 1, kv)
    if window is not None:
        key_positions = key_real.long().cumsum(dim=1) - 1  # (batch, kv)
        visible = visible & (key_positions[:, None, :] > position_ids[:, :, None] - window)  # (batch, q, kv)
    allowed = causal[None] & (visible | diagonal[None])  # (batch, q, kv)
    mask = torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device)
    mask.masked_fill_(~allowed, torch.finfo(hidden.dtype).min)
    return mask[:, None]  # (batch, 1, q, kv)


def row_index(rows: list[int], size: int, device: torch.device) -> torch.Tensor | slice:
    """Index of batch ``rows`` (ascending) into a batch of ``size`` on ``device``: a slice when they
    are all rows, which reads views and writes in place instead of gathering and scattering."""
    return slice(None) if len(rows) == size else torch.tensor(rows, device=device)


def embed(model, ids: torch.Tensor) -> torch.Tensor:
    """Token embeddings (batch, seq) -> (batch, seq, hidden)."""
    table = model.model.embed_tokens
    if type(table) is torch.nn.Embedding:
        return F.embedding(ids, table.weight)  # nn.Embedding's lookup, without the call
    return table(ids)  # Gemma's scales by sqrt(hidden) in the weights' dtype: its own forward


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
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(
        attn_implementation(model), modeling_llama.eager_attention_forward
    )
    found = adapter(model)
    sliding = found.sliding
    # islice over the ModuleList's iterator: indexing it costs a few microseconds per layer
    for index, layer in enumerate(itertools.islice(model.model.layers, first - 1, last), start=first - 1):
        view = span.local if sliding[index] else span
        if found.written_out:
            hidden = decoder_layer(layer, index, hidden, view, cache, attend)
        else:  # the family's own layer: its arithmetic is not LLaMA's (lite.architectures)
            hidden = layer(hidden, attention_mask=view.mask, position_embeddings=view.rope, cache=cache)
    return hidden


class _LayerParts(NamedTuple):
    """What ``decoder_layer`` reads from one ``LlamaDecoderLayer``, gathered once per layer."""

    attention: torch.nn.Module  # LlamaAttention: passed to transformers' attention function
    head_dim: int
    scaling: float
    q: tuple[torch.Tensor, torch.Tensor | None]  # (weight, bias) of each projection
    k: tuple[torch.Tensor, torch.Tensor | None]
    v: tuple[torch.Tensor, torch.Tensor | None]
    o: tuple[torch.Tensor, torch.Tensor | None]
    gate: tuple[torch.Tensor, torch.Tensor | None]
    up: tuple[torch.Tensor, torch.Tensor | None]
    down: tuple[torch.Tensor, torch.Tensor | None]
    act: torch.nn.Module
    input_norm: tuple[torch.Tensor, float]  # (weight, epsilon)
    post_norm: tuple[torch.Tensor, float]


# Parameters, not their data: in-place updates and ``model.to(...)`` keep these current.
_PARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _parts(layer) -> _LayerParts:
    parts = _PARTS.get(layer)
    if parts is None:
        attention, mlp = layer.self_attn, layer.mlp

        def linear(module):
            return module.weight, module.bias

        def norm(module):
            return module.weight, module.variance_epsilon

        parts = _PARTS[layer] = _LayerParts(
            attention,
            attention.head_dim,
            attention.scaling,
            *(linear(getattr(attention, f"{n}_proj")) for n in "qkvo"),
            *(linear(getattr(mlp, f"{n}_proj")) for n in ("gate", "up", "down")),
            mlp.act_fn,
            norm(layer.input_layernorm),
            norm(layer.post_attention_layernorm),
        )
    return parts


def decoder_layer(layer, index: int, hidden: torch.Tensor, span: Span, cache, attend) -> torch.Tensor:
    """One LLaMA decoder layer, the arithmetic of ``LlamaDecoderLayer.forward`` op for op.

    Written out because a decode step is a few small matmuls per layer: on a CPU the module call
    chain (decoder layer, attention, MLP, norms, kwargs plumbing, attribute lookups) cost about as
    much as the arithmetic. Same ops in the same order, and ``attend`` is transformers' own
    attention function for the model's implementation, so the outputs are bitwise those of
    ``layer(hidden, ...)`` (tests/unit/test_decoding.py compares them).
    """
    p = _parts(layer)
    batch, q, _ = hidden.shape
    residual = hidden
    x = _rms_norm(hidden, *p.input_norm)
    shape = (batch, q, -1, p.head_dim)
    queries = F.linear(x, *p.q).view(shape).transpose(1, 2)  # (batch, heads, q, head_dim)
    keys = F.linear(x, *p.k).view(shape).transpose(1, 2)  # (batch, kv_heads, q, head_dim)
    values = F.linear(x, *p.v).view(shape).transpose(1, 2)
    cos, sin = span.rope  # (batch, 1, q, head_dim) each
    half = p.head_dim // 2
    queries = queries * cos + queries.roll(half, -1) * sin  # RoPE, bitwise HF's (RotaryTable.rope)
    keys = keys * cos + keys.roll(half, -1) * sin
    if cache is not None:
        keys, values = cache.update(keys, values, index)  # every cached key, this block's last
    # transformers' own attention function (sdpa or eager): its GQA and masking choices are bitwise
    mixed, _ = attend(p.attention, queries, keys, values, span.mask, scaling=p.scaling, dropout=0.0)
    mixed = mixed.reshape(batch, q, -1)  # (batch, q, heads * head_dim)
    hidden = residual + F.linear(mixed, *p.o)
    x = _rms_norm(hidden, *p.post_norm)
    return hidden + F.linear(p.act(F.linear(x, *p.gate)) * F.linear(x, *p.up), *p.down)


def _rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # LlamaRMSNorm.forward: statistics in fp32, scale in the input dtype (fp32 skips two no-op casts)
    if hidden.dtype == torch.float32:
        return weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps))
    x = hidden.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(hidden.dtype)


@dataclass(frozen=True)
class HeadOutput:
    """The shared head's prediction at one position for every row."""

    logits: torch.Tensor  # (batch, vocab)
    tokens: torch.Tensor  # (batch,) argmax
    confidence: torch.Tensor  # (batch,) max softmax probability, float32


def final_norm(model, hidden: torch.Tensor) -> torch.Tensor:
    """The shared final norm on any layer's raw output (..., hidden): the head's input."""
    found = adapter(model)
    if found.llama_norm:  # LlamaRMSNorm's arithmetic without its module call (see decoder_layer)
        return _rms_norm(hidden, found.norm.weight, found.norm.variance_epsilon)
    return found.norm(hidden)  # Gemma's (1 + w) in float32: its own forward


def normed_head(model, normed: torch.Tensor) -> HeadOutput:
    """The LM head on ``final_norm``'s output (rows, hidden). Argmax is taken on the logits (as
    ``generate`` does) and the confidence is that token's softmax probability, i.e. the maximum."""
    # the head stays a module call: hooks on it (lite.latency.forbidden) apply to every decoder alike;
    # soft-capped where the family caps its logits (Gemma 2)
    logits = adapter(model).head(normed)  # (rows, vocab)
    tokens = logits.argmax(dim=-1)  # (rows,)
    probs = torch.softmax(logits.float(), dim=-1)  # (rows, vocab)
    confidence = probs.gather(1, tokens[:, None])[:, 0]  # (rows,)
    return HeadOutput(logits, tokens, confidence)


def exit_head(model, hidden: torch.Tensor) -> HeadOutput:
    """The shared final norm + LM head on the last position of any layer's raw output.

    ``hidden`` is (batch, seq, hidden) or (batch, hidden); see ``normed_head`` for the outputs.
    """
    if hidden.dim() == 3:
        hidden = hidden[:, -1]  # (batch, hidden)
    return normed_head(model, final_norm(model, hidden))
