"""Generation and trace records (docs/records.md): the eval set's prompts, decoded in batches.

Prompts are ``lite.data.encode_prompt`` ids, exactly what tuning conditioned on, left-truncated by
``fit_to_context`` where they would not leave room for the response in the model's context.
FLOPs per record come from ``lite.flops``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from tqdm import tqdm

from lite.data import fit_prompt
from lite.decoders.blocks import n_layers
from lite.decoders.dispatch import decode, trace
from lite.decoders.generation import Generation
from lite.decoders.specs import DecoderSpec
from lite.flops import ModelShape, generation_flops
from lite.io import InputError


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
    garbage without an error; generation, traces and the latency benchmark all take prompts from here
    so that every long prompt is cut alike and the cut can be recorded.
    """
    return fit_prompt(tokenizer, record, model.config.max_position_embeddings - max_new_tokens)


def pad_id(tokenizer) -> int:
    """Padding id for left padding (masked, so any id works; EOS when the tokenizer has no pad)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@dataclasses.dataclass(frozen=True)
class RunLabels:
    """The workflow's wildcards, copied into every record so later stages group by fields."""

    model: str  # base model name, e.g. "tiny12"
    tuning: str  # "it", "lite", "lite_weighted", ...
    evalset: str  # eval set name, e.g. "vic"

    def __post_init__(self) -> None:
        for field in ("model", "tuning", "evalset"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise InputError(f"RunLabels field {field!r}: need a non-empty name, got {value!r}")


def run_batches(
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
    max_new_tokens: int,
    batch_size: int,
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
    for record, prompt, cut, gen in run_batches(
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
                "flops": generation_flops(
                    shape,
                    len(prompt),
                    gen.exit_layers,
                    gen.heads,
                    fill=spec.fill,
                    gate=spec.gate,
                    gate_checks=gen.gate_checks,
                ),
            }
        )
    return records


def trace_records(
    model,
    tokenizer,
    eval_records: Sequence[dict],
    labels: RunLabels,
    *,
    max_new_tokens: int,
    batch_size: int,
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
    for record, prompt, cut, gen in run_batches(
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
