"""Tiny model and tokenizer: shape validation, special tokens, seeding, save/load round trip."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lite.modeling import (
    TinyModelSpec,
    build_tiny_model,
    decoder_layer_count,
    load_model,
    load_tokenizer,
    save_model,
    train_tokenizer,
)

TEXTS = [
    f"### Instruction:\nAdd {a} and {b}.\n\n### Response:\n{a + b}" for a in range(12) for b in range(12)
]
SPEC = TinyModelSpec(
    num_layers=3, hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=64, vocab_size=320
)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=320)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"num_layers": 0}, "num_layers"),
        ({"hidden_size": 30}, "hidden_size"),  # not divisible by 4 heads
        ({"hidden_size": 36, "num_heads": 4}, "num_heads"),  # head_dim 9 is odd
        ({"num_kv_heads": 3}, "num_kv_heads"),
        ({"vocab_size": 100}, "vocab_size"),
        ({"max_positions": 2.5}, "max_positions"),
    ],
)
def test_spec_validation_names_the_field(changes, field):
    base = dict(
        num_layers=2, hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=64, vocab_size=300
    )
    with pytest.raises(ValueError, match=f"TinyModelSpec.{field}"):
        TinyModelSpec(**{**base, **changes})


def test_tokenizer_has_special_tokens_and_round_trips(tokenizer):
    assert 260 <= len(tokenizer) <= 320
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    assert None not in ids and len(ids) == 4
    text = "### Instruction:\nAdd 3 and 4.\n\n### Response:\n7 — ünïcode"
    encoded = tokenizer(text)["input_ids"]
    assert encoded[0] == tokenizer.bos_token_id  # LLaMA convention: BOS by default
    assert tokenizer.unk_token_id not in encoded  # byte-level: nothing is unknown
    assert tokenizer.decode(encoded, skip_special_tokens=True) == text
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == encoded[1:]
    with pytest.raises(ValueError, match="vocab_size must be >= 260"):
        train_tokenizer(TEXTS, vocab_size=200)


def test_tiny_model_is_seeded_untied_sdpa_fp32(tokenizer):
    a = build_tiny_model(SPEC, tokenizer, seed=3)
    b = build_tiny_model(SPEC, tokenizer, seed=3)
    c = build_tiny_model(SPEC, tokenizer, seed=4)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    assert a.lm_head.weight.data_ptr() != a.model.embed_tokens.weight.data_ptr()
    assert a.config.tie_word_embeddings is False
    assert a.config._attn_implementation == "sdpa"
    assert a.dtype == torch.float32
    assert a.config.vocab_size == len(tokenizer)
    assert (a.config.bos_token_id, a.config.eos_token_id, a.config.pad_token_id) == (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    assert decoder_layer_count(a) == 3


def test_build_refuses_a_tokenizer_larger_than_the_spec(tokenizer):
    spec = TinyModelSpec(
        num_layers=1, hidden_size=32, num_heads=4, num_kv_heads=4, intermediate_size=64, vocab_size=270
    )
    with pytest.raises(ValueError, match="more than TinyModelSpec.vocab_size=270"):
        build_tiny_model(spec, tokenizer, seed=0)


def test_save_then_auto_from_pretrained_gives_identical_logits(tmp_path, tokenizer):
    model = build_tiny_model(SPEC, tokenizer, seed=0)
    out = tmp_path / "base"
    save_model(model, tokenizer, out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # loadable by transformers 4.x too
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    reloaded_tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tokenizer("Add 3 and 4.")["input_ids"]])
    assert reloaded_tok("Add 3 and 4.")["input_ids"] == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, rtol=0, atol=0)
        torch.testing.assert_close(load_model(out)(ids).logits, model(ids).logits, rtol=0, atol=0)
    assert load_tokenizer(out).eos_token_id == tokenizer.eos_token_id


def test_save_replaces_an_existing_folder_and_leaves_no_temp(tmp_path, tokenizer):
    out = tmp_path / "base"
    save_model(build_tiny_model(SPEC, tokenizer, seed=0), tokenizer, out)
    (out / "stale.txt").write_text("from an older run")
    second = build_tiny_model(SPEC, tokenizer, seed=1)
    save_model(second, tokenizer, out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]
    assert torch.equal(load_model(out).lm_head.weight, second.lm_head.weight)


def test_load_model_rejects_unknown_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model(tmp_path, dtype="float8")
