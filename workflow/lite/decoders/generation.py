"""What every decoder returns: one ``Generation`` per prompt, filled by a ``Collector``.

Generation of a row stops after an EOS token (kept) or ``max_new_tokens``; finished rows keep
riding along in the batch until all are done, but nothing they compute is recorded.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import torch


@dataclass
class Acceptance:
    """Drafting statistics of one prompt (self-speculative decoding)."""

    proposed: int = 0  # draft tokens sent to verification
    accepted: int = 0  # of those, equal to the final layer's token
    rounds: int = 0  # verification passes

    @property
    def rate(self) -> float:
        """Share of proposed drafts accepted (nan when nothing was proposed)."""
        return self.accepted / self.proposed if self.proposed else float("nan")


@dataclass
class Generation:
    """What one prompt produced; lists are per generated token."""

    token_ids: list[int] = field(default_factory=list)
    exit_layers: list[int] = field(default_factory=list)  # layer whose head produced the token
    confidences: list[float] = field(default_factory=list)  # that head's max softmax probability
    heads: list[int] = field(default_factory=list)  # heads computed for the token (FLOP accounting)
    gate_checks: list[int] | None = None  # exit-gate checks for the token (gated decoders only)
    layer_argmax: list[list[int]] | None = None  # trace only: (T, N)
    layer_confidence: list[list[float]] | None = None  # trace only: (T, N)
    acceptance: Acceptance | None = None  # speculative decoding only


class Collector:
    """Appends each step's outputs to the rows still generating and decides when they stop.

    Per-row state is plain Python (``live``): a decode step reads it once per row, and at batch
    sizes of a few rows a tensor op costs more than the Python loop.
    """

    def __init__(self, batch: int, max_new_tokens: int, eos_ids: Collection[int], trace: bool):
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.rows = [Generation() for _ in range(batch)]
        if trace:
            for row in self.rows:
                row.layer_argmax, row.layer_confidence = [], []
        self.live = [True] * batch  # per row: still generating
        self.max_new_tokens = max_new_tokens
        self.eos_ids = frozenset(eos_ids)

    def add(
        self, tokens, layers, confidences, heads, layer_argmax=None, layer_confidence=None, gates=None
    ) -> None:
        """One step's outputs, (batch,) each (tensors or lists); rows already finished ignore theirs.
        ``gates``: exit-gate checks per row, recorded where a gate decided."""
        tokens, layers, confidences, heads = (_as_list(t) for t in (tokens, layers, confidences, heads))
        if layer_argmax is not None:
            layer_argmax, layer_confidence = layer_argmax.tolist(), layer_confidence.tolist()
        for i, row in enumerate(self.rows):
            if not self.live[i]:
                continue
            if layer_argmax is not None:
                row.layer_argmax.append(layer_argmax[i])
                row.layer_confidence.append(layer_confidence[i])
            if gates is not None:
                if row.gate_checks is None:
                    row.gate_checks = []
                row.gate_checks.append(int(gates[i]))
            self.append(i, tokens[i], layers[i], confidences[i], heads[i])

    def append(self, row: int, token: int, layer: int, confidence: float, heads: int) -> None:
        """One token of a live ``row``; the row stops after an EOS token or ``max_new_tokens``."""
        generation = self.rows[row]
        generation.token_ids.append(int(token))
        generation.exit_layers.append(int(layer))
        generation.confidences.append(float(confidence))
        generation.heads.append(int(heads))
        if token in self.eos_ids or len(generation.token_ids) >= self.max_new_tokens:
            self.live[row] = False

    @property
    def finished(self) -> bool:
        return not any(self.live)


def _as_list(values) -> list:
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)
