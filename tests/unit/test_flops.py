"""lite.flops: analytic counts against hand sums and against torch's FlopCounterMode on a tiny LLaMA."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lite.decoders.blocks import PaddedBatch, embed, exit_head, make_span, new_cache, run_layers
from lite.decoders.dispatch import decode, trace
from lite.decoders.specs import decoder_from_name
from lite.flops import (
    LLAMA2_7B,
    ModelShape,
    check_cost_ratio,
    decode_step_flops,
    generation_flops,
    head_flops,
    kvcache_flops,
    layer_flops,
    nocache_flops,
    prefix_flops,
    register_cpu_sdpa_flop_formula,
)


@pytest.fixture
def tiny(tiny_model):
    """``tiny(attn)``: the tiny LLaMA in that attention, its MLP 160 wide: not twice the hidden
    size, so that a count confusing the two is caught."""

    def make(attn: str):
        return tiny_model(attn=attn, intermediate_size=160, pad_token_id=None, tie_word_embeddings=False)

    return make


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_shape_matches_parameters(tiny):
    model = tiny("sdpa")
    shape = ModelShape.from_config(model.config)
    assert (shape.hidden, shape.intermediate, shape.heads, shape.kv_heads, shape.head_dim) == (
        64,
        160,
        4,
        2,
        16,
    )
    assert (shape.vocab, shape.layers) == (97, 4)
    layer = model.model.layers[0]
    weights = sum(m.weight.numel() for m in layer.modules() if isinstance(m, torch.nn.Linear))
    assert shape.layer_weights == weights


def test_shape_validates():
    with pytest.raises(ValueError, match="kv_heads"):
        ModelShape(hidden=8, intermediate=8, heads=2, kv_heads=0, head_dim=4, vocab=10, layers=2)


def test_check_cost_ratio():
    assert check_cost_ratio(LLAMA2_7B) == pytest.approx(0.647, abs=0.005)
    smollm2 = ModelShape(
        hidden=576, intermediate=1536, heads=9, kv_heads=3, head_dim=64, vocab=49152, layers=30
    )
    assert check_cost_ratio(smollm2) == pytest.approx(8.0, abs=0.1)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("layers", [1, 3, 4])
def test_nocache_prefix_matches_flop_counter(tiny, attn, layers):
    register_cpu_sdpa_flop_formula()
    register_cpu_sdpa_flop_formula()  # idempotent: a second call must not raise
    model = tiny(attn)
    prefix = 13
    batch = PaddedBatch.from_lists([list(range(3, 3 + prefix))], pad_id=0, device="cpu")

    def forward():
        with torch.inference_mode():
            hidden = embed(model, batch.ids)
            span = make_span(model, hidden, batch.real, batch.position_ids())
            exit_head(model, run_layers(model, hidden, 1, layers, span))

    expected = prefix_flops(ModelShape.from_config(model.config), prefix, layers)
    assert counted(forward) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_cached_decode_step_matches_flop_counter(tiny, attn):
    register_cpu_sdpa_flop_formula()
    model = tiny(attn)
    layers, prompt = 3, 11
    batch = PaddedBatch.from_lists([list(range(5, 5 + prompt))], pad_id=0, device="cpu")
    cache = new_cache(model)
    with torch.inference_mode():
        hidden = embed(model, batch.ids)
        run_layers(
            model, hidden, 1, layers, make_span(model, hidden, batch.real, batch.position_ids()), cache
        )
        step = torch.tensor([[7]])  # (batch, 1)
        key_real = torch.ones((1, prompt + 1), dtype=torch.bool)

        def decode_step():
            h = embed(model, step)
            span = make_span(model, h, key_real, torch.tensor([[prompt]]))
            exit_head(model, run_layers(model, h, 1, layers, span, cache))

        flops = counted(decode_step)
    expected = decode_step_flops(ModelShape.from_config(model.config), prompt + 1, layers)
    assert flops == pytest.approx(expected, rel=0.02)


def test_whole_dynamic_generation_matches_flop_counter(tiny):
    """The record's no-cache FLOPs equal what the reference dynamic decoder really computes (batch 1)."""
    model = tiny("eager")
    shape = ModelShape.from_config(model.config)
    prompt = [4, 9, 16, 25, 36, 49]
    # Threshold at the median layer-2 confidence of plain generation: a mix of early and final exits.
    (plain,) = trace(model, [prompt], max_new_tokens=10, eos_ids=set(), pad_id=0)
    threshold = statistics.median(row[1] for row in plain.layer_confidence)
    spec = decoder_from_name("dynamic", [2], thresholds={2: threshold}, n_layers=4)
    with FlopCounterMode(display=False) as counter:
        (gen,) = decode(model, [prompt], spec, max_new_tokens=10, eos_ids=set(), pad_id=0)
    assert set(gen.exit_layers) == {2, 4}, gen.exit_layers
    assert counter.get_total_flops() == nocache_flops(shape, len(prompt), gen.exit_layers, gen.heads)


def test_nocache_by_hand():
    shape = ModelShape(hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=10, layers=4)
    per_layer = 2 * (8 * 8 + 2 * 8 * 4 + 8 * 8 + 3 * 8 * 16)  # per position
    head = 2 * 8 * 10
    # token 0: prefix 3 through 4 layers, 1 head; token 1: prefix 4 through 2 layers, 2 heads
    expected = (
        4 * (3 * per_layer + 4 * 2 * 4 * 3 * 3) + head + 2 * (4 * per_layer + 4 * 2 * 4 * 4 * 4) + 2 * head
    )
    assert nocache_flops(shape, 3, [4, 2], [1, 2]) == expected
    assert prefix_flops(shape, 3, 4) == 4 * layer_flops(shape, 3, 3) + head_flops(shape)


def test_kvcache_catch_up_by_hand():
    shape = ModelShape(hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=10, layers=4)
    per_position, per_key = 2 * shape.layer_weights, 4 * 2 * 4

    def position(p, depth):  # position p through `depth` layers, causal attention over p + 1 keys
        return depth * (per_position + per_key * (p + 1))

    # prompt of 2; exits 1, 3, 2: the prompt and token 1's input must reach layer 3 (token 1 goes
    # there), token 2's input only layer 2; token 0 exits at 1 but is caught up later.
    expected = position(0, 3) + position(1, 3) + position(2, 3) + position(3, 2) + 5 * head_flops(shape)
    assert kvcache_flops(shape, 2, [1, 3, 2], [1, 2, 2]) == expected


def test_kvcache_fixed_layer_is_a_cached_k_layer_model():
    shape = ModelShape(hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=10, layers=4)
    prompt, tokens, k = 5, 4, 3
    prefill = sum(k * layer_flops(shape, 1, p + 1) for p in range(prompt))
    steps = sum(decode_step_flops(shape, prompt + t + 1, k) for t in range(tokens - 1))
    assert kvcache_flops(shape, prompt, [k] * tokens, [1] * tokens) == prefill + steps + head_flops(shape)


def test_accountings_order_and_early_exit_saves(tiny):
    shape = ModelShape.from_config(tiny("sdpa").config)
    final = generation_flops(shape, 20, [4] * 10, [1] * 10)
    assert final["kvcache"] < final["nocache"]
    early = generation_flops(shape, 20, [2, 2, 4, 2, 2, 2, 4, 2, 2, 2], [1, 1, 2, 1, 1, 1, 2, 1, 1, 1])
    assert early["nocache"] < final["nocache"]
    assert early["kvcache"] < final["kvcache"]


def test_bad_inputs():
    shape = ModelShape(hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=10, layers=4)
    with pytest.raises(ValueError, match="exit layer 5"):
        nocache_flops(shape, 3, [5], [1])
    with pytest.raises(ValueError, match="head counts"):
        kvcache_flops(shape, 3, [2, 2], [1])
    assert generation_flops(shape, 3, [], []) == {"nocache": 0, "kvcache": 0}
