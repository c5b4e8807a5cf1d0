"""Shared fixtures: tiny random models that build in milliseconds and never download."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Where the tiny models live: LITE_TEST_DEVICE=cuda runs the exactness tests on a GPU
# (benchmarks/gpu_check.py); the models are still built on the CPU, so their weights are the same.
TEST_DEVICE = os.environ.get("LITE_TEST_DEVICE", "cpu")

# The tiny LLaMA of the decoder tests; other families take the same sizes (tests/unit/test_architectures.py).
TINY_CONFIG = {
    "vocab_size": 97,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    # Tests run beside other work on 2 cores; one thread keeps timings sane and results stable.
    try:
        import torch
    except ImportError:  # analysis-only environments have no torch
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model():
    """Factory of seeded random tiny models in eval mode, fp32.

    ``tiny_model()`` is a 4-layer LLaMA (hidden 64, 4 heads over 2 KV heads, vocab 97, pad id 0).
    Keyword arguments change config fields (None removes one: the config's default applies);
    ``config_class`` makes another family's model of the same sizes; ``attn`` picks the attention
    implementation, ``seed`` the weights. ``head_scale`` multiplies the LM head so that a random
    model's confidences spread over (0, 1) like a trained one's.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    def make(config_class=LlamaConfig, *, seed=0, attn=None, head_scale=None, **fields):
        settings = {key: value for key, value in {**TINY_CONFIG, **fields}.items() if value is not None}
        config = config_class(**settings)
        if attn is not None:
            config._attn_implementation = attn
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).eval()
        if head_scale is not None:
            with torch.no_grad():
                model.lm_head.weight.mul_(head_scale)
        return model.to(TEST_DEVICE)

    return make


@pytest.fixture
def tiny_llama(tiny_model):
    """The tiny LLaMA, untied."""
    return tiny_model(tie_word_embeddings=False)


@pytest.fixture
def sharp(tiny_model):
    """The tiny LLaMA with its head scaled by 20: exits land on every checkpoint."""
    return tiny_model(tie_word_embeddings=False, head_scale=20.0)


# Eval records of the command-line tests: short prompts of three categories.
TINY_EVAL = [
    {"id": "e1", "instruction": "Add 3 and 4.", "input": "", "category": "math", "reference": "7"},
    {"id": "e2", "instruction": "Reverse the words.", "input": "red green blue", "category": "words",
     "reference": None},
    {"id": "e3", "instruction": "Sort 5 3 9.", "input": "", "category": "sort", "reference": "3 5 9"},
]  # fmt: skip


@pytest.fixture(scope="session")
def tokenized_model():
    """Factory of the tiny LLaMA with a tokenizer, as the workflow builds it (``lite.modeling``).

    ``model, tokenizer = tokenized_model(records)``: a BPE tokenizer of 300 tokens trained on the
    records' prompts (plus sums, so that numbers tokenize), unless ``tokenizer`` is given, and a
    model of its vocabulary with ``tiny_model``'s sizes, seeded by ``seed``,
    head scaled by 20 as ``tiny_model``'s ``head_scale``. Keyword arguments change ``TinyModelSpec``
    fields.
    """
    import torch

    from lite.modeling import TinyModelSpec, build_tiny_model, train_tokenizer
    from lite.prompts import render_prompt

    def make(records, *, seed=0, tokenizer=None, **fields):
        if tokenizer is None:
            texts = [render_prompt(r) for r in records]
            texts += [f"Add {a} and {b}. {a + b}" for a in range(20) for b in range(5)]
            tokenizer = train_tokenizer(texts, 300)
        shape = {  # tiny_model's
            "num_layers": TINY_CONFIG["num_hidden_layers"],
            "hidden_size": TINY_CONFIG["hidden_size"],
            "num_heads": TINY_CONFIG["num_attention_heads"],
            "num_kv_heads": TINY_CONFIG["num_key_value_heads"],
            "intermediate_size": TINY_CONFIG["intermediate_size"],
            "vocab_size": 300,
        }
        spec = TinyModelSpec(**{**shape, **fields})
        model = build_tiny_model(spec, tokenizer, seed=seed)
        with torch.no_grad():
            model.lm_head.weight.mul_(20.0)
        return model.to(TEST_DEVICE), tokenizer

    return make


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tokenized_model):
    """Two tokenized tiny models sharing a tokenizer, saved as model folders ("lite": seed 0, "it":
    seed 1), and ``TINY_EVAL`` as an eval set file: the command-line tests' inputs."""
    import json

    from lite.modeling import save_model

    root = tmp_path_factory.mktemp("tiny_models")
    lite, tokenizer = tokenized_model(TINY_EVAL)
    it, _ = tokenized_model(TINY_EVAL, seed=1, tokenizer=tokenizer)
    dirs = {name: save_model(model, tokenizer, root / name) for name, model in (("lite", lite), ("it", it))}
    evalset = root / "eval.jsonl"
    evalset.write_text("".join(json.dumps(r) + "\n" for r in TINY_EVAL))
    return dirs, evalset
