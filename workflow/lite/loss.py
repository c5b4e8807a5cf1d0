"""The LITE loss: shared final norm + LM head on selected layers, weighted mean of their CE.

    loss = sum_i w_i * CE_i / sum_i w_i

with CE_i the token-mean cross-entropy of layer i's predictions on the response tokens. Standard
instruction tuning is the special case ``{N: 1}``. Everything here is a pure function of hidden
states, labels and the shared norm/head modules, so it can be tested with hand-made tensors. The
modules are the model family's own (``lite.architectures.exit_modules``: Gemma's (1 + w) norm and
soft-capped head).

Layers are 1-indexed: layer i is the output of decoder layer i, layer N the final one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100  # label of positions the loss skips (prompt, padding); torch's cross_entropy default


# ---- weighting schemes: one signature, (ascending exit layers incl. N) -> {layer: weight} ----


def uniform(layers: Sequence[int]) -> dict[int, float]:
    """Equal weights: the paper's main LITE."""
    return {layer: 1.0 for layer in layers}


def linear(layers: Sequence[int]) -> dict[int, float]:
    """Weights 1, 2, ..., K in ascending layer order: the paper's weighted LITE (Appendix C)."""
    return {layer: float(rank) for rank, layer in enumerate(sorted(layers), start=1)}


def final_only(layers: Sequence[int]) -> dict[int, float]:
    """Only the deepest layer: standard instruction tuning."""
    return {max(layers): 1.0}


def ramp_intermediate(weights: Mapping[int, float], fraction: float) -> dict[int, float]:
    """``weights`` with every exit below the deepest scaled by ``fraction`` (clipped to [0, 1]).

    A curriculum over training (LayerSkip's "gradual" early-exit loss): at 0 only the final layer
    is trained, as in IT, and the intermediate exits join as the fraction grows to 1. Exits whose
    weight becomes 0 are skipped by ``lite_loss``.
    """
    scale = min(max(fraction, 0.0), 1.0)
    deepest = max(weights)
    return {layer: w if layer == deepest else w * scale for layer, w in weights.items()}


EXIT_TARGETS = ("gold", "final")  # what an intermediate exit is trained to predict (lite_loss)

SCHEMES: dict[str, Callable[[Sequence[int]], dict[int, float]]] = {
    "uniform": uniform,
    "linear": linear,
    "final_only": final_only,
}


def resolve_layer_weights(
    scheme_or_mapping: str | Mapping, n_layers: int, layers: Sequence[int] | None = None
) -> dict[int, float]:
    """Validated ``{layer: weight}`` from a scheme name (plus ``layers``) or an explicit mapping.

    A scheme always includes the final layer N, as in the paper (``layers=[2, 4, 6]`` with N=8
    means exits 2, 4, 6, 8). An explicit mapping is taken as given (keys may be strings, as in
    JSON/YAML). Layers must lie in 1..N, weights be finite and >= 0, and not all be zero.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    if isinstance(scheme_or_mapping, str):
        if scheme_or_mapping not in SCHEMES:
            raise ValueError(
                f"unknown weighting scheme {scheme_or_mapping!r}; choose from {', '.join(SCHEMES)}"
            )
        exits = [int(layer) for layer in (layers or ())]
        _check_layers(exits, n_layers)
        weights = SCHEMES[scheme_or_mapping](sorted(set(exits) | {n_layers}))
    elif isinstance(scheme_or_mapping, Mapping):
        if layers is not None:
            raise ValueError("give layers with a scheme name, not with an explicit weight mapping")
        weights = {}
        for key, value in scheme_or_mapping.items():
            try:
                layer = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"layer {key!r} is not an integer") from None
            weights[layer] = float(value)
    else:
        raise TypeError(
            f"expected a scheme name or a {{layer: weight}} mapping, got {type(scheme_or_mapping).__name__}"
        )
    if not weights:
        raise ValueError("no layers given")
    _check_layers(weights, n_layers)
    for layer, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of layer {layer} must be finite and >= 0, got {weight}")
    if not any(weight > 0 for weight in weights.values()):
        raise ValueError(f"all layer weights are zero ({weights}); at least one must be positive")
    return dict(sorted(weights.items()))


def _check_layers(layers, n_layers: int) -> None:
    for layer in layers:
        if not 1 <= layer <= n_layers:
            raise ValueError(f"layer {layer} is out of range: layers are 1..{n_layers} (N={n_layers})")


# ---- which hidden state is which layer ----


def layer_outputs(
    hidden_states: Sequence[torch.Tensor], n_layers: int
) -> dict[int, tuple[torch.Tensor, bool]]:
    """``{layer: (hidden, already_normed)}`` for layers 1..N from HF's ``output_hidden_states``.

    HF LLaMA returns N+1 tensors: [0] the embeddings, [i] for i < N the raw output of decoder layer
    i, and [N] the final layer's output *after* ``model.model.norm``. So layers i < N still need the
    shared norm and layer N must be used as is: RMSNorm with a learned scale is not idempotent, and
    norming twice would train the final exit on a different function than the one inference uses.
    """
    if len(hidden_states) != n_layers + 1:
        raise ValueError(
            f"expected {n_layers + 1} hidden states (embeddings + {n_layers} layers), "
            f"got {len(hidden_states)}"
        )
    return {layer: (hidden_states[layer], layer == n_layers) for layer in range(1, n_layers + 1)}


# ---- the loss ----


def lite_loss(
    hidden_states: Sequence[torch.Tensor],
    labels: torch.Tensor,
    norm: torch.nn.Module,
    lm_head: torch.nn.Module,
    layer_weights: Mapping[int, float],
    chunk_size: int | None = None,
    fused: bool = False,
    exit_target: str = "gold",
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Weighted mean of per-layer response-token CE; returns ``(loss, {layer: CE_i detached})``.

    ``hidden_states``: N+1 tensors of shape (batch, seq, hidden), HF's convention (see
    ``layer_outputs``). ``labels``: (batch, seq) with -100 on prompt and padding; position t's
    hidden state predicts label t+1. Layers with weight 0 are skipped entirely (no head, no CE).

    The head runs only on positions that have a target, which spares the (often longer) prompt.
    With ``chunk_size`` set, norm + head + CE run over chunks of that many target positions, each
    under activation checkpointing: no chunk's logits are kept for backward (they are recomputed),
    so at most one chunk of (chunk_size x vocab) logits is alive instead of (exits x tokens x vocab).

    ``fused=True`` (``_FusedHeadCE``) spends the same memory without the recomputation: the head's
    gradients are computed chunk by chunk in the forward pass, for all exits at once, and the
    backward pass only scales them. Chunks of ``chunk_size`` positions (default: one exit's worth).
    It reads ``lm_head.weight`` outside the module's call, so it cannot run under ZeRO-3, which
    gathers that weight only inside the call.

    ``exit_target="final"`` (beyond the paper) trains every intermediate exit towards the final
    layer's own distribution instead of the gold token: CE_i is the cross-entropy of exit i against
    softmax(final logits), detached, so no gradient reaches the final layer through it. An exit is
    then asked for what early exiting needs (the final layer's prediction), not for the answer where
    the final layer itself is unsure. The final layer keeps its gold CE.
    """
    if exit_target not in EXIT_TARGETS:
        raise ValueError(f"exit_target must be one of {', '.join(EXIT_TARGETS)}, got {exit_target!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    n_layers = len(hidden_states) - 1
    weights = {int(layer): float(w) for layer, w in layer_weights.items() if w > 0}
    if not weights:
        raise ValueError("all layer weights are zero; at least one must be positive")
    _check_layers(weights, n_layers)
    outputs = layer_outputs(hidden_states, n_layers)

    shifted = labels[:, 1:]  # (batch, seq-1): the token each position predicts
    keep = shifted != IGNORE_INDEX  # (batch, seq-1)
    targets = shifted[keep]  # (tokens,)
    n_tokens = max(int(targets.numel()), 1)  # an all-masked batch gives loss 0, not NaN

    if fused:
        if exit_target != "gold":
            raise ValueError("the fused head + CE trains on gold tokens only; use exit_target='gold'")
        return _fused_loss(outputs, keep, targets, n_tokens, weights, norm, lm_head, chunk_size)
    final_probs = None
    if exit_target == "final" and any(layer < n_layers for layer in weights):
        with torch.no_grad():
            final_rows = outputs[n_layers][0][:, :-1][keep]  # (tokens, hidden), already normed
            final_probs = torch.softmax(lm_head(final_rows).float(), dim=-1)  # (tokens, vocab)
    total = None
    per_layer: dict[int, torch.Tensor] = {}
    for layer, weight in sorted(weights.items()):
        hidden, normed = outputs[layer]
        rows = hidden[:, :-1][keep]  # (tokens, hidden)
        target = targets if layer == n_layers or final_probs is None else final_probs
        ce = _ce_sum(rows, target, None if normed else norm, lm_head, chunk_size) / n_tokens
        per_layer[layer] = ce.detach()
        total = weight * ce if total is None else total + weight * ce
    return total / sum(weights.values()), per_layer


def _ce_sum(rows, targets, norm, lm_head, chunk_size):
    """Summed CE of lm_head(norm(rows)) against targets (token ids, or (tokens, vocab)
    probabilities), optionally chunked + checkpointed."""
    if chunk_size is None or rows.shape[0] == 0:
        return _head_ce_sum(rows, targets, norm, lm_head)
    parts = [
        checkpoint(
            _head_ce_sum,
            rows[start : start + chunk_size],
            targets[start : start + chunk_size],
            norm,
            lm_head,
            use_reentrant=False,
        )
        for start in range(0, rows.shape[0], chunk_size)
    ]
    return torch.stack(parts).sum()


def _head_ce_sum(rows, targets, norm, lm_head):
    if norm is not None:
        rows = norm(rows)  # (tokens, hidden)
    logits = lm_head(rows).float()  # (tokens, vocab); CE in fp32 even under bf16
    return F.cross_entropy(logits, targets, reduction="sum")


def _fused_loss(outputs, keep, targets, n_tokens, weights, norm, lm_head, chunk_size):
    """``lite_loss``'s value and per-layer CE through one ``_FusedHeadCE`` over every exit's rows."""
    if not isinstance(lm_head, torch.nn.Linear):
        raise ValueError(
            f"the fused head + CE computes a plain linear head, not {type(lm_head).__name__} "
            "(Gemma 2's soft-capped logits); use chunk_size alone"
        )
    head_weight, bias = lm_head.weight, lm_head.bias
    if getattr(head_weight, "ds_status", None) is not None:
        raise ValueError(
            "the fused head + CE reads lm_head.weight directly; under DeepSpeed ZeRO-3 use chunk_size alone"
        )
    layers = sorted(weights)
    exits = []
    for layer in layers:
        hidden, normed = outputs[layer]
        rows = hidden[:, :-1][keep]  # (tokens, hidden)
        exits.append(rows if normed else norm(rows))
    count = targets.numel()
    rows = torch.cat(exits)  # (exits * tokens, hidden)
    # d loss / d CE_r of each row: its layer's weight over (sum of weights x response tokens)
    scale = torch.tensor([weights[layer] for layer in layers]) / (sum(weights.values()) * n_tokens)
    scales = scale.repeat_interleave(count).to(rows.device)  # (exits * tokens,)
    loss, row_ce = _FusedHeadCE.apply(
        rows, head_weight, bias, targets.repeat(len(layers)), scales, chunk_size or max(count, 1)
    )
    per_layer = {
        layer: part.sum() / n_tokens for layer, part in zip(layers, row_ce.split(count), strict=True)
    }
    return loss, per_layer


class _FusedHeadCE(torch.autograd.Function):
    """sum_r scales[r] * CE(rows[r] @ weight.T + bias, targets[r]), gradients made in the forward.

    CE's gradient with respect to the logits is softmax - onehot, known as soon as the logits are.
    So each chunk's logits give the chunk's gradients for the rows, the weight and the bias right
    away, and are dropped; backward multiplies the stored gradients by the incoming scalar. The
    weight's gradient is summed over every chunk of every exit in one fp32 buffer (the exits share
    the head). Returns the loss and the per-row CE (detached, for logging).
    """

    @staticmethod
    def forward(ctx, rows, weight, bias, targets, scales, chunk_size):
        # rows (R, hidden), weight (vocab, hidden), bias (vocab,) or None, targets (R,), scales (R,)
        grad_rows = torch.empty_like(rows)  # (R, hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)  # (vocab, hidden)
        grad_bias = None if bias is None else torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
        row_ce = torch.empty(rows.shape[0], dtype=torch.float32, device=rows.device)  # (R,)
        for start in range(0, rows.shape[0], chunk_size):
            part = slice(start, start + chunk_size)
            x, target = rows[part], targets[part]  # (c, hidden), (c,)
            logits = F.linear(x, weight, bias).float()  # (c, vocab); CE in fp32, as the plain path
            picked = torch.arange(x.shape[0], device=x.device)
            log_norm = torch.logsumexp(logits, dim=-1)  # (c,)
            row_ce[part] = log_norm - logits[picked, target]
            grad = logits.sub_(log_norm[:, None]).exp_()  # (c, vocab) softmax, in place of the logits
            grad[picked, target] -= 1.0
            grad.mul_(scales[part, None])
            grad_weight.addmm_(grad.t(), x.float())
            if grad_bias is not None:
                grad_bias += grad.sum(dim=0)
            grad = grad.to(rows.dtype)
            grad_rows[part] = grad @ weight
        ctx.save_for_backward(grad_rows, grad_weight, grad_bias)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(row_ce)
        return (row_ce * scales).sum(), row_ce

    @staticmethod
    def backward(ctx, grad_loss, _grad_row_ce):
        grad_rows, grad_weight, grad_bias = ctx.saved_tensors
        grad_weight = (grad_weight * grad_loss).to(ctx.weight_dtype)
        grad_bias = None if grad_bias is None else (grad_bias * grad_loss).to(ctx.weight_dtype)
        return grad_rows * grad_loss.to(grad_rows.dtype), grad_weight, grad_bias, None, None, None
