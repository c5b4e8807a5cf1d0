"""Every supported family on a tiny random model of its own config class (fp32, CPU, nothing
downloaded): the LITE loss, every decoder and the FLOPs accounting against the model's own forward,
``generate`` and torch's FLOP counter.

Each config turns on what makes its family differ from LLaMA (lite.architectures), at sizes where
it changes results: sliding windows (6 keys) shorter than prompt + response, Gemma's (1 + w) norms
with non-zero weights, soft-caps that bind, biases that are not zero, RoPE scaling and per-layer
RoPE bases, head_dim * heads != hidden, tied embeddings. The final norm is scaled up so that
confidences spread over (0, 1) and dynamic exits land on every checkpoint.
"""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path

import pytest
import torch
import yaml
from test_fast_exits import quantile_thresholds
from test_workflow import copy_workflow, planned_jobs, snakemake
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

from lite.architectures import UnsupportedArchitecture, adapter, exit_modules
from lite.decoders.agreement import hf_greedy
from lite.decoders.blocks import PaddedBatch, embed, exit_head, make_span, new_cache, run_layers
from lite.decoders.cached import exit_cached
from lite.decoders.dispatch import trace
from lite.decoders.engines import exit_nocache, greedy_cached
from lite.decoders.policies import ThresholdPolicy
from lite.decoders.specs import Draft
from lite.decoders.speculative import speculative
from lite.flops import ModelShape, decode_step_flops, prefix_flops, register_cpu_sdpa_flop_formula
from lite.latency import widen
from lite.loss import lite_loss
from lite.modeling import load_model

EOS, PAD, N, VOCAB = 2, 0, 4, 97  # the tiny models' (tests/conftest.py)
CHECKPOINTS = [1, 2, 3, 4]
WINDOW = 6  # keys; prompts reach 14 tokens and responses 12, so every window binds
ALTERNATING = ["sliding_attention", "full_attention"] * (N // 2)
# family -> its config class and the fields that make it differ from the tiny LLaMA (tiny_model)
CONFIGS = {
    # Llama 3.x: llama3 RoPE scaling (a short original context, so most frequencies are rescaled), ties
    "llama3": (
        LlamaConfig,
        {
            "head_dim": 16,
            "tie_word_embeddings": True,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        },
    ),
    "mistral": (MistralConfig, {"head_dim": 16, "sliding_window": WINDOW}),
    # sliding layers from layer 3 on (max_window_layers), q/k/v biases
    "qwen2": (Qwen2Config, {"use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 2}),
    # q/k norms; 4 heads of 32 make a 128-wide attention on a 64-wide residual, as Qwen3 does
    "qwen3": (Qwen3Config, {"head_dim": 32, "tie_word_embeddings": True}),
    # fused projections, half the head rotated, a window on every layer
    "phi3": (
        Phi3Config,
        {
            "sliding_window": WINDOW,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        },
    ),
    "gemma2": (
        Gemma2Config,
        {
            "head_dim": 16,
            "query_pre_attn_scalar": 24,
            "sliding_window": WINDOW,
            "layer_types": ALTERNATING,
            "attn_logit_softcapping": 3.0,
            "final_logit_softcapping": 5.0,
        },
    ),
    "gemma3": (
        Gemma3TextConfig,
        {
            "head_dim": 16,
            "query_pre_attn_scalar": 24,
            "sliding_window": WINDOW,
            "layer_types": ALTERNATING,
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            },
        },
    ),
    # shallower than the default sliding-window pattern (a full layer every 6th): every layer slides,
    # and rotary_emb holds only the sliding layers' RoPE table
    "gemma3-sliding": (
        Gemma3TextConfig,
        {"head_dim": 16, "query_pre_attn_scalar": 24, "sliding_window": WINDOW},
    ),
}
FAMILIES = list(CONFIGS)


def random_prompts(count: int, seed: int, longest: int = 14) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, VOCAB) for _ in range(rng.randint(1, longest))] for _ in range(count)]


PROMPTS = random_prompts(16, seed=1)


@pytest.fixture(scope="module")
def build(tiny_model):
    """``build(family)``: a seeded random model of the family, with its distinguishing weights made
    to matter."""

    def make(family: str):
        config_class, fields = CONFIGS[family]
        model = tiny_model(config_class, **copy.deepcopy(fields))  # configs may edit nested settings
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.dim() == 1:  # norm weights and biases start at 0 or 1: give them values
                    parameter.add_(torch.randn_like(parameter) * 0.3)
            norm = model.model.norm.weight  # sharpen the shared head through the final norm's gain
            if adapter(model).llama_norm:
                norm.mul_(20.0)
            else:
                norm.copy_((1.0 + norm) * 20.0 - 1.0)  # Gemma's norm scales by (1 + w)
        return model

    return make


@pytest.fixture(scope="module", params=FAMILIES)
def model(request, build):
    return build(request.param)


def truncated(model, layers: int):
    """The model with only its first ``layers`` decoder layers: its own forward then applies the final
    norm and head to layer ``layers``' output, which is what an exit at that layer computes."""
    short = copy.deepcopy(model)
    short.model.layers = short.model.layers[:layers]
    short.config.num_hidden_layers = layers
    if getattr(short.config, "layer_types", None) is not None:
        short.config.layer_types = short.config.layer_types[:layers]
    return short


# ---- the LITE loss ---------------------------------------------------------------------------


def labelled_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 20-token sequences (longer than the window) whose first 5 tokens are prompt (no loss)."""
    ids = torch.randint(3, VOCAB, (2, 20), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    labels[:, :5] = -100
    return ids, labels


@pytest.mark.parametrize("layer", [N, 2])
def test_lite_loss_of_one_layer_is_the_models_own_loss(model, layer):
    """{k: 1} is the ordinary LM loss of the model cut after layer k (k = N: the model itself)."""
    ids, labels = labelled_batch()
    norm, head = exit_modules(model)
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        theirs = truncated(model, layer)(input_ids=ids, labels=labels).loss
        ours, per_layer = lite_loss(hidden, labels, norm, head, {layer: 1.0})
        chunked, _ = lite_loss(hidden, labels, norm, head, {layer: 1.0}, chunk_size=7)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked, theirs, rtol=1e-5, atol=1e-6)
    assert set(per_layer) == {layer}


def test_fused_head_refuses_a_soft_capped_head(build):
    model = build("gemma2")
    ids, labels = labelled_batch()
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    with pytest.raises(ValueError, match="SoftCappedHead"):
        lite_loss(hidden, labels, *exit_modules(model), {N: 1.0}, fused=True)


# ---- decoders --------------------------------------------------------------------------------


def test_final_and_fixed_exits_equal_generate(model):
    """``final`` (batched, left-padded) is generate token for token; a fixed exit at layer 2 is the
    generate of the model cut after layer 2; the trace reads the same final tokens."""
    common = {"max_new_tokens": 12, "eos_ids": set(), "pad_id": PAD}
    prompts = PROMPTS[:6]
    final = greedy_cached(model, prompts, N, **common)
    fixed = greedy_cached(model, prompts, 2, **common)
    short = truncated(model, 2)
    for prompt, ours, early in zip(prompts, final, fixed, strict=True):
        assert ours.token_ids == hf_greedy(model, prompt, **common)
        assert early.token_ids == hf_greedy(short, prompt, **common)
    traced = trace(model, prompts, **common)
    for ours, gen in zip(final, traced, strict=True):
        assert gen.token_ids == ours.token_ids
        assert [row[-1] for row in gen.layer_argmax] == ours.token_ids


@pytest.mark.parametrize("layer", [N, 2])
def test_exit_logits_equal_the_models_on_long_padded_prompts(model, layer):
    """Logits, not only argmax tokens: a window, norm or cap slightly off shows here even where it
    flips no token. Prompts three and four windows long, left-padded, against the cut model's own
    forward with an attention mask."""
    prompts = [sum(PROMPTS[:5], []), sum(PROMPTS[5:8], [])]  # 24 and 17 tokens
    batch = PaddedBatch.from_lists(prompts, pad_id=PAD, device="cpu")
    with torch.no_grad():
        hidden = embed(model, batch.ids)
        span = make_span(model, hidden, batch.real, batch.position_ids())
        ours = exit_head(model, run_layers(model, hidden, 1, layer, span)).logits  # (batch, vocab)
        short = truncated(model, layer)
        theirs = short(input_ids=batch.ids, attention_mask=batch.real.long()).logits[:, -1]
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("quantile", [0.3, 0.6])
def test_cached_dynamic_exit_equals_nocache_reference(model, quantile):
    thresholds = quantile_thresholds(model, PROMPTS[:8], quantile)
    common = {"max_new_tokens": 12, "eos_ids": {EOS}, "pad_id": PAD}
    for policy in ([*thresholds], [thresholds[0], 1.01, 0.0]):  # the second: never at 2, always at 3
        reference = exit_nocache(model, PROMPTS, CHECKPOINTS, ThresholdPolicy(policy), **common)
        cached = exit_cached(model, PROMPTS, CHECKPOINTS, ThresholdPolicy(policy), **common)
        for i, (a, b) in enumerate(zip(reference, cached, strict=True)):
            assert (b.token_ids, b.exit_layers, b.heads) == (a.token_ids, a.exit_layers, a.heads), (
                f"prompt {i}"
            )
            assert b.confidences == pytest.approx(a.confidences, abs=1e-5)
        # the thresholds split the tokens, and later tokens went deeper than earlier ones (catch-up ran)
        exits = [gen.exit_layers for gen in reference]
        assert len({layer for layers in exits for layer in layers}) >= 2
        assert any(b > a for layers in exits for a, b in zip(layers, layers[1:], strict=False))


@pytest.mark.parametrize("draft", [Draft(3, 3), Draft(3, 4, threshold=0.1)])
def test_speculative_equals_greedy(model, draft):
    common = {"max_new_tokens": 12, "eos_ids": {EOS}, "pad_id": PAD}
    greedy = greedy_cached(model, PROMPTS, N, **common)
    drafted = speculative(model, PROMPTS, draft, **common)
    for i, (a, b) in enumerate(zip(greedy, drafted, strict=True)):
        assert b.token_ids == a.token_ids, f"prompt {i}"
    # rows accepted different numbers of drafts (holes in the batch), and some were rejected
    acceptance = [gen.acceptance for gen in drafted]
    assert 0 < sum(s.accepted for s in acceptance) < sum(s.proposed for s in acceptance)


# ---- FLOPs -----------------------------------------------------------------------------------


def counted(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def test_analytic_flops_equal_the_flop_counter(model):
    """A no-cache prefix through 3 layers plus a head, then one cached step: every matmul the
    family's layers and head execute (fused or not, any head_dim) is what lite.flops counts."""
    register_cpu_sdpa_flop_formula()
    shape = ModelShape.from_config(model.config)
    prompt = PROMPTS[0] + PROMPTS[1]  # longer than the window
    batch = PaddedBatch.from_lists([prompt], pad_id=PAD, device="cpu")
    cache = new_cache(model)

    def prefill():
        hidden = embed(model, batch.ids)
        span = make_span(model, hidden, batch.real, batch.position_ids())
        exit_head(model, run_layers(model, hidden, 1, 3, span, cache))

    def step():
        hidden = embed(model, torch.tensor([[7]]))
        key_real = torch.ones((1, len(prompt) + 1), dtype=torch.bool)
        span = make_span(model, hidden, key_real, torch.tensor([[len(prompt)]]))
        exit_head(model, run_layers(model, hidden, 1, 3, span, cache))

    # every matrix the model holds, a tied head once: the weights plan-cost sizes memory with
    assert shape.weights == sum(p.numel() for p in model.parameters() if p.dim() == 2)
    with torch.inference_mode():
        assert counted(prefill) == prefix_flops(shape, len(prompt), 3)
        assert counted(step) == decode_step_flops(shape, len(prompt) + 1, 3)


# ---- what is refused -------------------------------------------------------------------------


def test_unsupported_families_are_refused_by_name(tmp_path, tiny_model):
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(UnsupportedArchitecture, match="'gpt2'"):
        adapter(gpt2)
    gpt2.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(UnsupportedArchitecture, match="'gpt2'"):
        load_model(tmp_path / "gpt2")  # the first stage that loads a base model stops here
    encoder = tiny_model(Gemma3TextConfig, num_hidden_layers=1, head_dim=16, use_bidirectional_attention=True)
    with pytest.raises(UnsupportedArchitecture, match="bidirectional"):
        adapter(encoder)


def test_latency_widens_llama_only(build):
    """The latency benchmark's wider copies are LlamaForCausalLM: another family would be timed as
    a different model."""
    with pytest.raises(ValueError, match="'qwen3'"):
        widen(build("qwen3"), 2)


def test_load_model_picks_the_attention_the_family_supports(tmp_path, build):
    """sdpa where the family has it; eager for Gemma 2, whose attention soft-cap sdpa cannot do."""
    for family, attention in (("gemma2", "eager"), ("qwen3", "sdpa")):
        build(family).save_pretrained(tmp_path / family)
        assert load_model(tmp_path / family).config._attn_implementation == attention


# ---- example configs -------------------------------------------------------------------------


@pytest.mark.parametrize("name, depth", [("llama3.2-1b", 16), ("qwen3-0.6b", 28)])
def test_example_configs_plan_offline_at_the_papers_depths(tmp_path, name, depth):
    """Checkpoints at 1/4, 3/8, ..., 7/8 of the layers (halves rounded up) plus the last; the whole
    DAG plans with the hub offline (the base model is only read by the init_model job)."""
    config = yaml.safe_load((Path(__file__).parents[2] / "configs" / f"{name}.yaml").read_text())
    (model,) = config["models"].values()
    assert model["base"]["kind"] == "hf" and model["base"]["n_layers"] == depth
    assert model["checkpoints"] == [math.floor(depth * eighths / 8 + 0.5) for eighths in range(2, 8)] + [
        depth
    ]
    jobs = planned_jobs(snakemake(copy_workflow(tmp_path, config), "-n", "all", timeout=120))
    assert jobs["init_model"] == 1 and jobs["tune"] == 3
