"""Shared fixtures: tiny random LLaMA models that build in milliseconds and never download."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    # Tests run beside other work on 2 cores; one thread keeps timings sane and results stable.
    try:
        import torch
    except ImportError:  # analysis-only environments have no torch
        return
    torch.set_num_threads(1)


@pytest.fixture
def tiny_llama():
    """A seeded random 4-layer LLaMA (hidden 64, vocab 97) in eval mode, fp32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()
