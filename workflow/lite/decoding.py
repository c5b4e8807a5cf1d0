"""Decoders by name, and the generation and trace records they produce (docs/records.md).

Decoder names (the ``{decoder}`` wildcard of the workflow):

- ``final``: ordinary greedy generation from the last layer N (KV cache); equals
  ``model.generate(do_sample=False)`` token for token.
- ``fixed-L{k}``: every token from layer k; layers k+1..N are never computed (KV cache).
- ``dynamic``, ``dynamic-paper``, ``dynamic-aggressive``, ``dynamic-calibrated``: confidence-based
  early exit with the thresholds given (the suffix only names where they came from). Per token the
  checkpoints are visited in ascending order and the first whose confidence >= its threshold
  answers, else the final layer does. No KV cache: the paper's procedure, recomputing the prefix.
- ``random-half``, ``random-k``: exit at each intermediate checkpoint with probability 1/2, resp.
  1/K where K counts all exit points (the checkpoints including the final layer); paper App. E.
- ``sequential``: token t exits at exit point t mod K (cycling through the checkpoints, final included).

The machinery lives in ``lite.decoders``: ``blocks`` (``run_layers``, ``exit_head``), ``engines``
(cached fixed-layer loop, no-cache exit loop), ``policies``. Prompts are ``lite.data.encode_prompt``
ids, exactly what tuning conditioned on, left-truncated by ``fit_to_context`` where they would not
leave room for the response in the model's context. FLOPs per record come from ``lite.flops``.

Exactness: in float32 ``final`` equals HF ``generate`` and the cached exit equals the no-cache
loop token for token (tests/test_decoding.py, tests/test_fast_exits.py). In bfloat16 a block of
several positions and a single position can round differently, so a near-tie may flip a token;
``agreement_check`` measures how often, against the same reference.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from tqdm import tqdm

from lite.data import fit_prompt
from lite.decoders.blocks import device_of, n_layers
from lite.decoders.cached import exit_cached
from lite.decoders.engines import Generation, exit_nocache, greedy_cached
from lite.decoders.policies import ExitPolicy, RandomPolicy, SequentialPolicy, ThresholdPolicy
from lite.flops import ModelShape, generation_flops
from lite.io import InputError, read_json, where

DYNAMIC_NAMES = ("dynamic", "dynamic-paper", "dynamic-aggressive", "dynamic-calibrated")
BASELINE_NAMES = ("random-half", "random-k", "sequential")
VALID_NAMES = ("final", "fixed-L{k}", *DYNAMIC_NAMES, *BASELINE_NAMES)
_FIXED = re.compile(r"fixed-L(\d+)")
# dynamic-x{k}: a point of the threshold sweep (the quality/cost frontier); the workflow passes
# the paper's thresholds scaled by k (lite.plan.scaled_thresholds)
_SWEEP = re.compile(r"dynamic-x\d+(\.\d+)?")


@dataclasses.dataclass(frozen=True)
class DecoderSpec:
    """A decoder, fully specified. Build it with ``decoder_from_name``; ``resolve`` binds it to a model."""

    name: str  # as in paths and records, e.g. "dynamic-paper"
    kind: str  # "final", "fixed", "dynamic", "random-half", "random-k" or "sequential"
    checkpoints: tuple[int, ...]  # ascending exit layers; after resolve() they end with N
    layer: int | None = None  # fixed-L{k}: k
    thresholds: dict[int, float] | None = None  # dynamic: checkpoint layer -> threshold (> 1: never)
    seed: int = 0  # random baselines: with the prompt id, fixes every random exit

    def __post_init__(self) -> None:
        kinds = ("final", "fixed", "dynamic", *BASELINE_NAMES)
        if self.kind not in kinds:
            raise InputError(f"DecoderSpec field 'kind': {self.kind!r} is not one of {', '.join(kinds)}")
        cps = self.checkpoints
        if not cps or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in cps):
            raise InputError(f"DecoderSpec field 'checkpoints': need layers >= 1, got {list(cps)}")
        if list(cps) != sorted(set(cps)):
            raise InputError(f"DecoderSpec field 'checkpoints': must ascend without repeats, got {list(cps)}")
        if self.kind == "fixed" and (self.layer is None or self.layer < 1):
            raise InputError(f"DecoderSpec field 'layer': decoder {self.name!r} needs a layer >= 1")
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

    def policy(self, keys: Sequence[str]) -> ExitPolicy:
        """The exit policy of an early-exit decoder for a batch of prompts named by ``keys``."""
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


def decoder_from_name(
    name: str,
    checkpoints: Sequence[int],
    thresholds: dict[int, float] | None = None,
    seed: int = 0,
    n_layers: int | None = None,
) -> DecoderSpec:
    """Parse a decoder name (see the module docstring); with ``n_layers`` also check it against the model.

    Unknown names raise ``InputError`` listing the valid ones; a fixed layer outside 1..N names it.
    """
    checkpoints = tuple(sorted(set(checkpoints)))
    fixed = _FIXED.fullmatch(name)
    if name == "final":
        spec = DecoderSpec(name, "final", checkpoints, seed=seed)
    elif fixed is not None:
        layer = int(fixed.group(1))
        if layer < 1 or (n_layers is not None and layer > n_layers):
            bound = f"1..{n_layers}" if n_layers is not None else ">= 1"
            raise InputError(f"decoder {name!r}: layer {layer} is outside {bound}")
        spec = DecoderSpec(name, "fixed", checkpoints, layer=layer, seed=seed)
    elif name in DYNAMIC_NAMES or _SWEEP.fullmatch(name):
        if thresholds is None:
            raise InputError(f"decoder {name!r} needs thresholds (--thresholds FILE_OR_JSON)")
        spec = DecoderSpec(
            name, "dynamic", checkpoints, thresholds={int(k): float(v) for k, v in thresholds.items()}
        )
    elif name in BASELINE_NAMES:
        spec = DecoderSpec(name, name, checkpoints, seed=seed)
    else:
        raise InputError(f"unknown decoder {name!r}; valid: {', '.join(VALID_NAMES)}")
    return spec if n_layers is None else spec.resolve(n_layers)


def parse_checkpoints(text: str) -> list[int]:
    """``"2,4,6,8"`` -> [2, 4, 6, 8]."""
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"checkpoints: expected comma-separated layer numbers, got {text!r}") from None
    if not layers:
        raise InputError("checkpoints: give at least one layer")
    return layers


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


def decode(
    model,
    prompts: Sequence[list[int]],
    spec: DecoderSpec,
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    pad_id: int,
    keys: Sequence[str] | None = None,
    kv_cache: bool = False,
) -> list[Generation]:
    """Greedy generation for a batch of token-id prompts; ``keys`` name them for the random baselines.

    ``kv_cache`` runs the early-exit decoders with a KV cache and exact catch-up
    (lite.decoders.cached): the same tokens and exits as the paper's no-cache loop, much faster."""
    spec = spec.resolve(n_layers(model))
    keys = [str(i) for i in range(len(prompts))] if keys is None else list(keys)
    common = {"max_new_tokens": max_new_tokens, "eos_ids": eos_ids, "pad_id": pad_id}
    if spec.kind == "final":
        return greedy_cached(model, prompts, n_layers(model), **common)
    if spec.kind == "fixed":
        return greedy_cached(model, prompts, spec.layer, **common)
    exit_loop = exit_cached if kv_cache else exit_nocache
    return exit_loop(model, prompts, spec.checkpoints, spec.policy(keys), **common)


def hf_greedy(
    model, prompt: list[int], *, max_new_tokens: int, eos_ids: Collection[int], pad_id: int
) -> list[int]:
    """HF ``generate``'s greedy tokens for one prompt (batch 1), the reference ``final`` equals.

    Empty ``eos_ids``: exactly ``max_new_tokens`` tokens (an empty list, since None would fall
    back to the model's own EOS).
    """
    import copy

    import torch

    ids = torch.tensor([prompt], device=device_of(model))  # (1, prompt)
    config = copy.deepcopy(model.generation_config)
    config.eos_token_id = sorted(eos_ids)
    config.pad_token_id = pad_id
    config.do_sample = False
    config.max_new_tokens = max_new_tokens
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return out[0, len(prompt) :].tolist()


def agreement(produced: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> dict:
    """How closely token lists follow their references, one pair per prompt.

    Greedy decoding continues from its own tokens, so after the first difference the two responses
    are different texts: ``token_agreement`` counts the reference tokens before each prompt's first
    difference, over all reference tokens; ``prompt_agreement`` is the share of prompts with the
    same response.
    """
    if len(produced) != len(reference) or not reference:
        raise ValueError(f"need one reference per response, got {len(produced)} and {len(reference)}")
    agreeing = 0
    for mine, theirs in zip(produced, reference, strict=True):
        same = 0
        while same < min(len(mine), len(theirs)) and mine[same] == theirs[same]:
            same += 1
        agreeing += same
    tokens = sum(len(r) for r in reference)
    identical = sum(list(a) == list(b) for a, b in zip(produced, reference, strict=True))
    return {
        "prompts": len(reference),
        "tokens": tokens,
        "token_agreement": agreeing / tokens if tokens else 1.0,
        "prompt_agreement": identical / len(reference),
    }


def agreement_check(
    model,
    tokenizer,
    eval_records: Sequence[dict],
    produced: Sequence[dict],
    spec: DecoderSpec,
    *,
    max_new_tokens: int,
    batch_size: int,
    kv_cache: bool,
) -> dict:
    """Decode ``eval_records`` again with the reference of ``spec`` and compare with ``produced``
    (their generation records, same order): HF ``generate`` for ``final``, the no-cache loop for a
    KV-cached early exit. ``reference`` is None (and nothing is decoded) where there is none."""
    spec = spec.resolve(n_layers(model))
    eos, pad = stop_ids(model, tokenizer), pad_id(tokenizer)
    if spec.kind == "final":
        name = "hf-generate"
        reference = [
            hf_greedy(
                model,
                fit_to_context(model, tokenizer, r, max_new_tokens)[0],
                max_new_tokens=max_new_tokens,
                eos_ids=eos,
                pad_id=pad,
            )
            for r in eval_records
        ]
    elif spec.kind != "fixed" and kv_cache:
        name = "nocache"

        def run(prompts: list[list[int]], keys: list[str]) -> list[Generation]:
            return decode(
                model, prompts, spec, max_new_tokens=max_new_tokens, eos_ids=eos, pad_id=pad, keys=keys
            )

        results = _run_batches(
            model, tokenizer, eval_records, batch_size, max_new_tokens, run, False, "reference"
        )
        reference = [gen.token_ids for *_, gen in results]
    else:
        return {"reference": None, "prompts": 0}
    return {"reference": name, **agreement([r["token_ids"] for r in produced], reference)}


def trace(
    model, prompts: Sequence[list[int]], *, max_new_tokens: int, eos_ids: Collection[int], pad_id: int
) -> list[Generation]:
    """Final-layer greedy generation that also reads every layer's head at every generated position."""
    return greedy_cached(
        model,
        prompts,
        n_layers(model),
        max_new_tokens=max_new_tokens,
        eos_ids=eos_ids,
        pad_id=pad_id,
        every_layer=True,
    )


def stop_ids(model, tokenizer) -> set[int]:
    """Token ids that end a response: the tokenizer's EOS plus any the generation config lists."""
    ids = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if source is None:
            continue
        ids.update([source] if isinstance(source, int) else source)
    if not ids:
        raise InputError("neither the tokenizer nor the generation config has an EOS token")
    return ids


def fit_to_context(model, tokenizer, record: dict, max_new_tokens: int) -> tuple[list[int], int]:
    """A record's prompt ids within the model's context less ``max_new_tokens``, and the characters
    cut from its text (``lite.data.fit_prompt``; 0 when it fits).

    Positions past ``max_position_embeddings`` were never trained, so decoding there gives
    garbage without an error; generation, traces and the latency bench all take prompts from here
    so that every long prompt is cut alike and the cut can be recorded.
    """
    return fit_prompt(tokenizer, record, model.config.max_position_embeddings - max_new_tokens)


def pad_id(tokenizer) -> int:
    """Padding id for left padding (masked, so any id works; EOS when the tokenizer has no pad)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@dataclasses.dataclass(frozen=True)
class RunLabels:
    """The workflow's wildcards, copied into every record so later stages group by fields."""

    model: str  # base model name, e.g. "tiny8"
    tuning: str  # "it", "lite", "lite_weighted", ...
    evalset: str  # eval set name, e.g. "vic"

    def __post_init__(self) -> None:
        for field in ("model", "tuning", "evalset"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise InputError(f"RunLabels field {field!r}: need a non-empty name, got {value!r}")


def _run_batches(
    model,
    tokenizer,
    eval_records: Sequence[dict],
    batch_size: int,
    max_new_tokens: int,
    run: Callable[[list[list[int]], list[str]], list[Generation]],
    progress: bool,
    desc: str,
) -> list[tuple[dict, list[int], int, Generation]]:
    """Encode the prompts (``fit_to_context``), run them in batches of similar length, return
    (record, prompt ids, characters cut, generation) in input order."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    prompts, cuts = [], []
    for record in eval_records:
        prompt, cut = fit_to_context(model, tokenizer, record, max_new_tokens)
        prompts.append(prompt)
        cuts.append(cut)
    # Similar lengths share a batch, so little padding is computed; results do not depend on it.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[Generation | None] = [None] * len(prompts)
    with tqdm(total=len(prompts), unit="prompt", desc=desc, disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            outputs = run([prompts[i] for i in chunk], [str(eval_records[i]["id"]) for i in chunk])
            for i, output in zip(chunk, outputs, strict=True):
                results[i] = output
            bar.update(len(chunk))
    return list(zip(eval_records, prompts, cuts, results, strict=True))


def generate_records(
    model,
    tokenizer,
    eval_records: Sequence[dict],
    spec: DecoderSpec,
    labels: RunLabels,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    progress: bool = True,
    kv_cache: bool = False,
) -> list[dict]:
    """One generation record per eval record (docs/records.md "Generation record"), in input order."""
    total = n_layers(model)
    spec = spec.resolve(total)
    shape = ModelShape.from_config(model.config)
    eos, pad = stop_ids(model, tokenizer), pad_id(tokenizer)

    def run(prompts: list[list[int]], keys: list[str]) -> list[Generation]:
        return decode(
            model,
            prompts,
            spec,
            max_new_tokens=max_new_tokens,
            eos_ids=eos,
            pad_id=pad,
            keys=keys,
            kv_cache=kv_cache,
        )

    records = []
    for record, prompt, cut, gen in _run_batches(
        model, tokenizer, eval_records, batch_size, max_new_tokens, run, progress, spec.name
    ):
        records.append(
            {
                "model": labels.model,
                "tuning": labels.tuning,
                "evalset": labels.evalset,
                "decoder": spec.name,
                "id": record["id"],
                "category": record.get("category", ""),
                "instruction": record["instruction"],
                "input": record.get("input") or "",
                "reference": record.get("reference"),
                "text": tokenizer.decode(gen.token_ids, skip_special_tokens=True),
                "token_ids": gen.token_ids,
                "exit_layers": gen.exit_layers,
                "confidences": gen.confidences,
                "n_layers": total,
                "checkpoints": list(spec.checkpoints),
                "prompt_tokens": len(prompt),
                "prompt_truncated_chars": cut,
                "flops": generation_flops(shape, len(prompt), gen.exit_layers, gen.heads),
            }
        )
    return records


def trace_records(
    model,
    tokenizer,
    eval_records: Sequence[dict],
    labels: RunLabels,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    progress: bool = True,
) -> list[dict]:
    """One trace record per eval record (docs/records.md "Trace record"), in input order.

    Beyond the documented fields each record carries ``n_layers`` and ``prompt_tokens``.
    """
    total = n_layers(model)
    eos, pad = stop_ids(model, tokenizer), pad_id(tokenizer)

    def run(prompts: list[list[int]], keys: list[str]) -> list[Generation]:
        return trace(model, prompts, max_new_tokens=max_new_tokens, eos_ids=eos, pad_id=pad)

    records = []
    for record, prompt, cut, gen in _run_batches(
        model, tokenizer, eval_records, batch_size, max_new_tokens, run, progress, "trace"
    ):
        records.append(
            {
                "model": labels.model,
                "tuning": labels.tuning,
                "evalset": labels.evalset,
                "id": record["id"],
                "category": record.get("category", ""),
                "token_ids": gen.token_ids,
                "layer_argmax": gen.layer_argmax,
                "layer_confidence": gen.layer_confidence,
                "n_layers": total,
                "prompt_tokens": len(prompt),
                "prompt_truncated_chars": cut,
            }
        )
    return records
