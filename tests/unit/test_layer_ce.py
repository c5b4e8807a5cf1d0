"""`lite layer-ce`: held-out CE per checkpoint, checked against the model's own loss."""

from __future__ import annotations

import json

import pytest
import torch

from lite.cli import main
from lite.commands.layer_ce import layer_ce
from lite.data import encode_example
from lite.io import InputError, read_jsonl
from lite.modeling import load_model, load_tokenizer


def referenced(evalset) -> list[dict]:
    return [r for r in read_jsonl(evalset) if r["reference"]]


def test_ce_is_the_models_own_loss_and_agreement_the_share_of_argmax_matches(tiny_model_dirs):
    dirs, evalset = tiny_model_dirs
    model, tokenizer = load_model(dirs["lite"]), load_tokenizer(dirs["lite"])
    records = referenced(evalset)
    n_layers = model.config.num_hidden_layers
    result = layer_ce(model, tokenizer, records, [1, n_layers], max_length=256)
    total, tokens, agreed = 0.0, 0, 0
    with torch.no_grad():
        for record in records:
            example = encode_example(tokenizer, {**record, "output": record["reference"]}, 256)
            ids, labels = torch.tensor([example["input_ids"]]), torch.tensor([example["labels"]])
            out = model(input_ids=ids, labels=labels, output_hidden_states=True)
            keep = labels[0, 1:] != -100  # the answer positions
            total += float(out.loss) * int(keep.sum())
            tokens += int(keep.sum())
            final = out.logits[0, :-1][keep].argmax(-1)
            first = model.lm_head(model.model.norm(out.hidden_states[1][0, :-1][keep])).argmax(-1)
            agreed += int((first == final).sum())
    assert result[n_layers][2] == tokens
    assert result[n_layers][0] / tokens == pytest.approx(total / tokens, rel=1e-5)
    assert result[1][0] / tokens != pytest.approx(total / tokens, rel=1e-3)  # layer 1 is another exit
    assert result[n_layers][1] == tokens  # the final layer agrees with itself everywhere
    assert result[1][1] == agreed < tokens


def test_command_writes_a_row_per_layer_and_names_missing_references(tiny_model_dirs, tmp_path):
    dirs, evalset = tiny_model_dirs
    out = tmp_path / "ce.csv"
    args = ["layer-ce", "--model", str(dirs["lite"]), "--layers", "1,2", "--out", str(out)]
    with pytest.raises(InputError, match=r"eval.jsonl field 'reference'.*e2"):
        main([*args, "--evalset", str(evalset)])
    with_references = tmp_path / "referenced.jsonl"
    with_references.write_text("".join(json.dumps(r) + "\n" for r in referenced(evalset)))
    main([*args, "--evalset", str(with_references)])
    lines = out.read_text().splitlines()
    assert lines[0] == "layer,ce,agreement,tokens,records"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
    assert all(float(line.split(",")[1]) > 0 and line.endswith(",2") for line in lines[1:])
    assert all(0 <= float(line.split(",")[2]) <= 1 for line in lines[1:])
