"""KV-cached dynamic exit and self-speculative decoding on tiny random LLaMAs (fp32, CPU, seconds).

Equality tests compare token ids and exit layers exactly. The models' heads are sharpened so
confidences spread over (0, 1) and exits land on every checkpoint; thresholds come from the
model's own confidence quantiles, so each set splits the tokens between layers.
"""

from __future__ import annotations

import random

import pytest
import torch

from lite.decoders.cached import exit_cached
from lite.decoders.dispatch import decode, trace
from lite.decoders.engines import exit_nocache, greedy_cached
from lite.decoders.policies import RandomPolicy, SequentialPolicy, ThresholdPolicy
from lite.decoders.slots import Meter, SlotCache
from lite.decoders.specs import DRAFT_TOKENS, AdaptiveDraft, Draft, decoder_from_name
from lite.decoders.speculative import DraftChooser, speculative
from lite.flops import ModelShape, kvcache_flops, register_cpu_sdpa_flop_formula
from lite.io import InputError

EOS, PAD, N = 2, 0, 4
CHECKPOINTS = [1, 2, 3, 4]


def random_prompts(count: int, seed: int, longest: int = 14, vocab: int = 97) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(rng.randint(1, longest))] for _ in range(count)]


PROMPTS = random_prompts(24, seed=1)


def quantile_thresholds(model, prompts, q: float) -> list[float]:
    """Per intermediate checkpoint, about the q-quantile of its confidence in final-layer generation.

    Midway between two observed confidences, never on one: a threshold equal to a token's own
    confidence would let float noise of 1e-7 (padding, block shapes) decide that token's exit.
    """
    gens = trace(model, prompts, max_new_tokens=12, eos_ids={EOS}, pad_id=PAD)
    rows = [row for gen in gens for row in gen.layer_confidence]
    result = []
    for c in CHECKPOINTS[:-1]:
        values = sorted(row[c - 1] for row in rows)
        i = int(q * (len(values) - 2))
        result.append((values[i] + values[i + 1]) / 2)
    return result


def both(model, prompts, policy_factory, max_new=16, eos=(EOS,), meter=None):
    common = {"max_new_tokens": max_new, "eos_ids": set(eos), "pad_id": PAD}
    reference = exit_nocache(model, prompts, CHECKPOINTS, policy_factory(), **common)
    cached = exit_cached(model, prompts, CHECKPOINTS, policy_factory(), meter=meter, **common)
    return reference, cached


def assert_same(reference, cached):
    for i, (a, b) in enumerate(zip(reference, cached, strict=True)):
        assert (b.token_ids, b.exit_layers, b.heads) == (a.token_ids, a.exit_layers, a.heads), f"prompt {i}"
        assert b.confidences == pytest.approx(a.confidences, abs=1e-5)


def went_deeper(gens) -> int:
    """Tokens that exited deeper than the token before them: each forces a catch-up."""
    return sum(b > a for g in gens for a, b in zip(g.exit_layers, g.exit_layers[1:], strict=False))


# ---- exact equality with the no-cache reference ------------------------------------------------


@pytest.mark.parametrize("quantile", [0.2, 0.5, 0.8])
def test_cached_exit_equals_nocache_reference(sharp, quantile):
    thresholds = quantile_thresholds(sharp, PROMPTS[:8], quantile)
    reference, cached = both(sharp, PROMPTS, lambda: ThresholdPolicy(thresholds))
    assert_same(reference, cached)
    layers = {layer for g in cached for layer in g.exit_layers}
    assert len(layers) >= 3, layers  # early and late exits, or the comparison proves little
    assert went_deeper(cached) >= 10  # catch-up really happened


def test_cached_exit_equals_reference_with_mixed_thresholds(sharp):
    # never exit at 2 (> 1), always at 3 unless 1 fired: exits jump between 1, 3 and 4 patterns
    for thresholds in ([0.6, 1.01, 0.0], [0.9, 0.3, 1.01], [0.0, 0.0, 0.0], [1.01, 1.01, 1.01]):
        reference, cached = both(sharp, PROMPTS[:12], lambda t=thresholds: ThresholdPolicy(t))
        assert_same(reference, cached)


def test_cached_exit_equals_reference_on_another_model(tiny_model):
    model = tiny_model(
        seed=3,
        vocab_size=131,
        hidden_size=96,
        intermediate_size=160,
        num_attention_heads=6,
        num_key_value_heads=3,
        pad_token_id=None,
        tie_word_embeddings=False,
        head_scale=30.0,
    )
    prompts = random_prompts(16, seed=7, longest=20, vocab=131)
    thresholds = quantile_thresholds(model, prompts[:6], 0.5)
    reference, cached = both(model, prompts, lambda: ThresholdPolicy(thresholds), max_new=24, eos=())
    assert_same(reference, cached)
    assert went_deeper(cached) >= 10


@pytest.mark.parametrize("name", ["random-half", "sequential"])
def test_cached_exit_equals_reference_for_baselines(sharp, name):
    keys = [str(i) for i in range(len(PROMPTS))]

    def policy():
        return RandomPolicy(0.5, 3, 0, keys) if name == "random-half" else SequentialPolicy(4)

    reference, cached = both(sharp, PROMPTS, policy)
    assert_same(reference, cached)
    assert all(g.heads == [1] * len(g.token_ids) for g in cached)  # only the answering head is read


def test_cached_exit_batched_equals_single(sharp):
    thresholds = quantile_thresholds(sharp, PROMPTS[:8], 0.5)
    batched = exit_cached(
        sharp, PROMPTS, CHECKPOINTS, ThresholdPolicy(thresholds), max_new_tokens=16, eos_ids={EOS}, pad_id=PAD
    )
    for prompt, gen in zip(PROMPTS, batched, strict=True):
        alone = exit_cached(
            sharp,
            [prompt],
            CHECKPOINTS,
            ThresholdPolicy(thresholds),
            max_new_tokens=16,
            eos_ids={EOS},
            pad_id=PAD,
        )[0]
        assert (alone.token_ids, alone.exit_layers) == (gen.token_ids, gen.exit_layers)


def test_cached_exit_stops_at_eos_per_row(sharp):
    def policy():
        return ThresholdPolicy([0.5, 0.5, 0.5])

    _, free = both(sharp, PROMPTS[:6], policy, eos=())
    eos = free[2].token_ids[3]  # a token some row emits mid-way
    reference, cached = both(sharp, PROMPTS[:6], policy, eos=(eos,))
    assert_same(reference, cached)
    assert any(g.token_ids[-1] == eos and len(g.token_ids) < 16 for g in cached)


# ---- work done: each (position, layer) once, FLOPs as lite.flops counts them --------------------


def expected_depths(prompt_len: int, exit_layers: list[int]) -> list[int]:
    """Deepest layer each position must reach under exact catch-up (lite.flops' assumption)."""
    depth = list(exit_layers)
    for t in range(len(depth) - 2, -1, -1):
        depth[t] = max(depth[t], depth[t + 1])
    return [depth[0]] * prompt_len + depth[1:]


@pytest.mark.parametrize("batched", [False, True])
def test_every_state_is_computed_at_most_once(sharp, batched):
    """Alone, a row computes exactly the states its exits need. In a batch, every live row also
    rides along to the deepest exit of each step (one block instead of a gather of the rows still
    undecided): more states, but never one twice, and none a row's exits need is missing."""
    thresholds = quantile_thresholds(sharp, PROMPTS[:8], 0.5)
    prompts = PROMPTS[:9]
    # batches of 3: steps whose deepest exit is below N are common, so riding along is visible
    groups = [prompts[i : i + 3] for i in range(0, 9, 3)] if batched else [[p] for p in prompts]
    shallow_steps = 0
    for group in groups:
        meter = Meter(ModelShape.from_config(sharp.config), len(group))
        gens = exit_cached(
            sharp,
            group,
            CHECKPOINTS,
            ThresholdPolicy(thresholds),
            max_new_tokens=16,
            eos_ids={EOS},
            pad_id=PAD,
            meter=meter,
        )
        width = max(len(p) for p in group)
        for row, (prompt, gen) in enumerate(zip(group, gens, strict=True)):
            computed = meter.computed[row, width - len(prompt) :]  # (real columns, N)
            depths = expected_depths(len(prompt), gen.exit_layers)
            if batched:  # column t + 1 holds token t's input: it rides to step t's deepest exit
                deepest = [max(g.exit_layers[t] for g in gens if len(g.exit_layers) > t) for t in range(16)]
                shallow_steps += sum(d < N for d in deepest)
                depths = [max(d, deepest[0]) for d in depths[: len(prompt)]] + [
                    max(d, deepest[t]) for t, d in enumerate(depths[len(prompt) :], start=1)
                ]
                for t in range(len(depths) - 2, -1, -1):  # and catch-up keeps depth non-increasing
                    depths[t] = max(depths[t], depths[t + 1])
            expected = torch.tensor([[1 if layer <= d else 0 for layer in range(1, N + 1)] for d in depths])
            assert computed.shape[0] >= len(depths)
            assert torch.equal(computed[: len(depths)], expected.int())  # all needed, none twice
            assert int(computed[len(depths) :].sum()) == 0
            assert int(meter.computed[row, : width - len(prompt)].sum()) == 0  # padding never runs
        assert int(meter.computed.max()) == 1
    assert shallow_steps > 0 or not batched


def test_meter_flops_equal_kvcache_accounting(sharp):
    shape = ModelShape.from_config(sharp.config)
    thresholds = quantile_thresholds(sharp, PROMPTS[:8], 0.4)
    for prompt in PROMPTS[:6]:  # alone: exactly the accounting of its exits
        meter = Meter(shape, 1)
        _, (gen,) = both(sharp, [prompt], lambda: ThresholdPolicy(thresholds), meter=meter)
        assert int(meter.causal[0]) == kvcache_flops(shape, len(prompt), gen.exit_layers, gen.heads)
        assert meter.kernel >= int(meter.causal.sum())  # the kernels also compute masked keys
    meter = Meter(shape, len(PROMPTS))  # in a batch, riding along costs more: never less
    _, gens = both(sharp, PROMPTS, lambda: ThresholdPolicy(thresholds), meter=meter)
    for row, (prompt, gen) in enumerate(zip(PROMPTS, gens, strict=True)):
        assert int(meter.causal[row]) >= kvcache_flops(shape, len(prompt), gen.exit_layers, gen.heads)
    assert int(meter.causal.sum()) > sum(
        kvcache_flops(shape, len(p), g.exit_layers, g.heads) for p, g in zip(PROMPTS, gens, strict=True)
    )


def test_meter_kernel_flops_match_torch_flop_counter(sharp):
    """One unpadded prompt: every matmul the meter claims is one torch's counter sees, and no more."""
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_sdpa_flop_formula()
    policy = ThresholdPolicy(quantile_thresholds(sharp, PROMPTS[:8], 0.5))
    common = {"max_new_tokens": 12, "eos_ids": set(), "pad_id": PAD}
    prompt = next(
        p for p in PROMPTS if went_deeper(exit_cached(sharp, [p], CHECKPOINTS, policy, **common)) >= 2
    )
    meter = Meter(ModelShape.from_config(sharp.config), 1)
    counter = FlopCounterMode(display=False)
    with counter:
        exit_cached(sharp, [prompt], CHECKPOINTS, policy, meter=meter, **common)
    assert counter.get_total_flops() == meter.kernel


def test_slot_cache_returns_written_columns(tiny_model):
    model = tiny_model(hidden_size=8, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=2)
    cache = SlotCache(model, batch=3, width=4)
    block = torch.arange(2 * 1 * 2 * 4, dtype=torch.float32).view(2, 1, 2, 4)  # (rows, kv_heads, q, d)
    keys, values = cache.target(torch.tensor([0, 2]), 1).update(block, -block, 1)
    assert keys.shape == (2, 1, 3, 4) and torch.equal(keys[:, :, 1:], block)
    assert torch.equal(cache.keys[1][1], torch.zeros(1, 4, 4))  # row 1 untouched
    assert torch.equal(cache.values[1][2, :, 1:3], -block[1])
    cache.grow(9)
    assert cache.width == 9 and torch.equal(cache.keys[1][[0, 2], :, 1:3], block)


# ---- generate-style use: records equal whichever engine runs -----------------------------------


def test_cached_exit_drop_in_for_decode(sharp):
    thresholds = dict(zip(CHECKPOINTS[:-1], quantile_thresholds(sharp, PROMPTS[:8], 0.5), strict=True))
    spec = decoder_from_name("dynamic-calibrated", CHECKPOINTS[:-1], thresholds, n_layers=N)
    reference = decode(sharp, PROMPTS, spec, max_new_tokens=10, eos_ids={EOS}, pad_id=PAD)
    cached = exit_cached(
        sharp,
        PROMPTS,
        spec.checkpoints,
        spec.policy([str(i) for i in range(len(PROMPTS))]),
        max_new_tokens=10,
        eos_ids={EOS},
        pad_id=PAD,
    )
    assert_same(reference, cached)


# ---- self-speculative decoding -----------------------------------------------------------------


@pytest.mark.parametrize(
    "draft", [Draft(1, 1), Draft(2, 3), Draft(3, 4), Draft(2, 6, threshold=0.5), Draft(1, 4, 0.9)]
)
def test_speculative_equals_final_layer_greedy(sharp, draft):
    final = greedy_cached(sharp, PROMPTS, N, max_new_tokens=20, eos_ids={EOS}, pad_id=PAD)
    gens = speculative(sharp, PROMPTS, draft, max_new_tokens=20, eos_ids={EOS}, pad_id=PAD)
    stats = [g.acceptance for g in gens]
    for f, g, s in zip(final, gens, stats, strict=True):
        assert g.token_ids == f.token_ids
        assert g.confidences == pytest.approx(f.confidences, abs=1e-5)
        assert g.exit_layers == [N] * len(g.token_ids)
        # every round emits its accepted drafts plus one token (the last round may be cut by EOS/length)
        assert s.accepted + s.rounds >= len(g.token_ids) and s.rounds <= len(g.token_ids)
        assert 0 <= s.accepted <= s.proposed <= draft.tokens * s.rounds
    assert sum(s.accepted for s in stats) > 0


def test_speculative_is_a_decoder_kind(sharp):
    """``speculative-L{E}`` by name through ``decode``: final's tokens, the spec's draft settings."""
    common = {"max_new_tokens": 12, "eos_ids": {EOS}, "pad_id": PAD}
    final = decode(sharp, PROMPTS, decoder_from_name("final", [2]), **common)
    spec = decoder_from_name("speculative-L2", [2], draft_tokens=3, draft_threshold=0.5, n_layers=N)
    assert spec.draft == Draft(2, 3, 0.5)
    meter = Meter(ModelShape.from_config(sharp.config), len(PROMPTS))
    gens = decode(sharp, PROMPTS, spec, meter=meter, **common)
    assert [g.token_ids for g in gens] == [g.token_ids for g in final]
    assert meter.kernel > 0 and all(g.acceptance.rounds >= 1 for g in gens)
    with pytest.raises(ValueError, match="counts no work in a Meter"):
        decode(sharp, PROMPTS, decoder_from_name("final", [2]), meter=meter, **common)


def test_speculative_single_equals_batched_and_respects_length(sharp):
    draft = Draft(2, 4)
    batched = speculative(sharp, PROMPTS[:8], draft, max_new_tokens=13, eos_ids=set(), pad_id=PAD)
    for prompt, gen in zip(PROMPTS[:8], batched, strict=True):
        alone = speculative(sharp, [prompt], draft, max_new_tokens=13, eos_ids=set(), pad_id=PAD)
        assert alone[0].token_ids == gen.token_ids and len(gen.token_ids) == 13


def skip_top_layers(model, draft_layer: int):
    """Zero the output projections above ``draft_layer``: those layers pass the residual through."""
    with torch.no_grad():
        for layer in model.model.layers[draft_layer:]:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return model


def test_speculative_accepts_everything_when_draft_equals_final(sharp):
    model = skip_top_layers(sharp, 2)
    shape = ModelShape.from_config(model.config)
    meter = Meter(shape, 1)
    gens = speculative(
        model, [PROMPTS[1]], Draft(2, 4), max_new_tokens=21, eos_ids=set(), pad_id=PAD, meter=meter
    )
    assert (
        gens[0].token_ids
        == greedy_cached(model, [PROMPTS[1]], N, max_new_tokens=21, eos_ids=set(), pad_id=PAD)[0].token_ids
    )
    assert (
        gens[0].acceptance.rate == 1.0 and gens[0].acceptance.rounds == 5
    )  # 4 drafts + 1 bonus per round, 21 = 4*5 + 1
    # the draft's layer 1..2 states are reused by verification: no (position, layer) ran twice
    assert int(meter.computed.max()) == 1
    columns = len(PROMPTS[1]) + 20  # the last token is never fed back
    assert int(meter.computed[0, :columns].sum()) == columns * N


def test_speculative_rejects_bad_settings(sharp):
    with pytest.raises(ValueError, match="below the final layer"):
        speculative(sharp, PROMPTS[:1], Draft(N), max_new_tokens=4, eos_ids=set(), pad_id=PAD)
    with pytest.raises(ValueError, match="Draft.tokens"):
        Draft(1, 0)
    with pytest.raises(ValueError, match="Draft.threshold"):
        Draft(1, 2, 1.5)


def test_draft_chooser_follows_the_acceptance_it_sees():
    adaptive = AdaptiveDraft((3, 6), tokens=4, thresholds={3: 0.4, 6: 1.5})
    chooser = DraftChooser(adaptive, total=12, head_cost=0.1)
    first = chooser.next()  # equal priors: the cheaper layer, its threshold; "never" becomes 1
    assert first.layer == 3 and first.threshold == 0.4 and adaptive.at(6, 2).threshold == 1.0
    for _ in range(6):  # layer 3's drafts are all accepted: the most drafts per round
        chooser.update(3, 4, 4)
    assert chooser.next() == Draft(3, 4, 0.4)
    for _ in range(12):  # then all rejected: layer 6 is worth its cost
        chooser.update(3, 4, 0)
    assert chooser.next().layer == 6
    for _ in range(12):  # rarely accepted: one draft per round is the best bet
        chooser.update(6, 4, 1)
    assert chooser.next() == Draft(6, 1, 1.0)
    chooser.update(3, 0, 0)  # a round without drafts counts as a rejected one
    assert chooser.proposed[3] > chooser.accepted[3] * 10


def test_adaptive_drafting_is_final_layer_greedy_and_finds_the_accepted_layer(sharp, tiny_model):
    model = skip_top_layers(tiny_model(tie_word_embeddings=False, head_scale=20.0), 3)  # layer 3 = final
    common = {"max_new_tokens": 24, "eos_ids": set(), "pad_id": PAD}
    final = greedy_cached(model, PROMPTS[:6], N, **common)
    adaptive = AdaptiveDraft((1, 3), tokens=4)
    gens = speculative(model, PROMPTS[:6], adaptive, **common)
    fixed = speculative(model, PROMPTS[:6], Draft(1, 4), **common)
    assert [g.token_ids for g in gens] == [g.token_ids for g in final] == [g.token_ids for g in fixed]

    def rate(gens):
        return sum(g.acceptance.accepted for g in gens) / sum(g.acceptance.proposed for g in gens)

    # it tries the cheap layer 1 first, then drafts from layer 3, whose drafts are always right
    assert rate(gens) > 0.8 > rate(fixed)
    for prompt, gen in zip(PROMPTS[:6], gens, strict=True):  # alone: other choices, the same tokens
        assert speculative(model, [prompt], adaptive, **common)[0].token_ids == gen.token_ids


def test_adaptive_drafting_by_name(sharp):
    spec = decoder_from_name(
        "speculative-adaptive", [1, 2, 3], {1: 0.3, 2: 0.6, 3: 0.9}, draft_layers=(3, 1), n_layers=N
    )
    assert spec.draft == AdaptiveDraft((1, 3), DRAFT_TOKENS, {1: 0.3, 2: 0.6, 3: 0.9})
    common = {"max_new_tokens": 10, "eos_ids": {EOS}, "pad_id": PAD}
    final = decode(sharp, PROMPTS[:8], decoder_from_name("final", [2]), **common)
    assert [g.token_ids for g in decode(sharp, PROMPTS[:8], spec, **common)] == [g.token_ids for g in final]
    with pytest.raises(InputError, match="needs draft layers"):
        decoder_from_name("speculative-adaptive", [1, 2], {1: 0.5})
    with pytest.raises(InputError, match=f"draft layer {N} must be below the final layer {N}"):
        decoder_from_name("speculative-adaptive", [1, 2], {1: 0.5}, draft_layers=(1, N), n_layers=N)


def test_acceptance_follows_agreement_of_draft_and_final_layer(sharp, tiny_model):
    """A draft layer that nearly agrees with the final layer (LITE's aim) is accepted far more often."""
    close = skip_top_layers(tiny_model(tie_word_embeddings=False, head_scale=20.0), 3)
    with torch.no_grad():  # layer 3 nudges the residual only slightly; layer 4 passes it through
        close.model.layers[2].mlp.down_proj.weight.mul_(0.05)
        close.model.layers[2].self_attn.o_proj.weight.mul_(0.05)
    rates = []
    for model in (sharp, close):
        gens = speculative(model, PROMPTS[:8], Draft(2, 4), max_new_tokens=16, eos_ids=set(), pad_id=PAD)
        rates.append(sum(g.acceptance.accepted for g in gens) / sum(g.acceptance.proposed for g in gens))
    assert rates[1] > rates[0] + 0.3, rates
