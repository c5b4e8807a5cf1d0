"""Exit gates: which undecided rows get their head read at an intermediate checkpoint.

The paper's dynamic exit reads the shared norm + LM head at every checkpoint a token visits: on a
model whose vocabulary is large against its width that check costs layers (SmolLM2-135M: about 8
of its 30; ``lite.flops.check_cost_ratio``), and with a KV cache it is most of what a token that
goes deep pays on top of final-layer decoding. A gate decides from the hidden state alone, at
O(hidden) per row, whether the head is worth reading; a row the gate lets through still exits only
where the head's confidence reaches the decoder's threshold (the head may veto), so a gate can
only remove exits, never add any. Gates are fitted on the calibration traces (``lite.probes``,
the workflow's ``exit_probes`` rule) so that each passes a set share (``probes.recall``) of the
positions whose head agrees with the final layer.

- ``probe``: a logistic regression on the normed state (the shared final norm applied to the
  layer's output) of whether this layer's head predicts the final layer's token: the head is read
  where its probability reaches the layer's gate, so a token leaves only where the probe and the
  confidence both say so.
- ``saturation`` (CALM's state saturation, parameter-free): the cosine of this checkpoint's state
  and the previous checkpoint's (the embedding's for the first) reaches its cut-off.

Their FLOPs are ``lite.flops.gate_flops``; both run as matmuls, so ``torch.utils.flop_counter``
sees exactly what the ``Meter`` counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lite.decoders.blocks import final_norm
from lite.flops import GATE_KINDS
from lite.io import InputError


def _logit(probability: float) -> float:
    """log(p / (1 - p)), +-inf at the ends: a probe passes where its logit reaches this."""
    if probability <= 0.0:
        return -math.inf
    if probability >= 1.0:
        return math.inf
    return math.log(probability / (1.0 - probability))


class ExitGate:
    """Base class: ``passes(index, hidden, previous)`` -> (rows,) bool for intermediate checkpoint
    ``index``, ``hidden`` (rows, h) the rows' raw states there, ``previous`` (rows, h) their states at
    the previous checkpoint (read only where ``needs_previous``)."""

    kind: str = "head"
    needs_previous: bool = False

    def passes(self, index: int, hidden: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def decide(
        self, index: int, hidden: torch.Tensor, previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``passes``, with the rows' states through the shared final norm (rows, h) where the gate
        made them on its way (else None): the head's own input, which a decoder reading the head
        of the passing rows next need not compute again."""
        return self.passes(index, hidden, previous), None


class ProbeGate(ExitGate):
    kind = "probe"

    def __init__(self, model, weights: torch.Tensor, biases: Sequence[float], cuts: Sequence[float]):
        # weights (K, h), one row per intermediate checkpoint (ascending layers); a row passes
        # where its logit reaches the checkpoint's cut (the gate probability's logit)
        self.model = model
        self.weights = weights
        self.biases = torch.tensor(list(biases), dtype=weights.dtype, device=weights.device)  # (K,)
        self.cuts = [float(c) for c in cuts]

    def passes(self, index: int, hidden: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        return self.decide(index, hidden, previous)[0]

    def decide(
        self, index: int, hidden: torch.Tensor, previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        normed = final_norm(self.model, hidden)  # (rows, h): the probe's input is the head's
        logit = F.linear(normed, self.weights[index : index + 1], self.biases[index : index + 1])  # (rows, 1)
        return logit[:, 0] >= self.cuts[index], normed


class SaturationGate(ExitGate):
    kind = "saturation"
    needs_previous = True

    def __init__(self, gates: Sequence[float]):
        self.gates = [float(g) for g in gates]

    def passes(self, index: int, hidden: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        pair = torch.stack([hidden, previous], dim=1)  # (rows, 2, h)
        gram = torch.bmm(pair, pair.transpose(1, 2))  # (rows, 2, 2): a matmul, as the counter sees it
        cosine = gram[:, 0, 1] * torch.rsqrt(gram[:, 0, 0] * gram[:, 1, 1]).clamp(max=1e30)
        return cosine >= self.gates[index]


def gate_from_document(
    model, kind: str, document: dict, thresholds: Sequence[float], layers: Sequence[int], source: str
) -> ExitGate:
    """The ``kind`` gate of intermediate checkpoints ``layers`` (their exit ``thresholds``) from an
    exit-gates document (``lite.probes``). A threshold above 1 ("never exit") passes nothing, so
    no head is read there. A layer the document lacks, or a probe whose width is not the model's,
    is an error naming ``source``."""
    if kind not in GATE_KINDS or kind == "head":
        raise ValueError(f"gate kind must be probe or saturation, got {kind!r}")
    entries = document.get("layers", {})
    missing = [layer for layer in layers if str(layer) not in entries]
    if missing:
        raise InputError(f"{source}: field 'layers' has no gate for checkpoint layer {missing[0]}")
    chosen = [entries[str(layer)][kind] for layer in layers]
    if kind == "saturation":
        return SaturationGate(
            [math.inf if t > 1 else entry["gate"] for entry, t in zip(chosen, thresholds, strict=True)]
        )
    weight = model.model.norm.weight
    hidden = weight.shape[0]
    for layer, entry in zip(layers, chosen, strict=True):
        if len(entry["weight"]) != hidden:
            raise InputError(
                f"{source}: field 'layers.{layer}.probe.weight' has {len(entry['weight'])} numbers, "
                f"the model's hidden size is {hidden}"
            )
    weights = torch.tensor([entry["weight"] for entry in chosen], dtype=weight.dtype, device=weight.device)
    cuts = [math.inf if t > 1 else _logit(entry["gate"]) for entry, t in zip(chosen, thresholds, strict=True)]
    return ProbeGate(model, weights, [entry["bias"] for entry in chosen], cuts)
