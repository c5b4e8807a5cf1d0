"""Decoders by name: ``decoder_from_name`` builds the ``DecoderSpec`` that
``lite.decoders.dispatch.decode`` runs. What a name alone says (its family, layer, threshold set:
``decoder_name``) is ``lite.decoders.names``'; nothing else parses a name.

- ``final``: ordinary greedy generation from the last layer N (KV cache); equals
  ``model.generate(do_sample=False)`` token for token.
- ``fixed-L{k}``: every token from layer k; layers k+1..N are never computed (KV cache).
- ``dynamic``, ``dynamic-paper``, ``dynamic-aggressive``, ``dynamic-calibrated``: confidence-based
  early exit with the thresholds given (the suffix only names where they came from). Per token the
  checkpoints are visited in ascending order and the first whose confidence >= its threshold
  answers, else the final layer does. Without a KV cache this is the paper's procedure,
  recomputing the prefix; with one, the same tokens and exits (``lite.decoders.cached``).
- ``<dynamic or sweep name>[-probe|-saturation][-copy]``: options beyond the paper, always with a
  KV cache. ``-probe`` / ``-saturation``: an exit gate fitted on the calibration traces decides
  where the head is read (``lite.decoders.gates``; the thresholds still decide the exits there);
  ``-copy``: an exited token's deeper keys/values are projected from its exit state (CALM's
  propagation) instead of caught up exactly (``lite.decoders.cached``).
- ``dynamic-x{k}``: a point of the threshold sweep (the quality/cost frontier): dynamic exit with
  the paper's thresholds scaled by k (the workflow passes them, ``lite.plan.scaled_thresholds``).
- ``random-half``, ``random-k``: exit at each intermediate checkpoint with probability 1/2, resp.
  1/K where K counts all exit points (the checkpoints including the final layer); paper App. E.
- ``sequential``: token t exits at exit point t mod K (cycling through the checkpoints, final included).
- ``speculative-L{E}``: self-speculative decoding, drafts from layer E verified by layers E+1..N
  (``lite.decoders.speculative``): the tokens of ``final``, at another cost.
- ``speculative-adaptive``: the same, choosing the draft layer (among given ones) and the number
  of drafts every round from the acceptance seen so far; a draft stops below its layer's threshold.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from lite.decoders.names import (
    BASELINE_NAMES,
    DRAFT_TOKENS,
    DecoderName,
    decoder_name,
)
from lite.io import InputError, read_json, where

if TYPE_CHECKING:  # the policies need torch; names and specs stay light for the Snakefile
    from lite.decoders.gates import ExitGate
    from lite.decoders.policies import ExitPolicy


@dataclasses.dataclass(frozen=True)
class Draft:
    """How self-speculative drafts are made: from which layer, how many per round, when to stop early."""

    layer: int  # E: the draft exit layer, 1 <= E < N
    tokens: int = DRAFT_TOKENS  # k: most drafts per verification round
    threshold: float | None = None  # drafting stops when no row's draft confidence reaches this

    def __post_init__(self) -> None:
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 1:
            raise ValueError(f"Draft.layer must be a layer >= 1, got {self.layer!r}")
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
            raise ValueError(f"Draft.tokens must be >= 1, got {self.tokens!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"Draft.threshold must be in [0, 1] or None, got {self.threshold!r}")


@dataclasses.dataclass(frozen=True)
class AdaptiveDraft:
    """Self-speculative drafting that picks its draft layer and draft count every round from the
    acceptance seen so far (``lite.decoders.speculative.DraftChooser``), among ``layers``; drafting
    stops when the draft layer's confidence falls below that layer's threshold in every row."""

    layers: tuple[int, ...]  # candidate draft layers, each 1 <= E < N
    tokens: int = DRAFT_TOKENS  # most drafts per verification round
    # per layer, the confidence below which drafting stops (a layer without one drafts on)
    thresholds: dict[int, float] = dataclasses.field(default_factory=dict)
    # what a round costs besides its layers and heads (committing, masks, positions, the host
    # reading the verdict), in passes through one layer: about 8 measured on a CPU (12-layer model
    # at two widths, batch 1); 0 reduces the choice to the weights read
    round_cost: float = 8.0

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("AdaptiveDraft.layers must name at least one draft layer")
        for layer in self.layers:  # the same checks as a fixed draft's
            self.at(layer, self.tokens)

    def at(self, layer: int, tokens: int) -> Draft:
        """The fixed draft of one round: ``tokens`` drafts from ``layer``, with its threshold (an
        exit threshold above 1, "never exit", becomes 1: drafting stops unless certain)."""
        threshold = self.thresholds.get(layer)
        return Draft(layer, tokens, None if threshold is None else min(float(threshold), 1.0))


@dataclasses.dataclass(frozen=True)
class DecoderSpec:
    """A decoder, fully specified. Build it with ``decoder_from_name``; ``resolve`` binds it to a model.
    ``kind`` is how ``decode`` runs it (a sweep point as ``dynamic``, a baseline by its own policy);
    ``named`` holds what its name says."""

    kinds: ClassVar[tuple[str, ...]] = ("final", "fixed", "dynamic", *BASELINE_NAMES)

    name: str  # as in paths and records, e.g. "dynamic-paper"
    kind: str  # one of ``kinds``
    checkpoints: tuple[int, ...]  # ascending exit layers; after resolve() they end with N
    layer: int | None = None  # fixed-L{k}: k; speculative-L{E}: E
    thresholds: dict[int, float] | None = None  # dynamic: checkpoint layer -> threshold (> 1: never)
    seed: int = 0  # random baselines: with the prompt id, fixes every random exit
    gate: str = "head"  # dynamic: what decides where the head is read (lite.decoders.gates)
    fill: str = "exact"  # dynamic: exited tokens' deeper keys/values, exact catch-up or copy (CALM)
    gates: dict | None = None  # a probe or saturation gate's exit-gates document (lite.probes)
    gates_source: str = ""  # where ``gates`` was read, for error messages

    def __post_init__(self) -> None:
        if self.kind not in self.kinds:
            raise InputError(f"DecoderSpec field 'kind': {self.kind!r} is not one of {', '.join(self.kinds)}")
        cps = self.checkpoints
        if not cps or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in cps):
            raise InputError(f"DecoderSpec field 'checkpoints': need layers >= 1, got {list(cps)}")
        if list(cps) != sorted(set(cps)):
            raise InputError(f"DecoderSpec field 'checkpoints': must ascend without repeats, got {list(cps)}")
        if self.kind in ("fixed", "speculative") and (self.layer is None or self.layer < 1):
            raise InputError(f"DecoderSpec field 'layer': decoder {self.name!r} needs a layer >= 1")
        if (self.gate != "head" or self.fill != "exact") and self.kind != "dynamic":
            raise InputError(f"DecoderSpec field 'gate'/'fill': decoder {self.name!r} is not a dynamic exit")
        if self.gate != "head" and self.gates is None:
            raise InputError(
                f"DecoderSpec field 'gates': decoder {self.name!r} needs an exit-gates file (--gates FILE)"
            )
        if self.kind == "dynamic":
            if self.thresholds is None:
                raise InputError(f"DecoderSpec field 'thresholds': decoder {self.name!r} needs thresholds")
            for layer, value in self.thresholds.items():
                if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                    raise InputError(
                        f"DecoderSpec field 'thresholds': layer {layer} has {value!r}, need a number >= 0"
                    )

    def resolve(self, total_layers: int) -> DecoderSpec:
        """Check the spec against an N-layer model (N = ``total_layers``); N joins the checkpoints."""
        if self.layer is not None and not 1 <= self.layer <= total_layers:
            raise InputError(f"decoder {self.name!r}: layer {self.layer} is outside 1..{total_layers}")
        outside = [c for c in self.checkpoints if c > total_layers]
        if outside:
            raise InputError(f"checkpoint layer {outside[0]} is outside 1..{total_layers}")
        checkpoints = tuple(sorted({*self.checkpoints, total_layers}))
        if self.kind == "dynamic":
            stray = [layer for layer in self.thresholds if layer not in checkpoints]
            if stray:
                raise InputError(
                    f"decoder {self.name!r}: threshold for layer {stray[0]}, which is not a checkpoint "
                    f"({list(checkpoints)})"
                )
            missing = [c for c in checkpoints[:-1] if c not in self.thresholds]
            if missing:
                raise InputError(f"decoder {self.name!r}: no threshold for checkpoint layer {missing[0]}")
        return dataclasses.replace(self, checkpoints=checkpoints)

    @property
    def named(self) -> DecoderName:
        """What its name says: family, reference, whether ``decode`` meters it (``decoder_name``)."""
        return decoder_name(self.name)

    def exit_gate(self, model) -> ExitGate | None:
        """The gate of a ``-probe`` or ``-saturation`` decoder for ``model``, else None."""
        if self.gate == "head":
            return None
        from lite.decoders.gates import gate_from_document

        layers = self.checkpoints[:-1]
        thresholds = [self.thresholds[layer] for layer in layers]
        return gate_from_document(model, self.gate, self.gates, thresholds, layers, self.gates_source)

    def policy(self, keys: Sequence[str]) -> ExitPolicy:
        """The exit policy of an early-exit decoder for a batch of prompts named by ``keys``."""
        from lite.decoders.policies import RandomPolicy, SequentialPolicy, ThresholdPolicy

        intermediate = self.checkpoints[:-1]
        if self.kind == "dynamic":
            return ThresholdPolicy([self.thresholds[c] for c in intermediate])
        if self.kind == "random-half":
            return RandomPolicy(0.5, len(intermediate), self.seed, keys)
        if self.kind == "random-k":
            return RandomPolicy(1.0 / len(self.checkpoints), len(intermediate), self.seed, keys)
        if self.kind == "sequential":
            return SequentialPolicy(len(self.checkpoints))
        raise ValueError(f"decoder {self.name!r} has no exit policy")


@dataclasses.dataclass(frozen=True)
class SpeculativeSpec(DecoderSpec):
    """A ``speculative-L{E}`` decoder; ``layer`` is the draft layer E. A class of its own so that
    the draft settings are written only into the configs of the decoder they belong to."""

    kinds: ClassVar[tuple[str, ...]] = ("speculative",)

    draft_tokens: int = DRAFT_TOKENS  # most drafts per verification round
    draft_threshold: float | None = None  # a row stops drafting below this draft confidence
    # speculative-adaptive: the candidate draft layers (``layer`` is the shallowest) and per layer
    # the confidence below which a draft stops (the dynamic exit's thresholds)
    draft_layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            self.draft  # noqa: B018 - validates the draft settings
        except ValueError as err:
            raise InputError(f"decoder {self.name!r}: {err}") from None

    @property
    def draft(self) -> Draft | AdaptiveDraft:
        if self.draft_layers is not None:
            return AdaptiveDraft(self.draft_layers, self.draft_tokens, dict(self.thresholds or {}))
        return Draft(self.layer, self.draft_tokens, self.draft_threshold)

    def resolve(self, total_layers: int) -> SpeculativeSpec:
        deepest = max(self.draft_layers or (self.layer,))
        if deepest >= total_layers:
            raise InputError(
                f"decoder {self.name!r}: draft layer {deepest} must be below the final layer {total_layers}"
            )
        return super().resolve(total_layers)


def decoder_from_name(
    name: str,
    checkpoints: Sequence[int],
    thresholds: dict[int, float] | None = None,
    seed: int = 0,
    n_layers: int | None = None,
    *,
    draft_tokens: int = DRAFT_TOKENS,
    draft_threshold: float | None = None,
    draft_layers: Sequence[int] = (),
    gates: dict | None = None,
    gates_source: str = "",
) -> DecoderSpec:
    """Parse a decoder name (see the module docstring); with ``n_layers`` also check it against the model.

    Unknown names raise ``InputError`` listing the valid ones; a fixed or draft layer outside the
    model's names it. ``draft_tokens`` and ``draft_threshold`` are the draft settings of
    ``speculative-L{E}`` (``SpeculativeSpec``); ``speculative-adaptive`` chooses among
    ``draft_layers``, stopping drafts below ``thresholds``. ``gates`` is the exit-gates document
    (``lite.probes``) a ``-probe`` or ``-saturation`` decoder reads, from ``gates_source``.
    """
    named = decoder_name(name)
    checkpoints = tuple(sorted(set(checkpoints)))
    if named.family == "final":
        spec = DecoderSpec(name, "final", checkpoints, seed=seed)
    elif named.family == "fixed":
        layer = _named_layer(name, named.layer, n_layers)
        spec = DecoderSpec(name, "fixed", checkpoints, layer=layer, seed=seed)
    elif named.family == "speculative" and named.layer is not None:
        layer = _named_layer(name, named.layer, None if n_layers is None else n_layers - 1)
        spec = SpeculativeSpec(
            name,
            "speculative",
            checkpoints,
            layer=layer,
            seed=seed,
            draft_tokens=draft_tokens,
            draft_threshold=draft_threshold,
        )
    elif named.family == "speculative":  # speculative-adaptive
        if not draft_layers:
            raise InputError(f"decoder {name!r} needs draft layers to choose from")
        layers = tuple(sorted(set(draft_layers)))
        spec = SpeculativeSpec(
            name,
            "speculative",
            checkpoints,
            layer=layers[0],
            thresholds={int(k): float(v) for k, v in (thresholds or {}).items()},
            seed=seed,
            draft_tokens=draft_tokens,
            draft_layers=layers,
        )
    elif named.thresholded:
        if thresholds is None:
            raise InputError(f"decoder {name!r} needs thresholds (--thresholds FILE_OR_JSON)")
        spec = DecoderSpec(
            name,
            "dynamic",
            checkpoints,
            thresholds={int(k): float(v) for k, v in thresholds.items()},
            gate=named.gate,
            fill=named.fill,
            gates=gates if named.gate != "head" else None,
            gates_source=gates_source,
        )
    else:  # a baseline: its policy is its name
        spec = DecoderSpec(name, name, checkpoints, seed=seed)
    return spec if n_layers is None else spec.resolve(n_layers)


def _named_layer(name: str, layer: int, highest: int | None) -> int:
    """The layer in a decoder's name (``fixed-L{k}``, ``speculative-L{E}``), within 1..``highest``."""
    if layer < 1 or (highest is not None and layer > highest):
        bound = f"1..{highest}" if highest is not None else ">= 1"
        raise InputError(f"decoder {name!r}: layer {layer} is outside {bound}")
    return layer


def parse_thresholds(source: str | os.PathLike) -> dict[int, float]:
    """Thresholds from a file (docs/records.md "Thresholds") or inline JSON (that or a bare mapping)."""
    path = Path(source)
    if path.is_file():
        document, label = read_json(path), str(path)
    else:
        try:
            document, label = json.loads(str(source)), "--thresholds"
        except json.JSONDecodeError:
            raise InputError(f"--thresholds: {str(source)!r} is neither a file nor a JSON mapping") from None
    if isinstance(document, dict) and "thresholds" in document:
        document = document["thresholds"]
        field = "thresholds"
    else:
        field = None
    if not isinstance(document, dict) or not document:
        raise InputError(f"{where(label, None, field)}: expected a non-empty mapping layer -> threshold")
    thresholds = {}
    for key, value in document.items():
        try:
            layer = int(key)
        except (TypeError, ValueError):
            raise InputError(f"{where(label, None, key)}: a layer number is expected as key") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
            raise InputError(f"{where(label, None, key)}: threshold must be a number >= 0, got {value!r}")
        thresholds[layer] = float(value)
    return thresholds
