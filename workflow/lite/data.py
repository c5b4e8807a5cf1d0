"""Instruction-tuning examples for a causal LM: Alpaca records -> token ids with prompt-masked labels.

A sequence is ``[BOS] prompt response EOS`` where the prompt is ``lite.prompts.render_prompt``.
Only the response and its EOS are learned; prompt positions carry the label -100 (ignored by the
loss). Prompt and response are tokenized separately so the boundary is exact, and decoders build
their prompts with ``encode_prompt`` so generation starts from the very ids training saw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lite.datasets import validate_train_record
from lite.io import InputError, read_numbered, where
from lite.loss import IGNORE_INDEX
from lite.prompts import render_prompt, template_of


def encode_prompt(tokenizer, record: dict) -> list[int]:
    """Token ids of ``[BOS] prompt`` for ``record``: what the model conditions on."""
    ids = tokenizer(render_prompt(record, template_of(tokenizer)), add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    return ids


def fit_prompt(tokenizer, record: dict, max_tokens: int) -> tuple[list[int], int]:
    """``encode_prompt`` of ``record`` within ``max_tokens``: (ids, characters cut from its text).

    A prompt longer than the model's context less the new tokens (Koala has one of 18,598
    characters, beyond LLaMA-2's 4,096 tokens with 512 new ones) would crash the decoder or run
    past the positions the model was trained on. It is cut from the left: first the instruction,
    then the input, by as many characters as needed, so the template the model was tuned on (its
    header and the response cue) stays whole and the end of the request, where a long prompt's
    question usually sits, is kept. The caller records the count per prompt, so truncated prompts
    can be counted and left out of comparisons.
    """
    ids = encode_prompt(tokenizer, record)
    cut = 0
    for field in ("instruction", "input"):
        if len(ids) <= max_tokens:
            break
        text = record.get(field) or ""
        # The fewest leading characters to drop; token counts fall (nearly) monotonically with them.
        low, high = 0, len(text)
        while low < high:
            middle = (low + high) // 2
            if len(encode_prompt(tokenizer, {**record, field: text[middle:]})) <= max_tokens:
                high = middle
            else:
                low = middle + 1
        record = {**record, field: text[low:]}
        ids, cut = encode_prompt(tokenizer, record), cut + low
    if len(ids) > max_tokens:
        raise InputError(
            f"the prompt template alone is {len(ids)} tokens, more than the {max_tokens} the context leaves"
        )
    return ids, cut


def encode_example(tokenizer, record: dict, max_length: int) -> dict[str, list[int]]:
    """``{"input_ids", "labels"}`` for one training record, prompt labelled -100.

    Sequences longer than ``max_length`` are cut from the right. At least one response token must
    survive the cut, otherwise the example teaches nothing and ``InputError`` is raised.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no eos token; the model could never learn to stop")
    prompt = encode_prompt(tokenizer, record)
    response = tokenizer(record["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt) >= max_length:
        raise InputError(
            f"prompt is {len(prompt)} tokens, max_length={max_length} leaves no room for the response"
        )
    input_ids = (prompt + response)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt) + response)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def read_train_records(path: str | os.PathLike) -> list[dict]:
    """Read and validate Alpaca records from JSONL or a JSON array (Alpaca's ``alpaca_data.json``).

    Each record needs string ``instruction`` and ``output`` and may have a string (or null)
    ``input``. Errors name the file, the line (JSONL) or 1-based record index (JSON array), and the
    field. An empty dataset is an error too.
    """
    return [record for _, record in read_numbered_records(path)]


def read_numbered_records(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """Like ``read_train_records``, each record paired with its line in the file."""
    numbered = read_numbered(path)
    if not numbered:
        raise InputError(f"{where(path)}: the training set is empty")
    return [(number, validate_train_record(item, path, number)) for number, item in numbered]


class TrainDataset(torch.utils.data.Dataset):
    """Encoded examples of a training file, in file order (the Trainer's sampler shuffles, seeded)."""

    def __init__(self, path: str | os.PathLike, tokenizer, max_length: int, skip_long: bool = False):
        """``skip_long``: drop examples whose prompt leaves no room for a response (real data has a
        few) and list them in ``skipped`` as ``file:line``; otherwise such an example is an error."""
        self.examples = []
        self.skipped: list[str] = []
        for number, record in read_numbered_records(path):
            try:
                self.examples.append(encode_example(tokenizer, record, max_length))
            except InputError as err:
                if not skip_long:
                    raise InputError(f"{where(path, number)}: {err}") from None
                self.skipped.append(where(path, number))
        if not self.examples:
            raise InputError(f"{where(path)}: no example fits max_length={max_length}")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.examples[index]


def read_corpus_texts(path: str | os.PathLike) -> list[str]:
    """The ``text`` of every record of a pretraining corpus (JSONL ``{"text": ...}``)."""
    numbered = read_numbered(path)
    if not numbered:
        raise InputError(f"{where(path)}: the corpus is empty")
    texts = []
    for number, record in numbered:
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f"{where(path, number, 'text')}: expected an object with a string 'text'")
        if not record["text"].strip():
            raise InputError(f"{where(path, number, 'text')}: empty")
        texts.append(record["text"])
    return texts


class CorpusDataset(TrainDataset):
    """Pretraining rows ``[BOS] text EOS`` with every token learned (the ordinary LM loss).

    Rows longer than ``max_length`` are an error: a cut row would teach a fact without its end.
    """

    def __init__(self, path: str | os.PathLike, tokenizer, max_length: int):
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("tokenizer needs bos and eos tokens for corpus rows")
        self.skipped = []
        self.examples = []
        for number, text in enumerate(read_corpus_texts(path), start=1):
            ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
            ids.append(tokenizer.eos_token_id)
            if len(ids) > max_length:
                raise InputError(f"{where(path, number, 'text')}: {len(ids)} tokens, max_length={max_length}")
            # position 0 (BOS) is never a target: labels are read shifted by one
            self.examples.append({"input_ids": ids, "labels": [IGNORE_INDEX, *ids[1:]]})


@dataclass
class PaddingCollator:
    """Right-pad a batch: input_ids with ``pad_id``, labels with -100; attention_mask marks real tokens.

    Not transformers' ``DataCollatorForSeq2Seq``: it makes the same tensors only for a tokenizer
    that pads on the right, and LLaMA's and Gemma's tokenizers pad on the left, which would move
    every example's tokens (and positions) per model family; ``tests/unit/test_data.py`` compares the
    two on real batches.
    """

    pad_id: int

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)  # (batch, seq)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)  # (batch, seq)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)  # (batch, seq)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            if len(feature["labels"]) != n:
                raise ValueError(f"example {row}: {n} input_ids but {len(feature['labels'])} labels")
            input_ids[row, :n] = torch.tensor(feature["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(feature["labels"], dtype=torch.long)
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
