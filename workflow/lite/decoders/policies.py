"""Exit policies: at checkpoint ``index`` of generated token ``step``, which rows leave now?

The no-cache exit engine (``lite.decoders.engines.exit_nocache``) visits the checkpoint layers in
ascending order and asks its policy at every intermediate one; the final layer always answers.

- ``ThresholdPolicy``: the paper's dynamic exit, confidence >= that layer's threshold.
- ``RandomPolicy``: exit with a fixed probability at each checkpoint (Appendix E baselines).
- ``SequentialPolicy``: token t exits at checkpoint t mod K, cycling through all K exit points.

Random draws come from one ``random.Random`` per prompt, seeded from (seed, prompt key), and every
token consumes exactly one draw per intermediate checkpoint whether or not it was needed. So a
prompt's exits depend only on the seed and its key: never on batch size, batch mates or order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import torch


class ExitPolicy:
    """Base class. ``uses_confidence``: the decision reads each visited checkpoint's head, so every
    visited checkpoint's head counts in the FLOPs (else only the answering head is needed)."""

    uses_confidence: bool = False

    def exits(self, step: int, index: int, confidence: torch.Tensor) -> torch.Tensor:
        """(batch,) bool: rows that exit at intermediate checkpoint ``index`` for token ``step``."""
        raise NotImplementedError


class ThresholdPolicy(ExitPolicy):
    uses_confidence = True

    def __init__(self, thresholds: Sequence[float]):
        # thresholds[i] belongs to the i-th intermediate checkpoint (ascending layers)
        self.thresholds = [float(t) for t in thresholds]

    def exits(self, step: int, index: int, confidence: torch.Tensor) -> torch.Tensor:
        return confidence >= self.thresholds[index]


def row_seed(seed: int, key: str) -> int:
    """A 64-bit seed for one prompt: stable across runs, platforms and Python hash salts."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class RandomPolicy(ExitPolicy):
    def __init__(self, probability: float, n_intermediate: int, seed: int, keys: Sequence[str]):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"exit probability must be in [0, 1], got {probability}")
        self.probability = probability
        self.n_intermediate = n_intermediate
        self._rngs = [random.Random(row_seed(seed, key)) for key in keys]
        self._draws: list[list[list[float]]] = []  # per step: (batch, n_intermediate) uniforms

    def _draws_for(self, step: int) -> list[list[float]]:
        # Draw step by step so that a row's stream position depends on the step number only.
        while len(self._draws) <= step:
            self._draws.append([[rng.random() for _ in range(self.n_intermediate)] for rng in self._rngs])
        return self._draws[step]

    def exits(self, step: int, index: int, confidence: torch.Tensor) -> torch.Tensor:
        decisions = [row[index] < self.probability for row in self._draws_for(step)]
        return torch.tensor(decisions, dtype=torch.bool, device=confidence.device)


class SequentialPolicy(ExitPolicy):
    def __init__(self, n_exit_points: int):
        self.n_exit_points = n_exit_points  # intermediate checkpoints + the final layer

    def exits(self, step: int, index: int, confidence: torch.Tensor) -> torch.Tensor:
        exit_here = index == step % self.n_exit_points
        return torch.full(confidence.shape, exit_here, dtype=torch.bool, device=confidence.device)
