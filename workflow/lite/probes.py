"""Cheap exit gates per checkpoint layer, fitted on calibration traces (``lite probes``).

An early-exit decoder reads the shared norm + LM head at every intermediate checkpoint; over a
large vocabulary that check costs as much as a few layers, and with a KV cache it is most of what
a token that goes deep pays beyond final-layer decoding. A gate is a cheap score of layer l's
hidden state: the decoder reads the head only where the gate passes, and the token exits there
only where the head's confidence also reaches the decoder's threshold (the head may veto). Two
gates per checkpoint layer l:

- ``probe``: a logistic regression on the *normed* hidden state x (the shared final norm applied to
  layer l's raw output, the head's own input) of whether layer l's head predicts the final layer's
  token: ``p = sigmoid(weight . x + bias)``. The decoder reads the head where ``p >= gate``.
- ``saturation`` (CALM's hidden-state saturation, no parameters): the cosine similarity of layer
  l's raw output with the raw output of the previous checkpoint layer (of the embeddings, layer
  0, for the first checkpoint). The decoder reads the head where ``cosine >= gate``.

Both cut-offs pass ``recall`` of the "agreeing" positions (where layer l's head already predicts
the final layer's token): each is the ``1 - recall`` quantile of its score over them. Without
agreeing positions both are ``NEVER`` (nothing passes), with a ``note``. The probe is thus a second
exit signal beside the confidence: a token leaves only where both say so.

The probe's cut-off is raised to its ``break_even`` where that is higher: the probability of
agreement at which a check pays for itself, ``c / (N - l)`` for a check costing c layers
(``lite.flops.check_cost_ratio``) that lets a token skip the N - l layers above. On the default a
check costs 1.25 of 12 layers and the recall cut-off is the higher one; on SmolLM2-135M a check
costs 8 of 30 layers, so a check at layer 20 must agree 80 % of the time to be worth reading.
Saturation's cosine is no probability: its cut-off stays the recall one.

Document (``ExitGates.to_document``; ``read_gates`` checks it)::

    {"kind": "exit-gates", "recall": 0.95, "hidden": 64,
     "layers": {"2": {"probe": {"weight": [...hidden floats...], "bias": 0.1, "gate": 0.52,
                                "auc": 0.88, "l2": 0.01, "break_even": 0.125,
                                "at_thresholds": {"0.5": {"passed_pct": 89.0, "exits_kept_pct": 96.1},
                                                  "0.7": {...}, "0.9": {...}}},
                      "saturation": {"gate": 0.42, "previous": 0, "at_thresholds": {...}},
                      "positions": 3012, "agreeing": 1837, "agree_pct": 61.0, "held_out": 1004,
                      "note": null}, ...}}

Held out: ``lite probes`` fits each probe on two thirds of the calibration sequences and reads
the cut-offs and the evidence off the other third (every third sequence, ``held_out_positions``;
with fewer than 30 sequences everything is read off all positions),
with the penalty ``l2`` of ``L2_GRID`` that gives the held-out positions the lowest cross-entropy.
A probe has as many weights as the model is wide (576 on SmolLM2-135M) against a few thousand
positions: cut on its own fit data, its gate passed fewer positions than ``recall`` promised, and
its AUC there read 1.000. ``held_out`` is the count of positions the cut-offs were read on.

``auc``: the probe's ROC AUC for the agreement label on the held-out positions. ``at_thresholds``,
per reference threshold t: ``passed_pct``, the share of the held-out positions the gate passes;
``exits_kept_pct``, the share of those with confidence >= t (those the head alone would let out
at t) it passes (null where there are none). Only ``kind``, ``hidden``, ``layers`` and per layer
the probe's ``weight``, ``bias``, ``gate`` and the saturation's ``gate`` are required; the rest is
evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from lite.io import InputError, read_json, where

KIND = "exit-gates"
THRESHOLDS = (0.5, 0.7, 0.9)  # the evidence's reference thresholds
NEVER = 2.0  # a gate above every probability and cosine: nothing passes
ONE_CLASS_BIAS = 20.0  # a probe fitted on one class: sigmoid(+-20) is 1 or 0 in fp32
L2 = 1e-3  # penalty on the standardized probe weights (per position: scale-free in n)
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)  # the penalties tried against the held-out positions
HELD_OUT_EVERY = 3  # every third calibration sequence is held out of the probes' fit ...
HELD_OUT_LEAST = 10  # ... when that makes at least this many sequences


@dataclass(frozen=True)
class AtThreshold:
    """What a gate does at one decoder threshold t on the calibration positions (percentages)."""

    passed_pct: float | None = None  # of all positions
    exits_kept_pct: float | None = None  # of the positions with confidence >= t (None: there are none)


@dataclass(frozen=True)
class LayerGates:
    """Both gates of one checkpoint layer."""

    layer: int
    weight: tuple[float, ...]  # (hidden,) probe weights on the normed hidden state
    bias: float
    probe_gate: float  # the probe passes where sigmoid(weight . x + bias) >= probe_gate
    saturation_gate: float  # the saturation passes where cos(raw hidden at layer, at previous) >= this
    previous: int  # the saturation's reference layer (0: the embeddings)
    auc: float | None = None  # the probe's ROC AUC for agreement (None: one class only)
    l2: float | None = None  # the penalty the probe was fitted with
    break_even: float | None = None  # the probability at which a check pays for itself (a floor of the gate)
    probe_at: dict[float, AtThreshold] = field(default_factory=dict)  # threshold -> evidence
    saturation_at: dict[float, AtThreshold] = field(default_factory=dict)
    positions: int | None = None
    agreeing: int | None = None  # positions where the head's argmax is the final layer's token
    held_out: int | None = None  # positions the cut-offs and evidence were read on (None: all)
    note: str | None = None

    @property
    def agree_pct(self) -> float | None:
        return _share(self.agreeing, self.positions)


@dataclass(frozen=True)
class ExitGates:
    """The gates of every checkpoint layer of one (model, tuning)."""

    recall: float | None
    hidden: int
    layers: Mapping[int, LayerGates]  # layer -> gates, ascending

    def to_document(self) -> dict:
        layers = {}
        for layer, g in self.layers.items():
            layers[str(layer)] = {
                "probe": {
                    "weight": list(g.weight),
                    "bias": g.bias,
                    "gate": g.probe_gate,
                    "auc": g.auc,
                    "l2": g.l2,
                    "break_even": g.break_even,
                    "at_thresholds": _at_document(g.probe_at),
                },
                "saturation": {
                    "gate": g.saturation_gate,
                    "previous": g.previous,
                    "at_thresholds": _at_document(g.saturation_at),
                },
                "positions": g.positions,
                "agreeing": g.agreeing,
                "agree_pct": g.agree_pct,
                "held_out": g.held_out,
                "note": g.note,
            }
        return {"kind": KIND, "recall": self.recall, "hidden": self.hidden, "layers": layers}

    @classmethod
    def from_document(cls, doc: Any, source: str | None = None) -> ExitGates:
        """Check a document; errors are ``InputError`` naming ``source`` and the field."""

        def bad(field: str, problem: str) -> InputError:
            return InputError(f"{where(source, field=field)}: {problem}")

        if not isinstance(doc, dict):
            raise bad("kind", f"expected a JSON object, got {type(doc).__name__}")
        if doc.get("kind") != KIND:
            raise bad("kind", f"expected {KIND!r}, got {doc.get('kind')!r}")
        recall = _number(doc, "recall", bad, "recall", optional=True)
        if recall is not None and not 0 < recall <= 1:
            raise bad("recall", f"must lie in (0, 1], got {recall}")
        hidden = doc.get("hidden")
        if not _is_int(hidden) or hidden < 1:
            raise bad("hidden", f"expected a positive integer, got {hidden!r}")
        entries = doc.get("layers")
        if not isinstance(entries, dict) or not entries:
            raise bad("layers", "expected a non-empty object of layer -> gates")
        keys = {}
        for key in entries:
            if not (isinstance(key, str) and key.isdigit() and int(key) >= 1):
                raise bad(f"layers.{key}", "layer keys must be positive integers")
            keys[int(key)] = key
        default_previous = previous_layers(sorted(keys))
        parsed: dict[int, LayerGates] = {}
        for layer in sorted(keys):
            base = f"layers.{keys[layer]}"
            entry = entries[keys[layer]]
            if not isinstance(entry, dict):
                raise bad(base, "expected an object with 'probe' and 'saturation'")
            probe, saturation = entry.get("probe"), entry.get("saturation")
            for name, part in (("probe", probe), ("saturation", saturation)):
                if not isinstance(part, dict):
                    raise bad(f"{base}.{name}", "expected an object")
            weight = probe.get("weight")
            if not isinstance(weight, list) or not all(_is_number(w) for w in weight):
                raise bad(f"{base}.probe.weight", "expected a list of numbers")
            if len(weight) != hidden:
                raise bad(f"{base}.probe.weight", f"{len(weight)} numbers but 'hidden' is {hidden}")
            previous = saturation.get("previous", default_previous[layer])
            if not _is_int(previous) or not 0 <= previous < layer:
                raise bad(
                    f"{base}.saturation.previous", f"expected a layer in 0..{layer - 1}, got {previous!r}"
                )
            counts = {}
            for name in ("positions", "agreeing", "held_out"):
                value = entry.get(name)
                if value is not None and (not _is_int(value) or value < 0):
                    raise bad(f"{base}.{name}", f"expected a count, got {value!r}")
                counts[name] = value
            note = entry.get("note")
            if note is not None and not isinstance(note, str):
                raise bad(f"{base}.note", f"expected a string, got {note!r}")
            parsed[layer] = LayerGates(
                layer=layer,
                weight=tuple(float(w) for w in weight),
                bias=_number(probe, "bias", bad, f"{base}.probe.bias"),
                probe_gate=_number(probe, "gate", bad, f"{base}.probe.gate"),
                saturation_gate=_number(saturation, "gate", bad, f"{base}.saturation.gate"),
                previous=previous,
                auc=_number(probe, "auc", bad, f"{base}.probe.auc", optional=True),
                l2=_number(probe, "l2", bad, f"{base}.probe.l2", optional=True),
                break_even=_number(probe, "break_even", bad, f"{base}.probe.break_even", optional=True),
                probe_at=_read_at(probe, bad, f"{base}.probe"),
                saturation_at=_read_at(saturation, bad, f"{base}.saturation"),
                note=note,
                **counts,
            )
        return cls(recall=recall, hidden=hidden, layers=parsed)


def read_gates(path: str) -> ExitGates:
    """Read and check an exit-gates file (``ExitGates.from_document``)."""
    return ExitGates.from_document(read_json(path), str(path))


def _share(part: int | None, whole: int | None) -> float | None:
    return None if part is None or not whole else 100.0 * part / whole


def _at_document(at: Mapping[float, AtThreshold]) -> dict:
    return {str(t): {"passed_pct": e.passed_pct, "exits_kept_pct": e.exits_kept_pct} for t, e in at.items()}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(obj: dict, key: str, bad, field: str, optional: bool = False) -> float | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not _is_number(value):
        raise bad(field, f"expected a finite number, got {value!r}")
    return float(value)


def _read_at(obj: dict, bad, base: str) -> dict[float, AtThreshold]:
    entries = obj.get("at_thresholds")
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise bad(f"{base}.at_thresholds", "expected an object of threshold -> evidence")
    out = {}
    for key, entry in entries.items():
        name = f"{base}.at_thresholds.{key}"
        try:
            threshold = float(key)
        except ValueError:
            raise bad(name, "keys must be thresholds (numbers)") from None
        if not isinstance(entry, dict):
            raise bad(name, "expected an object")
        out[threshold] = AtThreshold(
            *(_number(entry, k, bad, f"{name}.{k}", optional=True) for k in ("passed_pct", "exits_kept_pct"))
        )
    return out


def previous_layers(layers: Sequence[int]) -> dict[int, int]:
    """Each ascending checkpoint's saturation reference: the checkpoint before it, 0 for the first."""
    return {layer: prev for prev, layer in zip([0, *layers[:-1]], layers, strict=True)}


# ---- features ----------------------------------------------------------------------------------


class GateFeatures(NamedTuple):
    """Per checkpoint layer, one row per generated position of every sequence (in order)."""

    normed: dict[int, Any]  # layer -> (n, hidden) float32: the final norm on the layer's raw output
    saturation: dict[int, Any]  # layer -> (n,) float32: cosine with the previous checkpoint's output
    confidence: dict[int, Any]  # layer -> (n,) float32: the layer's head's max softmax probability
    labels: dict[int, Any]  # layer -> (n,) bool: the layer's head argmax is the final layer's token


def gate_features(
    model, prompts: Sequence[list[int]], tokens: Sequence[list[int]], layers: Sequence[int]
) -> GateFeatures:
    """Teacher-forced features, head confidences and labels of the gates at ``layers`` (ascending,
    within 1..N-1).

    One sequence at a time (no padding), prompt + generated tokens: the position predicting
    generated token t is ``len(prompt) - 1 + t``. ``tokens[i]`` are the final layer's tokens
    (the trace's ``token_ids``); a layer's label is whether its head's argmax equals them. The
    confidence is ``exit_head``'s: the float32 softmax probability of the argmax.
    """
    import torch

    from lite.decoders.blocks import device_of, final_norm, n_layers, normed_head

    total = n_layers(model)
    layers = list(layers)
    if not layers or layers != sorted(set(layers)) or not all(1 <= layer < total for layer in layers):
        raise InputError(f"gate layers must be ascending, distinct and within 1..{total - 1}, got {layers}")
    if len(prompts) != len(tokens):
        raise ValueError(f"{len(prompts)} prompts but {len(tokens)} token lists")
    previous = previous_layers(layers)
    device = device_of(model)
    parts: dict[str, dict[int, list]] = {
        name: {layer: [] for layer in layers} for name in GateFeatures._fields
    }
    with torch.inference_mode():
        for prompt, generated in zip(prompts, tokens, strict=True):
            if not generated:
                continue
            if not prompt:
                raise ValueError("every prompt needs at least one token")
            # the last generated token is never an input: T positions predict tokens 0..T-1
            ids = torch.tensor([list(prompt) + list(generated[:-1])], dtype=torch.long, device=device)
            out = model(input_ids=ids, output_hidden_states=True, use_cache=False, logits_to_keep=1)
            rows = slice(len(prompt) - 1, None)  # (T,) positions
            target = torch.tensor(generated, dtype=torch.long, device=device)  # (T,)
            for layer in layers:
                raw = out.hidden_states[layer][0, rows]  # (T, hidden): raw output of the layer
                before = out.hidden_states[previous[layer]][0, rows]  # (T, hidden)
                x = final_norm(model, raw)  # (T, hidden)
                head = normed_head(model, x)  # exit_head's arithmetic, on every position
                parts["normed"][layer].append(x.float().cpu())
                parts["saturation"][layer].append(
                    torch.nn.functional.cosine_similarity(raw.float(), before.float(), dim=-1).cpu()
                )  # (T,)
                parts["confidence"][layer].append(head.confidence.cpu())  # (T,)
                parts["labels"][layer].append((head.tokens == target).cpu())  # (T,)
    hidden = model.config.hidden_size
    empty = {
        "normed": torch.zeros((0, hidden)),
        "saturation": torch.zeros(0),
        "confidence": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.bool),
    }
    return GateFeatures(
        **{
            name: {layer: torch.cat(p) if p else empty[name] for layer, p in per_layer.items()}
            for name, per_layer in parts.items()
        }
    )


def trace_labels(traces: Sequence[dict], layers: Sequence[int]) -> dict[int, np.ndarray]:
    """The traces' own labels, in ``gate_features`` order: per layer (n,) bool, whether
    ``layer_argmax[t][layer - 1] == token_ids[t]``."""
    out = {}
    for layer in layers:
        parts = [
            np.asarray([row[layer - 1] for row in t["layer_argmax"]], dtype=np.int64)
            == np.asarray(t["token_ids"], dtype=np.int64)
            for t in traces
            if t["token_ids"]
        ]
        out[layer] = np.concatenate(parts) if parts else np.zeros(0, bool)
    return out


# ---- fitting -----------------------------------------------------------------------------------


def fit_probe(features, labels, l2: float = L2) -> tuple[np.ndarray, float]:
    """Logistic regression ``sigmoid(weight . x + bias)`` of ``labels`` (n,) on ``features`` (n, h):
    standardized features z, mean cross-entropy plus ``l2 / 2 * |v|^2`` on the standardized
    weights v, full-batch L-BFGS from zero in float64 (deterministic). The standardization is
    folded into the returned weight (h,) and bias, so they apply to the raw features. One class
    only: zero weights and the bias of that class's certainty."""
    import torch

    x = torch.as_tensor(np.asarray(features, dtype=np.float64))  # (n, h)
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64))  # (n,)
    n, h = x.shape
    positives = float(y.sum())
    if positives in (0.0, float(n)):
        return np.zeros(h), (ONE_CLASS_BIAS if positives else -ONE_CLASS_BIAS)
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False)  # (h,) each
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # a constant feature gets weight 0
    z = (x - mean) / std  # (n, h)
    v = torch.zeros(h, dtype=torch.float64, requires_grad=True)
    rate = positives / n
    c = torch.tensor(math.log(rate / (1 - rate)), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [v, c], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
        history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ v + c, y) + 0.5 * l2 * (v @ v)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    weight = (v.detach() / std).numpy()  # (h,)
    return weight, float(c.detach() - (v.detach() / std * mean).sum())


def probe_scores(features, weight, bias: float) -> np.ndarray:
    """The probe's probability ``sigmoid(features @ weight + bias)``: features (n, h), weight (h,)
    -> (n,) float64."""
    logits = np.asarray(features, dtype=np.float64) @ np.asarray(weight, dtype=np.float64) + bias
    return 1.0 / (1.0 + np.exp(-logits))


def roc_auc(scores, labels) -> float | None:
    """ROC AUC by the rank-sum formula (ties count half); None without both classes."""
    scores = np.asarray(scores, dtype=np.float64)  # (n,)
    labels = np.asarray(labels, dtype=bool)  # (n,)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # (n,) average rank, 1-based
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def quantile_from_below(values, share: float) -> float:
    """The highest v with ``values >= v`` for at least ``share`` of ``values`` (non-empty)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))  # (k,)
    need = max(math.ceil(share * ordered.size - 1e-9), 1)  # values that must reach it
    return float(ordered[ordered.size - need])


def at_thresholds(passes: Callable[[float], np.ndarray], confidence) -> dict[float, AtThreshold]:
    """``passes(t)`` (n,) bool per reference threshold t against ``confidence`` (n,)."""
    confidence = np.asarray(confidence, dtype=np.float64)  # (n,)
    out = {}
    for t in THRESHOLDS:
        passed, exits = passes(t), confidence >= t  # (n,), (n,)
        out[t] = AtThreshold(
            passed_pct=float(100.0 * passed.mean()),
            exits_kept_pct=float(100.0 * passed[exits].mean()) if exits.any() else None,
        )
    return out


def held_out_positions(
    lengths: Sequence[int], every: int = HELD_OUT_EVERY, least: int = HELD_OUT_LEAST
) -> np.ndarray | None:
    """(sum(lengths),) bool over the positions of sequences of ``lengths`` (in ``gate_features``
    order, empty ones left out): those of every ``every``-th sequence (the 3rd, the 6th, ...).
    None where that holds out fewer than ``least`` sequences: too few to read a cut-off on, so the
    probes are fitted and cut on every position, as the document then says (no ``held_out``)."""
    lengths = [n for n in lengths if n]
    if len(lengths) // every < least:
        return None
    return np.concatenate([np.full(n, i % every == every - 1) for i, n in enumerate(lengths)])


def _cross_entropy(scores, labels) -> float:
    p = np.clip(scores, 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(labels, np.log(p), np.log1p(-p))))


def fit_layer(layer: int, previous: int, x, cosine, confidence, labels, recall: float,
              l2: float = L2, held_out=None, break_even: float | None = None) -> LayerGates:  # fmt: skip
    """Both gates of one layer: features x (n, h), cosine, confidence and labels (n,).

    ``held_out`` (n,) bool, if given, marks the positions the probe is not fitted on: its penalty is
    the one of ``L2_GRID`` that gives them the lowest cross-entropy, and the cut-offs and the
    evidence are read off them. Else the probe is fitted with ``l2`` and everything is read off all
    positions. ``break_even``, if given, is the lowest the probe's cut-off may be (the module
    docstring)."""
    x = np.asarray(x, dtype=np.float64)  # (n, h)
    cosine = np.asarray(cosine, dtype=np.float64)  # (n,)
    c = np.asarray(confidence, dtype=np.float64)  # (n,)
    labels = np.asarray(labels, dtype=bool)  # (n,)
    if x.shape[0] == 0:
        raise InputError(f"layer {layer}: no calibration positions to fit its gates on")
    if not (x.shape[0] == cosine.shape[0] == c.shape[0] == labels.shape[0]):
        raise ValueError(f"layer {layer}: features, saturation, confidence and labels differ in length")
    if held_out is None:
        read = np.ones(labels.size, dtype=bool)  # (n,) where the cut-offs and evidence are read
        weight, bias = fit_probe(x, labels, l2)
    else:
        read = np.asarray(held_out, dtype=bool)
        if read.shape != labels.shape or read.all() or not read.any():
            raise ValueError(
                f"layer {layer}: held_out must mark some but not all of the {labels.size} positions"
            )
        fits = [fit_probe(x[~read], labels[~read], penalty) for penalty in L2_GRID]
        losses = [_cross_entropy(probe_scores(x[read], w, b), labels[read]) for w, b in fits]
        chosen = int(np.argmin(losses))  # the first of equals: the weakest penalty
        (weight, bias), l2 = fits[chosen], L2_GRID[chosen]
    scores = probe_scores(x, weight, bias)  # (n,)
    s, cos, conf, agree = scores[read], cosine[read], c[read], labels[read]  # (m,) each
    if agree.all():  # a probe that passes all (0 passes any probability)
        probe_gate, saturation_gate, note = 0.0, quantile_from_below(cos, recall), None
    elif agree.any():  # each cut-off: the 1 - recall quantile of its score over the agreeing positions
        probe_gate = quantile_from_below(s[agree], recall)
        saturation_gate, note = quantile_from_below(cos[agree], recall), None
    else:
        probe_gate = saturation_gate = NEVER
        note = "no position agrees with the final layer: neither gate passes anything"
    if break_even is not None:
        probe_gate = max(probe_gate, break_even if break_even < 1 else NEVER)
    return LayerGates(
        layer=layer,
        weight=tuple(float(w) for w in weight),
        bias=bias,
        probe_gate=probe_gate,
        saturation_gate=saturation_gate,
        previous=previous,
        auc=roc_auc(s, agree),
        l2=l2,
        break_even=break_even,
        probe_at=at_thresholds(lambda t: s >= probe_gate, conf),
        saturation_at=at_thresholds(lambda t: cos >= saturation_gate, conf),
        positions=int(c.size),
        agreeing=int(labels.sum()),
        held_out=None if held_out is None else int(read.sum()),
        note=note,
    )


def fit_gates(
    features: GateFeatures,
    recall: float,
    l2: float = L2,
    held_out=None,
    check_layers: float | None = None,
    total: int | None = None,
) -> ExitGates:
    """Both gates of every layer from ``gate_features``' output (the same layers in each field);
    ``held_out`` (n,) bool: the positions (the same in every layer) ``fit_layer`` holds out. With
    ``check_layers`` (a head check's cost in layers) and ``total`` (N), each probe's cut-off is at
    least its break-even ``check_layers / (total - layer)``."""
    if not 0 < recall <= 1:
        raise InputError(f"recall must lie in (0, 1], got {recall}")
    layers = sorted(features.normed)
    if any(sorted(part) != layers for part in features):
        raise ValueError("normed, saturation, confidence and labels must cover the same layers")
    if not layers:
        raise InputError("no layers to fit gates for")
    previous = previous_layers(layers)
    out = {}
    for layer in layers:
        x, cosine, confidence, labels = (part[layer] for part in features)  # GateFeatures' order
        even = None if check_layers is None else check_layers / (total - layer)
        out[layer] = fit_layer(
            layer, previous[layer], x, cosine, confidence, labels, recall, l2, held_out, break_even=even
        )
    return ExitGates(recall=recall, hidden=len(out[layers[0]].weight), layers=out)
