"""Analytic FLOPs of greedy generation with early exit, in two accountings.

What is counted: matrix multiplications only, at 2*m*n*k FLOPs each.
- Per decoder layer and position: q, k, v, o projections and the SwiGLU MLP (gate, up, down):
  ``2 * layer_weights`` with ``layer_weights = h*(H*d) + 2*h*(Hkv*d) + (H*d)*h + 3*h*I``.
- Attention of q query positions against kv keys: QK^T plus AV, ``4 * H * d * q * kv`` (GQA shares
  K/V heads but every query head still does its own products).
- One confidence check / exit head: the LM head on one position, ``2 * h * V``.
- The options of the KV-cached exit (``lite.decoders.gates``, ``lite.decoders.cached``): an exit
  gate's check (``gate_flops``: a probe's dot product, or saturation's 2 x 2 Gram matrix), and the
  keys/values a copied fill projects per skipped layer (``fill_flops``: the k and v projections).
Ignored: RMSNorms, softmax, RoPE, residual adds, biases, the embedding lookup (a gather).
This is what ``torch.utils.flop_counter.FlopCounterMode`` counts (it has formulas for mm/bmm/sdpa
only), so the two agree exactly; on CPU the counter misses sdpa unless
``register_cpu_sdpa_flop_formula`` has been called.

The accountings, for a response of T tokens after a prompt of P tokens, where token t (0-based)
exits at layer e_t after consulting c_t heads:

``nocache`` (the paper's): token t recomputes its whole prefix of L_t = P + t positions through
layers 1..e_t, attention on the full L_t x L_t square (what the eager / sdpa kernels compute and
the counter reports), plus c_t heads on the last position. Final-layer generation is N layers and
one head per token.

``kvcache`` (what a deployment with a KV cache pays): each (position, layer) pair is computed once,
its attention against its causal context (position p sees p + 1 keys), plus c_t heads per token.
With early exit a cache has holes: a position that exited at a shallow layer has no keys/values in
deeper layers. Assumption (exact catch-up, ``lite.decoders.cached``): when a later token goes deeper, every
earlier position is first computed through that deeper layer, once. So position p runs through
D_p = max(e_t over the tokens whose input includes p): the prompt through max(e), and the input
position of token t >= 1 (the token t-1 fed back) through max(e_t .. e_{T-1}). With a fixed exit
layer k this reduces to a plain cached k-layer model: prefill P positions, then one per token.
Note the prefill attention is counted causally here (P(P+1)/2 pairs) but as the full square in
``nocache``; a single cached decode step has no such difference.

Families (``lite.architectures``): the counts hold for every supported one. Fused projections
(Phi-3's qkv and gate/up) are the same matmuls in one; biases, q/k norms, Gemma's extra norms,
embedding scale and soft-caps are not matmuls. ``head_dim`` comes from the config (Qwen3 and Gemma
heads are not hidden / heads wide). Sliding-window layers are counted over every causal key, as
the decoders compute them (the window is a mask): a cache that evicts keys beyond the window
would pay min(p + 1, window) keys in those layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a LLaMA-style decoder (any family of ``lite.architectures``) that its FLOPs depend on."""

    hidden: int  # h, residual width
    intermediate: int  # I, MLP width (SwiGLU: gate and up are h x I, down is I x h)
    heads: int  # H, query heads
    kv_heads: int  # Hkv, key/value heads (< H for grouped-query attention)
    head_dim: int  # d, usually h / H
    vocab: int  # V, LM head rows
    layers: int  # N, decoder layers
    tied: bool = False  # the LM head is the embedding matrix (Llama-3.2, Qwen3-0.6B, Gemma)

    def __post_init__(self) -> None:
        for name in ("hidden", "intermediate", "heads", "kv_heads", "head_dim", "vocab", "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelShape.{name} must be a positive integer, got {value!r}")

    @classmethod
    def from_config(cls, config) -> ModelShape:
        """From a ``LlamaConfig`` (or any object with the same attribute names)."""
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None)
        return cls(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim if head_dim is not None else config.hidden_size // heads,
            vocab=config.vocab_size,
            layers=config.num_hidden_layers,
            tied=bool(getattr(config, "tie_word_embeddings", False)),
        )

    @property
    def layer_weights(self) -> int:
        """Matmul weights of one decoder layer (attention projections + MLP)."""
        h, q_width, kv_width = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return h * q_width + 2 * h * kv_width + q_width * h + 3 * h * self.intermediate

    @property
    def weights(self) -> int:
        """Weights of the whole model: the layers, the embedding and the LM head (once when tied)."""
        return self.layers * self.layer_weights + (1 if self.tied else 2) * self.hidden * self.vocab

    @property
    def kv_per_position(self) -> int:
        """KV-cache numbers one position keeps over all layers (keys and values)."""
        return 2 * self.layers * self.kv_heads * self.head_dim


# LLaMA-2-7B, the paper's main model (for the check-cost reference figure), and its 13B sibling.
LLAMA2_7B = ModelShape(
    hidden=4096, intermediate=11008, heads=32, kv_heads=32, head_dim=128, vocab=32000, layers=32
)
LLAMA2_13B = ModelShape(
    hidden=5120, intermediate=13824, heads=40, kv_heads=40, head_dim=128, vocab=32000, layers=40
)
# SmolLM2-135M-Instruct (lite.smollm2): GQA with 3 KV heads, a 49k vocabulary
SMOLLM2_135M = ModelShape(
    hidden=576, intermediate=1536, heads=9, kv_heads=3, head_dim=64, vocab=49152, layers=30
)


def layer_flops(shape: ModelShape, queries: int, keys: int) -> int:
    """One decoder layer on a block of ``queries`` positions attending to ``keys`` keys (full rectangle)."""
    return 2 * shape.layer_weights * queries + 4 * shape.heads * shape.head_dim * queries * keys


def head_flops(shape: ModelShape, positions: int = 1) -> int:
    """Norm + LM head on ``positions`` positions (the norm is not counted)."""
    return 2 * shape.hidden * shape.vocab * positions


def check_cost_ratio(shape: ModelShape) -> float:
    """Cost of one confidence check relative to one decoder layer, per position, attention ignored.

    LLaMA-2-7B: 4096*32000 / 202.4M = 0.65; SmolLM2-135M (vocab 49152): about 8.
    """
    return head_flops(shape) / (2 * shape.layer_weights)


# Exit gates (``lite.decoders.gates``): what deciding whether to read a checkpoint's head costs.
GATE_KINDS = ("head", "probe", "saturation")
# KV fill of a token that exited early (``lite.decoders.cached``): exact catch-up or CALM's copy.
FILL_KINDS = ("exact", "copy")


def gate_flops(shape: ModelShape, gate: str) -> int:
    """One gate check on one position: ``head`` costs nothing of its own (the head it always reads
    is counted as a head); ``probe`` is a linear map of the normed state (a dot product, 2h);
    ``saturation`` the 2 x 2 Gram matrix of this checkpoint's state and the previous one (8h),
    from which their cosine is read."""
    if gate not in GATE_KINDS:
        raise ValueError(f"gate must be one of {', '.join(GATE_KINDS)}, got {gate!r}")
    return {"head": 0, "probe": 2 * shape.hidden, "saturation": 8 * shape.hidden}[gate]


def fill_flops(shape: ModelShape, layers: int) -> int:
    """CALM's state propagation for one position: the keys and values of ``layers`` skipped layers
    projected from the exit layer's hidden state (the k and v projections only)."""
    return layers * 2 * shape.hidden * 2 * shape.kv_heads * shape.head_dim


def prefix_flops(shape: ModelShape, prefix: int, layers: int, heads: int = 1) -> int:
    """No-cache cost of one token: ``prefix`` positions through ``layers`` layers + ``heads`` checks."""
    return layers * layer_flops(shape, prefix, prefix) + heads * head_flops(shape)


def decode_step_flops(shape: ModelShape, context: int, layers: int, heads: int = 1) -> int:
    """Cached cost of one token: one position through ``layers`` layers against ``context`` keys
    (the cached ones plus its own) + ``heads`` checks."""
    return layers * layer_flops(shape, 1, context) + heads * head_flops(shape)


def _check(shape: ModelShape, prompt_tokens: int, exit_layers: Sequence[int], heads: Sequence[int]) -> None:
    if prompt_tokens < 1:
        raise ValueError(f"prompt_tokens must be >= 1, got {prompt_tokens}")
    if len(heads) != len(exit_layers):
        raise ValueError(f"{len(exit_layers)} exit layers but {len(heads)} head counts")
    for layer in exit_layers:
        if not 1 <= layer <= shape.layers:
            raise ValueError(f"exit layer {layer} is outside 1..{shape.layers}")


def _gate_total(shape: ModelShape, gate: str, gate_checks: Sequence[int] | None, tokens: int) -> int:
    if gate_checks is None:
        return 0
    if len(gate_checks) != tokens:
        raise ValueError(f"{tokens} exit layers but {len(gate_checks)} gate check counts")
    return sum(gate_checks) * gate_flops(shape, gate)


def nocache_flops(
    shape: ModelShape,
    prompt_tokens: int,
    exit_layers: Sequence[int],
    heads: Sequence[int],
    *,
    gate: str = "head",
    gate_checks: Sequence[int] | None = None,
) -> int:
    """Whole response, paper accounting (see the module docstring); ``gate_checks`` per token, if
    given, add their ``gate`` checks' cost."""
    _check(shape, prompt_tokens, exit_layers, heads)
    return sum(
        prefix_flops(shape, prompt_tokens + t, layer, count)
        for t, (layer, count) in enumerate(zip(exit_layers, heads, strict=True))
    ) + _gate_total(shape, gate, gate_checks, len(exit_layers))


def kvcache_flops(
    shape: ModelShape,
    prompt_tokens: int,
    exit_layers: Sequence[int],
    heads: Sequence[int],
    *,
    fill: str = "exact",
    gate: str = "head",
    gate_checks: Sequence[int] | None = None,
) -> int:
    """Whole response, KV-cache accounting (see the module docstring), the exited tokens' deeper
    keys/values filled by ``fill``:

    - ``exact``: catch-up, each position through the deepest exit among the tokens that read it;
    - ``copy`` (CALM's state propagation): the input position of token t (the prompt's last for
      t = 0) through e_t layers, its keys/values of layers e_t+1..N projected from layer e_t's
      state (``fill_flops``; not for the last token, which no token reads); the rest of the
      prompt caught up exactly, through max(e).

    ``gate_checks`` per token, if given, add their ``gate`` checks' cost.
    """
    _check(shape, prompt_tokens, exit_layers, heads)
    if fill not in FILL_KINDS:
        raise ValueError(f"fill must be one of {', '.join(FILL_KINDS)}, got {fill!r}")
    if not exit_layers:
        return 0
    per_position = 2 * shape.layer_weights
    per_key = 4 * shape.heads * shape.head_dim
    gates = _gate_total(shape, gate, gate_checks, len(exit_layers))
    heads_total = sum(heads) * head_flops(shape)
    if fill == "copy":
        total = 0
        deepest = max(exit_layers)
        for p in range(prompt_tokens - 1):  # caught up as deep as any token goes; p sees p + 1 keys
            total += deepest * (per_position + per_key * (p + 1))
        for t, layer in enumerate(exit_layers):  # token t's input sits at position P - 1 + t
            total += layer * (per_position + per_key * (prompt_tokens + t))
            if t < len(exit_layers) - 1:  # no token reads the last one's deeper states
                total += fill_flops(shape, shape.layers - layer)
        return total + heads_total + gates
    # depth[t] = deepest exit among tokens t..T-1: how far the input position of token t must go.
    depth = list(exit_layers)
    for t in range(len(depth) - 2, -1, -1):
        depth[t] = max(depth[t], depth[t + 1])
    total = 0
    for p in range(prompt_tokens):  # the prompt: positions 0..P-1 (each sees p + 1 keys)
        total += depth[0] * (per_position + per_key * (p + 1))
    for t in range(1, len(depth)):  # token t's input: the token t-1 fed back at position P + t - 1
        total += depth[t] * (per_position + per_key * (prompt_tokens + t))
    return total + heads_total + gates


def generation_flops(
    shape: ModelShape,
    prompt_tokens: int,
    exit_layers: Sequence[int],
    heads: Sequence[int],
    *,
    fill: str = "exact",
    gate: str = "head",
    gate_checks: Sequence[int] | None = None,
) -> dict[str, int]:
    """``{"nocache": ..., "kvcache": ...}`` of one response (the generation record's ``flops``);
    ``fill`` only changes the KV-cache accounting (without a cache nothing is filled)."""
    gated = {"gate": gate, "gate_checks": gate_checks}
    return {
        "nocache": nocache_flops(shape, prompt_tokens, exit_layers, heads, **gated),
        "kvcache": kvcache_flops(shape, prompt_tokens, exit_layers, heads, fill=fill, **gated),
    }


def register_cpu_sdpa_flop_formula() -> None:
    """Teach ``FlopCounterMode`` the CPU flash-attention kernel (torch 2.13 lacks it); idempotent.

    Without this the counter silently reports 0 for sdpa attention on CPU.
    """
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    forward = aten._scaled_dot_product_flash_attention_for_cpu
    backward = aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(forward)
        def _forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query, key, value)

    if backward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(backward)
        def _backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)
