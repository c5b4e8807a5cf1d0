"""The decoder-only families LITE supports, and what each one's exits need to know about it.

Every supported family keeps LLaMA's module layout: ``model.model.embed_tokens``,
``model.model.layers`` (the N decoder layers), ``model.model.norm`` (the final norm shared by all
exits), ``model.model.rotary_emb`` and ``model.lm_head``. What differs is arithmetic:

============  ==================  ===============================================================
family        decoder layers      differences from LLaMA
============  ==================  ===============================================================
llama         written out         rope scaling (llama3, ...) lives in ``rotary_emb``
mistral       written out         sliding-window attention over every layer (``sliding_window``)
qwen2         written out         q/k/v biases; sliding layers where ``layer_types`` says so
qwen3         the model's own     RMSNorm on each query/key head before RoPE
phi3          the model's own     fused qkv and gate/up projections, partial rotary
gemma2        the model's own     (1 + w) RMSNorms around attention and MLP, embeddings scaled by
                                  sqrt(hidden), query scale from ``query_pre_attn_scalar``,
                                  attention-logit and final-logit soft-capping, alternating
                                  sliding-window layers
gemma3_text   the model's own     gemma2's, with q/k norms, no attention soft-cap, and RoPE bases
                                  that differ between sliding and full layers
============  ==================  ===============================================================

"Written out" layers run ``lite.decoders.blocks.decoder_layer`` (LLaMA's arithmetic over the
module weights, bitwise the module's); the others run their own ``forward`` against the decoders'
masks, RoPE factors and caches, so they are exact by construction. Anything else (other families,
the multimodal ``gemma3`` wrapper, bidirectional Gemma3 embedders) is refused by ``adapter``, with
a message naming the family: an unknown layer could run without an error and decode wrong tokens.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

# family (config.model_type) -> whether its decoder layers are LLaMA's arithmetic
WRITTEN_OUT = {
    "llama": True,
    "mistral": True,
    "qwen2": True,
    "qwen3": False,
    "phi3": False,
    "gemma2": False,
    "gemma3_text": False,
}
# families whose RMSNorm scales by (1 + w) in float32 before casting back (Gemma's), not by w
_GEMMA_NORM = ("gemma2", "gemma3_text")


class UnsupportedArchitecture(ValueError):
    """A model whose family the decoders cannot run exactly."""


class SoftCappedHead(torch.nn.Module):
    """The LM head followed by Gemma's final logit soft-cap, ``cap * tanh(logits / cap)``, in the
    order and dtype of the model's own forward. The head stays a module call inside, so hooks on
    ``lm_head`` see every exit."""

    def __init__(self, lm_head: torch.nn.Module, cap: float):
        super().__init__()
        self.lm_head = lm_head
        self.cap = cap

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(hidden)  # (..., vocab)
        return torch.tanh(logits / self.cap) * self.cap


@dataclass(frozen=True)
class Adapter:
    """What the decoders, the LITE loss and the exit head read about one model."""

    family: str  # config.model_type
    written_out: bool  # decoder layers run as blocks.decoder_layer (else the layer modules)
    llama_norm: bool  # the final norm is LlamaRMSNorm's arithmetic (blocks writes it out)
    norm: torch.nn.Module  # the final norm every exit shares
    head: torch.nn.Module  # LM head, soft-capped where the family caps its logits
    sliding: tuple[bool, ...]  # per decoder layer: attends within a sliding window
    window: int | None  # the sliding layers' window (keys at distance < window), None without any


_ADAPTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def adapter(model) -> Adapter:
    """The model's ``Adapter`` (built once per model); ``UnsupportedArchitecture`` names a family
    the decoders cannot run exactly."""
    found = _ADAPTERS.get(model)
    if found is None:
        found = _ADAPTERS[model] = _build(model)
    return found


def _build(model) -> Adapter:
    config = model.config
    family = getattr(config, "model_type", type(model).__name__)
    if family not in WRITTEN_OUT:
        raise UnsupportedArchitecture(
            f"model family {family!r} ({type(model).__name__}) is not supported: early exits are exact "
            f"only for {', '.join(sorted(WRITTEN_OUT))}"
        )
    if getattr(config, "use_bidirectional_attention", False):
        raise UnsupportedArchitecture(
            f"model family {family!r} with use_bidirectional_attention is an encoder, not a causal decoder"
        )
    cap = getattr(config, "final_logit_softcapping", None)
    head = model.lm_head if cap is None else SoftCappedHead(model.lm_head, float(cap))
    # Mistral and Phi-3 attend within config.sliding_window in every layer; Qwen2/3 and Gemma give
    # each attention module its own window (None in full-attention layers).
    windows = [
        getattr(layer.self_attn, "sliding_window", getattr(config, "sliding_window", None))
        for layer in model.model.layers
    ]
    sizes = {w for w in windows if w is not None}
    if len(sizes) > 1:
        raise UnsupportedArchitecture(f"model family {family!r}: several sliding windows {sorted(sizes)}")
    return Adapter(
        family=family,
        written_out=WRITTEN_OUT[family],
        llama_norm=family not in _GEMMA_NORM,
        norm=model.model.norm,
        head=head,
        sliding=tuple(w is not None for w in windows),
        window=next(iter(sizes), None),
    )


def exit_modules(model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The shared final norm and head that every exit (and the LITE loss) applies."""
    found = adapter(model)
    return found.norm, found.head
