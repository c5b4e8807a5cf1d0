"""Training examples: prompt masking, truncation, padding, and validated reading of Alpaca files."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import DataCollatorForSeq2Seq

from lite.data import PaddingCollator, TrainDataset, encode_example, encode_prompt, read_train_records
from lite.io import InputError
from lite.modeling import train_tokenizer
from lite.prompts import render_prompt

RECORDS = [
    {"instruction": "Reverse the words.", "input": "red blue green", "output": "green blue red"},
    {"instruction": "Add 3 and 4.", "input": "", "output": "7"},
    {"instruction": "Upper-case the phrase.", "input": "big cat", "output": "BIG CAT"},
]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [render_prompt(r) + r["output"] for r in RECORDS] * 20
    return train_tokenizer(texts, vocab_size=300)


def test_encode_example_masks_exactly_the_prompt(tokenizer):
    for record in RECORDS:
        example = encode_example(tokenizer, record, max_length=256)
        ids, labels = example["input_ids"], example["labels"]
        assert len(ids) == len(labels)
        prompt = encode_prompt(tokenizer, record)
        assert ids[0] == tokenizer.bos_token_id
        n_prompt = sum(label == -100 for label in labels)
        assert n_prompt == len(prompt)
        assert ids[:n_prompt] == prompt and all(label == -100 for label in labels[:n_prompt])
        assert labels[n_prompt:] == ids[n_prompt:]  # every response token is a target
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[:n_prompt], skip_special_tokens=True) == render_prompt(record)
        assert tokenizer.decode(ids[n_prompt:], skip_special_tokens=True) == record["output"]


def test_truncation_keeps_a_response_token_or_raises(tokenizer):
    record = RECORDS[0]
    n_prompt = len(encode_prompt(tokenizer, record))
    cut = encode_example(tokenizer, record, max_length=n_prompt + 1)
    assert len(cut["input_ids"]) == n_prompt + 1
    assert [label for label in cut["labels"] if label != -100] == cut["input_ids"][-1:]
    with pytest.raises(InputError, match="leaves no room for the response"):
        encode_example(tokenizer, record, max_length=n_prompt)


def test_padding_collator_pads_right_and_masks():
    batch = PaddingCollator(pad_id=9)(
        [{"input_ids": [1, 5, 6], "labels": [-100, 5, 6]}, {"input_ids": [1, 7], "labels": [-100, 7]}]
    )
    assert batch["input_ids"].tolist() == [[1, 5, 6], [1, 7, 9]]
    assert batch["labels"].tolist() == [[-100, 5, 6], [-100, 7, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert all(t.dtype == torch.long for t in batch.values())
    with pytest.raises(ValueError, match="2 input_ids but 1 labels"):
        PaddingCollator(0)([{"input_ids": [1, 2], "labels": [2]}])


@pytest.mark.parametrize(("padding_side", "same"), [("right", True), ("left", False)])
def test_transformers_seq2seq_collator_matches_ours_only_when_padding_right(
    tmp_path, tokenizer, padding_side, same
):
    """Why PaddingCollator stays: transformers' collator pads on the tokenizer's side, and LLaMA's
    and Gemma's tokenizers pad on the left."""
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    examples = list(TrainDataset(path, tokenizer, max_length=256))
    assert len({len(e["input_ids"]) for e in examples}) == len(examples)  # every row is padded but one
    sided = copy.copy(tokenizer)
    sided.padding_side = padding_side
    theirs = DataCollatorForSeq2Seq(sided, label_pad_token_id=-100, return_tensors="pt")
    for batch in (examples, examples[::-1], examples[1:]):
        ours, other = PaddingCollator(tokenizer.pad_token_id)(batch), theirs(batch)
        assert set(ours) == set(other)
        assert all(ours[key].dtype == other[key].dtype for key in ours)
        assert all(torch.equal(ours[key], other[key]) for key in ours) is same


def test_reads_jsonl_and_json_arrays(tmp_path):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\n")
    array = tmp_path / "alpaca_data.json"
    array.write_text(
        json.dumps([{k: v for k, v in r.items() if k != "input" or v} for r in RECORDS], indent=2)
    )
    assert read_train_records(jsonl) == RECORDS
    assert read_train_records(array) == RECORDS  # a missing input reads as ""


@pytest.mark.parametrize(
    ("content", "where"),
    [
        # JSONL: the line number, blank lines counted
        (
            '{"instruction": "a", "output": "b"}\n\n{"output": "c"}\n',
            r"train\.data:3 field 'instruction': missing",
        ),
        ('{"instruction": "a", "output": 5}\n', r"train\.data:1 field 'output': expected a string, got int"),
        (
            '{"instruction": "a", "output": "b", "input": []}\n',
            r"train\.data:1 field 'input': expected a string",
        ),
        ('{"instruction": "a", "output": "b"}\n{"instruction": \n', r"train\.data:2: not valid JSON"),
        ("[1, 2]\n", r"train\.data:1: expected a JSON object"),
        # JSON array: the 1-based record index
        (
            '[{"instruction": "a", "output": "b"}, {"instruction": "a"}]',
            r"train\.data:1 field 'output': missing",
        ),
        ("", r"train\.data: the training set is empty"),
        ("  \n\n", r"train\.data: the training set is empty"),
        ("[]", r"train\.data: the training set is empty"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, content, where):
    path = tmp_path / "train.data"
    path.write_text(content)
    with pytest.raises(InputError, match=where):
        read_train_records(path)


def test_dataset_names_the_record_whose_prompt_is_too_long(tmp_path, tokenizer):
    path = tmp_path / "train.jsonl"
    records = [RECORDS[1], {"instruction": "word " * 200, "input": "", "output": "x"}]
    path.write_text("\n\n".join(json.dumps(r) for r in records))  # a blank line: record 2 is on line 3
    with pytest.raises(InputError, match=r"train\.jsonl:3: prompt is \d+ tokens"):
        TrainDataset(path, tokenizer, max_length=128)
    assert len(TrainDataset(path, tokenizer, max_length=4096)) == 2
    kept = TrainDataset(path, tokenizer, max_length=128, skip_long=True)
    assert len(kept) == 1 and [s.rsplit("/", 1)[-1] for s in kept.skipped] == ["train.jsonl:3"]


def test_fit_prompt_cuts_a_long_prompt_from_the_left_of_its_text(tokenizer):
    from lite.data import fit_prompt

    short = RECORDS[1]
    assert fit_prompt(tokenizer, short, 256) == (encode_prompt(tokenizer, short), 0)
    long = {
        "instruction": " ".join(f"word{i}" for i in range(400)) + " Add 3 and 4.",
        "input": "",
        "output": "",
    }
    full = encode_prompt(tokenizer, long)
    budget = len(encode_prompt(tokenizer, short)) + 20
    assert len(full) > budget
    ids, cut = fit_prompt(tokenizer, long, budget)
    assert len(ids) <= budget and cut > 0
    # the template is whole and the request's end is kept: the prompt of the instruction's tail
    assert ids == encode_prompt(tokenizer, {**long, "instruction": long["instruction"][cut:]})
    assert long["instruction"][cut:].endswith("Add 3 and 4.")
    # one character less cut would not fit (nearly: token counts can wobble by one at a boundary)
    assert len(encode_prompt(tokenizer, {**long, "instruction": long["instruction"][cut - 1 :]})) >= budget
    with_input = {"instruction": "Sum.", "input": "1 " * 300, "output": ""}
    ids, cut = fit_prompt(tokenizer, with_input, budget)
    assert len(ids) <= budget and cut > 4  # the whole instruction, then part of the input
    with pytest.raises(InputError, match="the prompt template alone is"):
        fit_prompt(tokenizer, short, 5)
