"""How closely decoders follow their references: HF ``generate`` for ``final``, the no-cache loop
for a KV-cached early exit. In float32 they agree token for token; in bfloat16 blocks of different
shapes round differently, so a near-tie may flip a token and ``agreement_check`` measures how often.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence

import torch

from lite.decoders.blocks import device_of, n_layers
from lite.decoders.dispatch import decode
from lite.decoders.generation import Generation
from lite.decoders.records import fit_to_context, pad_id, run_batches, stop_ids
from lite.decoders.specs import DecoderSpec


def hf_greedy(
    model, prompt: list[int], *, max_new_tokens: int, eos_ids: Collection[int], pad_id: int
) -> list[int]:
    """HF ``generate``'s greedy tokens for one prompt (batch 1), the reference ``final`` equals.

    Empty ``eos_ids``: exactly ``max_new_tokens`` tokens (an empty list, since None would fall
    back to the model's own EOS).
    """
    (tokens,) = hf_greedy_batch(
        model, [prompt], max_new_tokens=max_new_tokens, eos_ids=eos_ids, pad_id=pad_id
    )
    return tokens


def hf_greedy_batch(
    model,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    pad_id: int,
    assistant_early_exit: int | None = None,
) -> list[list[int]]:
    """HF ``generate``'s greedy tokens for a batch of prompts, left-padded with an attention mask
    (as HF asks of decoder-only models); each response ends at its first stop token.
    ``assistant_early_exit``: HF's LayerSkip self-speculation drafting from that layer (one prompt
    at a time). It goes on this call's config only: set on ``model.generation_config``, which
    ``generate`` reads for every option a config leaves unset, the drafts' own ``generate`` calls
    would be assisted too (the same tokens, many times slower)."""
    width = max(len(prompt) for prompt in prompts)
    device = device_of(model)
    ids = torch.tensor(
        [[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device
    )  # (batch, width)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    config = copy.deepcopy(model.generation_config)
    config.eos_token_id = sorted(eos_ids)
    config.pad_token_id = pad_id
    config.do_sample = False
    config.max_new_tokens = max_new_tokens
    if assistant_early_exit is not None:
        config.assistant_early_exit = assistant_early_exit
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=mask, generation_config=config)
    responses = []
    for row in out[:, width:].tolist():  # rows that stopped early are padded after their stop token
        end = next((i + 1 for i, token in enumerate(row) if token in eos_ids), len(row))
        responses.append(row[:end])
    return responses


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
    (their generation records, same order): HF ``generate`` for ``final`` and speculative decoding,
    the no-cache loop for a KV-cached early exit (``DecoderName.reference``). ``reference`` is None
    (and nothing is decoded) where there is none."""
    spec = spec.resolve(n_layers(model))
    eos, pad = stop_ids(model, tokenizer), pad_id(tokenizer)
    name = spec.named.reference(kv_cache)
    if name == "hf-generate":
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
    elif name == "nocache":

        def run(prompts: list[list[int]], keys: list[str]) -> list[Generation]:
            return decode(
                model, prompts, spec, max_new_tokens=max_new_tokens, eos_ids=eos, pad_id=pad, keys=keys
            )

        results = run_batches(
            model, tokenizer, eval_records, batch_size, max_new_tokens, run, False, "reference"
        )
        reference = [gen.token_ids for *_, gen in results]
    else:
        return {"reference": None, "prompts": 0}
    return {"reference": name, **agreement([r["token_ids"] for r in produced], reference)}
