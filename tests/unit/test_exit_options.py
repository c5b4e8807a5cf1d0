"""Options of the KV-cached exit beyond the paper: exit gates (probe, saturation) and CALM's copied
keys/values, on the sharpened tiny LLaMA of test_fast_exits (fp32, CPU, seconds)."""

from __future__ import annotations

import contextlib
import re

import pytest
import torch
import torch.nn.functional as F
from test_fast_exits import CHECKPOINTS, EOS, PAD, PROMPTS, N, quantile_thresholds

from lite.decoders.blocks import RotaryTable, _parts, _rms_norm
from lite.decoders.cached import _Propagation, exit_cached
from lite.decoders.dispatch import decode
from lite.decoders.engines import exit_nocache, greedy_cached
from lite.decoders.gates import ExitGate, ProbeGate, SaturationGate, gate_from_document
from lite.decoders.names import WORKFLOW_DECODERS, decoder_name
from lite.decoders.policies import ThresholdPolicy
from lite.decoders.slots import Meter
from lite.decoders.specs import decoder_from_name
from lite.flops import ModelShape, fill_flops, gate_flops, kvcache_flops, register_cpu_sdpa_flop_formula
from lite.io import InputError

COMMON = {"max_new_tokens": 14, "eos_ids": {EOS}, "pad_id": PAD}


def constant_probe(model, logit: float, cuts) -> ProbeGate:
    """A probe with the same ``logit`` everywhere (zero weights): it passes every row where that
    reaches a checkpoint's cut, none elsewhere."""
    hidden = model.config.hidden_size
    weights = torch.zeros((len(cuts), hidden))
    return ProbeGate(model, weights, [logit] * len(cuts), list(cuts))


def gates_document(model, gate: float = 0.5, seed: int = 0) -> dict:
    """An exit-gates document with random probes (as ``lite probes`` writes it): each probe passes
    where its probability reaches ``gate``."""
    generator = torch.Generator().manual_seed(seed)
    hidden = model.config.hidden_size
    layers = {}
    for layer in CHECKPOINTS[:-1]:
        weight = (torch.randn(hidden, generator=generator) / hidden**0.5).tolist()
        layers[str(layer)] = {
            "probe": {"weight": weight, "bias": 0.5, "gate": gate},
            "saturation": {"gate": 0.2, "previous": 0},
        }
    return {"kind": "exit-gates", "recall": 0.95, "hidden": hidden, "layers": layers}


def gated_by_constant(model, quantile: float, logit: float, cut: float) -> tuple[list[float], list]:
    """Thresholds at ``quantile`` and the cached exit's generations behind ``constant_probe``."""
    thresholds = quantile_thresholds(model, PROMPTS[:8], quantile)
    gate = constant_probe(model, logit, [cut] * 3)
    return thresholds, exit_cached(
        model, PROMPTS, CHECKPOINTS, ThresholdPolicy(thresholds), gate=gate, **COMMON
    )


def test_gate_that_passes_every_row_changes_nothing(sharp):
    thresholds, gated = gated_by_constant(sharp, 0.5, logit=1.0, cut=0.0)
    reference = exit_nocache(sharp, PROMPTS, CHECKPOINTS, ThresholdPolicy(thresholds), **COMMON)
    for a, b in zip(reference, gated, strict=True):
        assert (b.token_ids, b.exit_layers, b.heads) == (a.token_ids, a.exit_layers, a.heads)
        # one gate check per intermediate checkpoint visited
        assert b.gate_checks == [min(CHECKPOINTS.index(e) + 1, 3) for e in b.exit_layers]


def test_gate_that_passes_nothing_decodes_the_final_layer_with_one_head(sharp):
    _, gated = gated_by_constant(sharp, 0.2, logit=0.0, cut=0.5)
    final = greedy_cached(sharp, PROMPTS, N, **COMMON)
    for a, b in zip(final, gated, strict=True):
        assert b.token_ids == a.token_ids
        assert set(b.exit_layers) == {N} and set(b.heads) == {1} and set(b.gate_checks) == {3}


def test_probe_gate_only_removes_exits(sharp):
    """A gate decides where the head is read; the threshold still decides the exit there."""
    thresholds = quantile_thresholds(sharp, PROMPTS[:8], 0.4)
    spec = decoder_from_name(
        "dynamic-x1-probe",
        CHECKPOINTS[:-1],
        dict(zip(CHECKPOINTS[:-1], thresholds, strict=True)),
        n_layers=N,
        gates=gates_document(sharp, gate=0.6),
    )
    gated = decode(sharp, PROMPTS, spec, **COMMON)
    trace_policy = ThresholdPolicy(thresholds)
    ungated = exit_cached(sharp, PROMPTS, CHECKPOINTS, trace_policy, **COMMON)
    early = [sum(e < N for e in g.exit_layers) for g in gated]
    assert 0 < sum(early) < sum(sum(e < N for e in g.exit_layers) for g in ungated)
    for g in gated:  # every early exit met its threshold
        for layer, confidence in zip(g.exit_layers, g.confidences, strict=True):
            if layer < N:
                assert confidence >= thresholds[CHECKPOINTS.index(layer)]
        assert all(h <= c + 1 for h, c in zip(g.heads, g.gate_checks, strict=True))


@pytest.mark.parametrize("fill", ["exact", "copy"])
def test_probe_shares_its_normed_states_with_the_head_it_lets_read(sharp, fill):
    """The cached exit normalises once for the probe and the head of the rows it passes; the same
    probe called through the generic gate interface (the head normalising on its own) decodes the
    same tokens, exits, confidences, heads and checks, in a batch where it passes some rows only."""

    class Generic(ExitGate):  # makes no normed states: the head normalises on its own
        kind = "probe"

        def __init__(self, probe):
            self.probe = probe

        def passes(self, index, hidden, previous):
            return self.probe.passes(index, hidden, previous)

    thresholds = quantile_thresholds(sharp, PROMPTS[:8], 0.4)
    probe = gate_from_document(
        sharp, "probe", gates_document(sharp, gate=0.6), thresholds, CHECKPOINTS[:-1], "t"
    )
    runs = [
        exit_cached(sharp, PROMPTS, CHECKPOINTS, ThresholdPolicy(thresholds), gate=gate, fill=fill, **COMMON)
        for gate in (probe, Generic(probe))
    ]
    tokens = [t for g in runs[0] for t in zip(g.exit_layers, g.heads, g.gate_checks, strict=True)]
    assert any(heads < checks + (layer == N) for layer, heads, checks in tokens)  # a row held back
    assert any(layer < N for layer, _, _ in tokens)  # and rows let out
    for shared, generic in zip(*runs, strict=True):
        assert shared == generic


def test_never_threshold_reads_no_head_behind_a_gate(sharp):
    document = gates_document(sharp, gate=0.0)  # a gate that would pass every row
    for kind in ("probe", "saturation"):
        gate = gate_from_document(sharp, kind, document, [1.01, 1.01, 1.01], CHECKPOINTS[:-1], "g.json")
        gens = exit_cached(sharp, PROMPTS[:4], CHECKPOINTS, ThresholdPolicy([1.01] * 3), gate=gate, **COMMON)
        assert all(set(g.heads) == {1} for g in gens)


def test_gate_document_errors_name_the_file_and_field(sharp):
    document = gates_document(sharp)
    del document["layers"]["2"]
    with pytest.raises(InputError, match=r"g\.json: field 'layers' has no gate for checkpoint layer 2"):
        gate_from_document(sharp, "probe", document, [0.9] * 3, CHECKPOINTS[:-1], "g.json")
    document = gates_document(sharp)
    document["layers"]["3"]["probe"]["weight"] = [0.0] * 5
    with pytest.raises(InputError, match=r"layers\.3\.probe\.weight' has 5 numbers"):
        gate_from_document(sharp, "probe", document, [0.9] * 3, CHECKPOINTS[:-1], "g.json")


def test_saturation_gate_reads_the_cosine_of_consecutive_checkpoints():
    hidden = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    previous = torch.tensor([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    gate = SaturationGate([0.5])
    assert gate.passes(0, hidden, previous).tolist() == [True, True, False]  # cosines 1, 0.71, 0
    passes, normed = gate.decide(0, hidden, previous)
    assert passes.tolist() == [True, True, False] and normed is None  # it makes no normed states


def test_probe_gate_decides_on_the_heads_own_input(sharp):
    """The probe hands on the states it normalised: the final norm's output, the head's input."""
    probe = gate_from_document(sharp, "probe", gates_document(sharp), [0.9] * 3, CHECKPOINTS[:-1], "t")
    hidden = torch.randn(5, sharp.config.hidden_size, generator=torch.Generator().manual_seed(3)) * 4
    passes, normed = probe.decide(1, hidden, None)
    torch.testing.assert_close(normed, sharp.model.norm(hidden), rtol=0, atol=0)
    assert passes.tolist() == probe.passes(1, hidden, None).tolist()
    logit = normed @ probe.weights[1] + probe.biases[1]
    assert passes.tolist() == (logit >= probe.cuts[1]).tolist()


# ---- copied keys/values ------------------------------------------------------------------------


def test_propagation_projects_each_layers_own_keys_and_values(sharp):
    """The copy of layer j is what layer j's k/v projections and RoPE make of the exit state."""
    propagation = _Propagation(sharp)
    hidden = torch.randn(3, sharp.config.hidden_size, generator=torch.Generator().manual_seed(1))
    positions = torch.tensor([[0], [5], [9]])
    rope = RotaryTable(sharp).rope(hidden[:, None], positions)  # (rows, 1, 1, d) each
    keys, values = propagation.project(hidden, 1, rope)  # layers 2..N
    assert keys.shape == (N - 1, 3, sharp.config.num_key_value_heads, sharp.config.head_dim)
    for offset, layer in enumerate(sharp.model.layers[1:]):
        p = _parts(layer)
        x = _rms_norm(hidden, *p.input_norm)
        k = F.linear(x, *p.k).view(3, -1, p.head_dim)  # (rows, kv_heads, d)
        v = F.linear(x, *p.v).view(3, -1, p.head_dim)
        cos, sin = rope[0][:, 0], rope[1][:, 0]
        k = k * cos + k.roll(p.head_dim // 2, -1) * sin
        assert torch.allclose(keys[offset], k, atol=1e-5) and torch.allclose(values[offset], v, atol=1e-5)


def test_copy_fill_is_the_final_layer_when_nothing_exits(sharp):
    final = greedy_cached(sharp, PROMPTS, N, **COMMON)
    copied = exit_cached(sharp, PROMPTS, CHECKPOINTS, ThresholdPolicy([1.01] * 3), fill="copy", **COMMON)
    assert [g.token_ids for g in copied] == [g.token_ids for g in final]


def test_copy_fill_changes_tokens_but_not_with_the_batch(sharp):
    thresholds = quantile_thresholds(sharp, PROMPTS[:8], 0.3)
    exact = exit_cached(sharp, PROMPTS, CHECKPOINTS, ThresholdPolicy(thresholds), **COMMON)
    batched = exit_cached(sharp, PROMPTS, CHECKPOINTS, ThresholdPolicy(thresholds), fill="copy", **COMMON)
    alone = [
        exit_cached(sharp, [p], CHECKPOINTS, ThresholdPolicy(thresholds), fill="copy", **COMMON)[0]
        for p in PROMPTS
    ]
    assert [g.token_ids for g in batched] == [g.token_ids for g in alone]
    assert [g.exit_layers for g in batched] == [g.exit_layers for g in alone]
    assert [g.token_ids for g in batched] != [g.token_ids for g in exact]  # the copy is not exact


def test_copy_fill_never_catches_up_a_generated_position(sharp):
    thresholds = quantile_thresholds(sharp, PROMPTS[:8], 0.4)
    shape = ModelShape.from_config(sharp.config)
    for prompt in PROMPTS[:6]:
        meter = Meter(shape, 1)
        (gen,) = exit_cached(
            sharp, [prompt], CHECKPOINTS, ThresholdPolicy(thresholds), fill="copy", meter=meter, **COMMON
        )
        computed = meter.computed[0]  # (columns, N): layers run per column
        generated = computed[len(prompt) - 1 : len(prompt) - 1 + len(gen.exit_layers)]
        expected = [[1 if layer <= e else 0 for layer in range(1, N + 1)] for e in gen.exit_layers]
        assert generated.tolist() == expected  # exit layers only: the rest is copied
        deepest = max(gen.exit_layers)
        assert computed[: len(prompt) - 1].sum(dim=1).tolist() == [deepest] * (len(prompt) - 1)


def metered_copy(model, kind: str, prompt: list[int], counting=None):
    """One prompt through the copying exit behind a random ``kind`` gate, with its ``Meter``
    (``counting``: a context the decode alone runs in)."""
    thresholds = quantile_thresholds(model, PROMPTS[:8], 0.4)
    document = gates_document(model, gate=0.5)
    gate = gate_from_document(model, kind, document, thresholds, CHECKPOINTS[:-1], "g.json")
    meter = Meter(ModelShape.from_config(model.config), 1)
    policy = ThresholdPolicy(thresholds)
    with counting or contextlib.nullcontext():
        (gen,) = exit_cached(
            model, [prompt], CHECKPOINTS, policy, gate=gate, fill="copy", meter=meter, **COMMON
        )
    return gen, meter


def test_meter_equals_accounting_with_probe_and_copy(sharp):
    shape = ModelShape.from_config(sharp.config)
    for prompt in PROMPTS[:6]:
        gen, meter = metered_copy(sharp, "probe", prompt)
        expected = kvcache_flops(
            shape,
            len(prompt),
            gen.exit_layers,
            gen.heads,
            fill="copy",
            gate="probe",
            gate_checks=gen.gate_checks,
        )
        assert int(meter.causal[0]) == expected


@pytest.mark.parametrize("kind", ["probe", "saturation"])
def test_meter_kernel_flops_match_torch_flop_counter_with_options(sharp, kind):
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_sdpa_flop_formula()
    counter = FlopCounterMode(display=False)
    gen, meter = metered_copy(sharp, kind, PROMPTS[3], counting=counter)
    assert any(e < N for e in gen.exit_layers)  # something was copied
    assert counter.get_total_flops() == meter.kernel


def test_copy_needs_llama_arithmetic(tiny_model):
    from transformers import Qwen3Config

    model = tiny_model(Qwen3Config)
    with pytest.raises(ValueError, match="kv_fill copy"):
        exit_cached(model, PROMPTS[:2], CHECKPOINTS, ThresholdPolicy([0.5] * 3), fill="copy", **COMMON)


# ---- accounting, names -------------------------------------------------------------------------


def test_copy_accounting_by_hand(tiny_llama):
    shape = ModelShape.from_config(tiny_llama.config)  # N = 4
    per_position, per_key = 2 * shape.layer_weights, 4 * shape.heads * shape.head_dim
    # prompt of 3, tokens exit at 1, 4, 2: positions 0-1 caught up through 4 layers; position 2
    # (token 0's input) through 1 + 3 copied; position 3 through 4; position 4 through 2, nothing
    # copied (no token reads the last one's deeper states)
    expected = sum(4 * (per_position + per_key * (p + 1)) for p in range(2))
    expected += 1 * (per_position + per_key * 3) + fill_flops(shape, 3)
    expected += 4 * (per_position + per_key * 4)
    expected += 2 * (per_position + per_key * 5)
    heads = 4 * 2 * shape.hidden * shape.vocab
    gates = 5 * gate_flops(shape, "probe")
    got = kvcache_flops(shape, 3, [1, 4, 2], [1, 2, 1], fill="copy", gate="probe", gate_checks=[1, 3, 1])
    assert got == expected + heads + gates
    assert fill_flops(shape, 1) == 2 * shape.hidden * 2 * shape.kv_heads * shape.head_dim
    assert gate_flops(shape, "saturation") == 8 * shape.hidden and gate_flops(shape, "head") == 0


@pytest.mark.parametrize(
    ("name", "gate", "fill", "base"),
    [
        ("dynamic-calibrated-probe-copy", "probe", "copy", "dynamic-calibrated"),
        ("dynamic-x2-copy", "head", "copy", "dynamic-x2"),
        ("dynamic-paper-saturation", "saturation", "exact", "dynamic-paper"),
    ],
)
def test_option_names(name, gate, fill, base):
    named = decoder_name(name)
    assert (named.gate, named.fill, named.base) == (gate, fill, base)
    assert named.cached(False) and named.meters(False) and named.reference(True) is None
    assert re.fullmatch(WORKFLOW_DECODERS, name)
    assert decoder_name(base).threshold_set == named.threshold_set


@pytest.mark.parametrize(
    "name", ["random-k-copy", "final-probe", "dynamic-paper-copy-probe", "fixed-L2-copy"]
)
def test_options_follow_only_dynamic_names(name):
    with pytest.raises(InputError, match="options -probe, -saturation and -copy"):
        decoder_name(name)
    assert not re.fullmatch(WORKFLOW_DECODERS, name)


def test_probe_decoder_needs_its_gates():
    with pytest.raises(InputError, match="needs an exit-gates file"):
        decoder_from_name("dynamic-paper-probe", [1, 2, 3], {1: 0.9, 2: 0.9, 3: 0.9})


def test_propagation_is_stacked_once_and_again_when_a_weight_changes(sharp):
    first = _Propagation.for_model(sharp)
    assert _Propagation.for_model(sharp) is first
    with torch.no_grad():
        sharp.model.layers[1].self_attn.k_proj.weight.mul_(2.0)
    again = _Propagation.for_model(sharp)
    assert again is not first and torch.equal(
        again.weights[1, :, : first.weights.shape[2] // 2],
        2.0 * first.weights[1, :, : first.weights.shape[2] // 2],
    )
