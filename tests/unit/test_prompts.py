"""lite.prompts: the templates, and that a model's template travels with its tokenizer."""

from __future__ import annotations

import pytest

from lite.data import encode_prompt
from lite.io import InputError
from lite.modeling import load_tokenizer, save_tokenizer, train_tokenizer
from lite.prompts import render_prompt, set_template, template_of


def test_alpaca_template_picks_the_input_variant():
    plain = render_prompt({"instruction": "Add 1.", "input": ""})
    with_input = render_prompt({"instruction": "Add 1.", "input": "4 5"})
    assert plain.startswith("Below is an instruction") and "### Input:" not in plain
    assert "paired with an input" in with_input and with_input.endswith("### Input:\n4 5\n\n### Response:\n")


def test_compact_template_drops_only_the_preamble():
    record = {"instruction": "Add 1.", "input": "4 5"}
    assert (
        render_prompt(record, "compact") == "### Instruction:\nAdd 1.\n\n### Input:\n4 5\n\n### Response:\n"
    )
    assert render_prompt(record).endswith(render_prompt(record, "compact"))


def test_unknown_template_is_an_error():
    with pytest.raises(InputError, match="unknown prompt template 'chatml'"):
        render_prompt({"instruction": "x"}, "chatml")


def test_template_is_saved_with_the_tokenizer(tmp_path):
    tokenizer = train_tokenizer(["### Instruction:\nsay hi\n\n### Response:\nhi"] * 20, 300)
    assert template_of(tokenizer) == "alpaca"  # the default for models saved without one
    set_template(tokenizer, "compact")
    save_tokenizer(tokenizer, tmp_path)
    reloaded = load_tokenizer(tmp_path)
    assert template_of(reloaded) == "compact"
    ids = encode_prompt(reloaded, {"instruction": "say hi"})
    assert "Below is" not in reloaded.decode(ids)
    assert reloaded.decode(ids, skip_special_tokens=True) == render_prompt(
        {"instruction": "say hi"}, "compact"
    )
