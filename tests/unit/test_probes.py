"""Exit gates (``lite.probes``, ``lite probes``): features, confidences and labels against the exit
head, the logistic probe of agreement and its AUC, the cut-offs' recall, one-class layers, the
document's evidence, round trip and checks, and the command end to end."""

from __future__ import annotations

import copy
import json
import random
import re

import numpy as np
import pytest
import torch

from lite.cli import main
from lite.decoders.blocks import _rms_norm, exit_head
from lite.decoders.dispatch import trace
from lite.decoders.records import RunLabels, trace_records
from lite.io import InputError, read_json, write_json, write_jsonl
from lite.modeling import load_model, load_tokenizer
from lite.probes import (
    L2,
    L2_GRID,
    NEVER,
    ONE_CLASS_BIAS,
    THRESHOLDS,
    ExitGates,
    GateFeatures,
    fit_gates,
    fit_probe,
    gate_features,
    held_out_positions,
    probe_scores,
    quantile_from_below,
    read_gates,
    roc_auc,
    trace_labels,
)

EOS, PAD = 2, 0


def random_prompts(count: int, seed: int, longest: int = 12, vocab: int = 97) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(rng.randint(1, longest))] for _ in range(count)]


# ---- features and labels --------------------------------------------------------------------------


def test_features_and_labels_are_the_exit_heads_at_every_generated_position(sharp):
    prompts = random_prompts(6, seed=3)
    gens = trace(sharp, prompts, max_new_tokens=10, eos_ids={EOS}, pad_id=PAD)
    tokens = [g.token_ids for g in gens]
    layers = [1, 3]
    got = gate_features(sharp, prompts, tokens, layers)
    norm = sharp.model.norm
    rows = {layer: 0 for layer in layers}
    with torch.inference_mode():
        for prompt, generated in zip(prompts, tokens, strict=True):
            ids = torch.tensor([prompt + generated])
            hidden = sharp(input_ids=ids, output_hidden_states=True).hidden_states
            for t, token in enumerate(generated):
                at = len(prompt) - 1 + t  # predicts generated token t
                for layer, before in ((1, 0), (3, 1)):
                    i = rows[layer]
                    raw = hidden[layer][:, : at + 1]  # (1, at + 1, hidden)
                    head = exit_head(sharp, raw)
                    assert bool(got.labels[layer][i]) == (int(head.tokens[0]) == token)
                    assert got.confidence[layer][i].dtype == torch.float32
                    torch.testing.assert_close(got.confidence[layer][i], head.confidence[0])
                    expected = _rms_norm(raw[0, -1], norm.weight, norm.variance_epsilon)
                    torch.testing.assert_close(got.normed[layer][i], expected)
                    cosine = torch.nn.functional.cosine_similarity(raw[0, -1], hidden[before][0, at], dim=0)
                    torch.testing.assert_close(got.saturation[layer][i], cosine)
                    rows[layer] += 1
    for layer in layers:
        n = sum(map(len, tokens))
        assert (
            rows[layer]
            == len(got.labels[layer])
            == len(got.confidence[layer])
            == got.normed[layer].shape[0]
            == n
        )
        # teacher forcing reproduces the cached trace's own labels
        traced = [{"token_ids": g.token_ids, "layer_argmax": g.layer_argmax} for g in gens]
        np.testing.assert_array_equal(got.labels[layer].numpy(), trace_labels(traced, [layer])[layer])
    assert 0 < got.labels[3].float().mean() < 1  # both classes, or the comparison proves little


def test_features_refuse_the_final_layer_and_unsorted_layers(tiny_llama):
    with pytest.raises(InputError, match="1..3"):
        gate_features(tiny_llama, [[5, 6]], [[7]], [2, 4])
    with pytest.raises(InputError, match="ascending"):
        gate_features(tiny_llama, [[5, 6]], [[7]], [3, 2])


# ---- fitting --------------------------------------------------------------------------------------


def separable(n: int = 3000, hidden: int = 16, seed: int = 0):
    """Features with offsets and scales far from standard, labels by the sign of a linear score with
    a few flipped near the boundary (so the classes overlap a little), a confidence rising with that
    score and a cosine that rises with it too but noisily."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, hidden))
    direction = rng.normal(size=hidden)
    latent = x @ direction / np.linalg.norm(direction)  # (n,) standard normal
    labels = latent + 0.1 * rng.normal(size=n) > 0.3  # (n,) bool
    confidence = 1.0 / (1.0 + np.exp(-3.0 * latent))  # (n,) spread over (0, 1)
    cosine = np.tanh(latent + rng.normal(size=n))  # (n,)
    features = x * rng.uniform(0.1, 50, size=hidden) + rng.uniform(-20, 20, size=hidden)
    return features.astype(np.float32), cosine.astype(np.float32), confidence.astype(np.float32), labels


def features_of(layers: dict[int, tuple]) -> GateFeatures:
    """``GateFeatures`` of (features, cosine, confidence, labels) per layer."""
    return GateFeatures(*({layer: parts[i] for layer, parts in layers.items()} for i in range(4)))


def test_probe_separates_agreement_and_its_gate_keeps_the_recall_of_agreeing_positions():
    x, cos, c, labels = separable()
    gates = fit_gates(features_of({2: (x, cos, c, labels)}), recall=0.95)
    g = gates.layers[2]
    assert gates.recall == 0.95 and gates.hidden == x.shape[1] and len(g.weight) == x.shape[1]
    assert (g.positions, g.agreeing, g.previous, g.note) == (len(c), labels.sum(), 0, None)
    assert 0.2 < labels.mean() < 0.6  # both classes, well represented
    scores = probe_scores(x, g.weight, g.bias)  # the stored weight works on the raw features
    assert scores.min() >= 0 and scores.max() <= 1
    assert g.auc == pytest.approx(roc_auc(scores, labels)) and g.auc > 0.95
    # the gate: the 1 - recall quantile of the scores of the agreeing positions
    assert g.probe_gate == quantile_from_below(scores[labels], 0.95)
    assert (scores[labels] >= g.probe_gate).mean() >= 0.95
    assert (scores[labels] > g.probe_gate).mean() < 0.95  # the highest such gate
    assert (scores[~labels] >= g.probe_gate).mean() < 0.2  # and it shuts most of the others out
    # the saturation: the same quantile of the cosine over the agreeing positions
    assert g.saturation_gate == quantile_from_below(cos[labels], 0.95)
    assert (cos[labels] >= g.saturation_gate).mean() >= 0.95
    assert (cos[labels] > g.saturation_gate).mean() < 0.95


def test_fitting_is_deterministic():
    x, cos, c, labels = separable(n=800, hidden=8, seed=4)
    features = features_of({1: (x, cos, c, labels), 3: (x[:, ::-1].copy(), cos, c, ~labels)})
    first, second = fit_gates(features, recall=0.9), fit_gates(features, recall=0.9)
    assert first == second
    w1, b1 = fit_probe(x, labels)
    w2, b2 = fit_probe(x, labels)
    np.testing.assert_array_equal(w1, w2)
    assert b1 == b2


def test_probe_is_the_penalized_logistic_optimum_and_shrinks_with_the_penalty():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 5)) * [1, 10, 0.1, 3, 30] + [5, -2, 0, 40, 1]  # (n, 5)
    z = (x - x.mean(axis=0)) / x.std(axis=0)  # (n, 5) standardized
    noisy = z @ [1.0, -0.5, 0.8, 0.0, 0.3] + rng.normal(size=600) > 0.0  # overlapping classes
    assert 0.3 < noisy.mean() < 0.7
    for l2 in (1e-3, 1.0):
        weight, bias = fit_probe(x, noisy, l2=l2)
        p = probe_scores(x, weight, bias)  # (n,)
        std = x.std(axis=0)
        assert np.abs(weight * std).max() > 0.1  # not the one-class fallback
        # the gradient of mean cross-entropy + l2/2 |v|^2 in the standardized weights v = weight * std
        assert abs(np.mean(p - noisy)) < 1e-5
        np.testing.assert_allclose(z.T @ (p - noisy) / len(p) + l2 * weight * std, 0, atol=1e-5)
    loose, _ = fit_probe(x, noisy, l2=1e-3)
    tight, _ = fit_probe(x, noisy, l2=10.0)
    assert np.abs(tight * x.std(axis=0)).sum() < np.abs(loose * x.std(axis=0)).sum() / 5


def test_held_out_positions_are_every_third_sequence():
    mask = held_out_positions([2, 0, 3, 1, 2], least=1)  # the empty sequence has no positions
    assert mask.tolist() == [False, False, False, False, False, True, False, False]
    assert held_out_positions([4, 5], least=1) is None  # two sequences: nothing to hold out
    assert held_out_positions([]) is None
    assert held_out_positions([3] * 29) is None  # 9 held out: too few to read a cut-off on
    assert held_out_positions([3] * 30).sum() == 10 * 3


def test_held_out_gates_keep_their_recall_on_unseen_positions():
    """Wide features against few positions: cut on the data it was fitted on, a probe's gate passes
    fewer new positions than the recall promised, and its AUC there flatters it. Read off held-out
    positions, the penalty is chosen there and the gate keeps the recall on data it never saw."""
    every = separable(n=3600, hidden=128, seed=3)
    noise = np.random.default_rng(5).normal(size=every[0].shape) * every[0].std(axis=0) * 3
    noisy = (every[0] + noise).astype(np.float32)  # (n, 128): a weak signal, easy to overfit
    x, fresh_x = noisy[:600], noisy[600:]  # fitted on 600 positions, tried on 3000 others
    cos, c, labels = (part[:600] for part in every[1:])
    fresh_agree = every[3][600:]
    held_out = held_out_positions([6] * 100)  # 100 sequences of 6 positions: 33 held out
    assert held_out.sum() == 33 * 6
    on_fit = fit_gates(features_of({2: (x, cos, c, labels)}), recall=0.9).layers[2]
    checked = fit_gates(features_of({2: (x, cos, c, labels)}), recall=0.9, held_out=held_out).layers[2]
    assert (on_fit.held_out, on_fit.l2) == (None, L2) and checked.held_out == held_out.sum()
    assert checked.l2 in L2_GRID and checked.l2 > L2  # the weakest penalty overfits here
    assert on_fit.auc > checked.auc  # its own data flatter the probe
    scores = probe_scores(x, checked.weight, checked.bias)
    assert checked.probe_gate == quantile_from_below(scores[held_out & labels], 0.9)
    assert checked.auc == pytest.approx(roc_auc(scores[held_out], labels[held_out]))
    recall = {}
    for name, g in (("on_fit", on_fit), ("checked", checked)):
        new = probe_scores(fresh_x, g.weight, g.bias)[fresh_agree]  # agreeing unseen positions
        recall[name] = (new >= g.probe_gate).mean()
    assert recall["on_fit"] < 0.85 and abs(recall["checked"] - 0.9) < 0.05
    with pytest.raises(ValueError, match="held_out"):
        fit_gates(features_of({2: (x, cos, c, labels)}), recall=0.9, held_out=np.ones(len(c), bool))


def test_probe_gate_never_drops_below_a_checks_break_even():
    """A check that costs c layers and may skip N - l pays for itself only where the probe gives
    agreement at least c / (N - l): the cut-off rises to that, and a check that can never pay
    (c >= N - l) is closed."""
    x, cos, c, labels = separable(n=600, hidden=8, seed=2)
    layers = {2: (x, cos, c, labels), 5: (x, cos, c, labels), 7: (x, cos, c, labels)}
    plain = fit_gates(features_of(layers), recall=0.9)
    costly = fit_gates(features_of(layers), recall=0.9, check_layers=2.5, total=8)
    for layer, even in ((2, 2.5 / 6), (5, 2.5 / 3)):
        g = costly.layers[layer]
        assert g.break_even == pytest.approx(even)
        assert g.probe_gate == max(plain.layers[layer].probe_gate, even)
        assert g.saturation_gate == plain.layers[layer].saturation_gate  # a cosine: no break-even
    assert costly.layers[5].probe_gate > plain.layers[5].probe_gate  # the break-even decided here
    assert costly.layers[7].probe_gate == NEVER  # 2.5 layers to skip 1: never worth a check
    assert plain.layers[2].break_even is None


def test_one_class_layers_pass_everything_or_nothing():
    x, cos, c, _ = separable(n=200, hidden=6)
    every = np.ones(len(c), dtype=bool)
    gates = fit_gates(features_of({1: (x, cos, c, ~every), 2: (x, cos, c, every)}), recall=0.9)
    none, all_ = gates.layers[1], gates.layers[2]
    # nobody agrees: both gates closed, with a note
    assert (none.probe_gate, none.saturation_gate, none.agreeing, none.auc) == (NEVER, NEVER, 0, None)
    assert "no position" in none.note
    assert np.allclose(none.weight, 0) and none.bias == -ONE_CLASS_BIAS
    for t in THRESHOLDS:
        assert none.probe_at[t].passed_pct == 0 and none.saturation_at[t].passed_pct == 0
    # everybody agrees: a constant probe that passes everything
    assert all_.probe_gate == 0.0 and all_.weight == (0.0,) * 6 and all_.bias == ONE_CLASS_BIAS
    assert all_.auc is None and all_.note is None and all_.agreeing == 200 and all_.previous == 1
    assert all_.saturation_gate == quantile_from_below(cos, 0.9)
    assert all(all_.probe_at[t].passed_pct == 100 for t in THRESHOLDS)
    assert all_.probe_at[0.9].exits_kept_pct == 100
    assert (probe_scores(x, all_.weight, all_.bias) >= all_.probe_gate).all()


def test_roc_auc_by_hand():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    # positives {0.5, 0.9} against negatives {0.5, 0.2}: the 0.5-0.5 tie counts half
    assert roc_auc([0.5, 0.5, 0.2, 0.9], [True, False, False, True]) == pytest.approx(3.5 / 4)
    assert roc_auc([0.3] * 4, [1, 0, 1, 0]) == 0.5
    assert roc_auc([0.9, 0.1], [0, 1]) == 0.0
    assert roc_auc([0.1, 0.2, 0.3], [1, 1, 1]) is None
    assert roc_auc([0.1, 0.2], [False, False]) is None
    rng = np.random.default_rng(1)  # against the pairwise definition, with many ties
    scores, labels = rng.integers(0, 6, size=50) / 5.0, rng.random(50) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(scores, labels) == pytest.approx(pairs)


def test_quantile_from_below_is_the_highest_value_reached_by_the_share():
    values = np.arange(1, 11) / 10.0
    assert quantile_from_below(values, 0.95) == 0.1  # 9.5 of 10 -> all 10 must reach it
    assert quantile_from_below(values, 0.9) == 0.2
    assert quantile_from_below(values, 1.0) == 0.1
    assert quantile_from_below(values, 0.01) == 1.0


# ---- the document ---------------------------------------------------------------------------------


@pytest.fixture
def gates() -> ExitGates:
    x, cos, c, labels = separable(n=300, hidden=6)
    layers = {2: (x, cos, c, labels), 5: (x[:, ::-1].copy(), cos, 1 - c, ~labels)}
    return fit_gates(features_of(layers), recall=0.9)


def test_evidence_recomputed_from_the_stored_probe_matches_the_document(gates, tmp_path):
    x, cos, c, labels = separable(n=300, hidden=6)
    path = tmp_path / "gates.json"
    write_json(path, gates.to_document())
    doc = read_json(path)
    for key, (features, confidence) in {"2": (x, c), "5": (x[:, ::-1], 1 - c)}.items():
        probe, saturation = doc["layers"][key]["probe"], doc["layers"][key]["saturation"]
        passed = probe_scores(features, probe["weight"], probe["bias"]) >= probe["gate"]  # (n,)
        kept = cos >= saturation["gate"]  # (n,)
        assert set(probe["at_thresholds"]) == set(saturation["at_thresholds"]) == {"0.5", "0.7", "0.9"}
        for t in THRESHOLDS:
            exits = confidence >= t
            assert exits.any() and not exits.all()  # the shares below are not vacuous
            for gate, evidence in ((passed, probe), (kept, saturation)):
                at = evidence["at_thresholds"][str(t)]
                assert at["passed_pct"] == pytest.approx(100 * gate.mean())
                assert at["exits_kept_pct"] == pytest.approx(100 * gate[exits].mean())
        assert 0 < probe["at_thresholds"]["0.5"]["passed_pct"] < 100
        agreeing = labels if key == "2" else ~labels
        assert doc["layers"][key]["agreeing"] == agreeing.sum()
        assert doc["layers"][key]["agree_pct"] == pytest.approx(100 * agreeing.mean())


def test_document_round_trips(gates, tmp_path):
    path = tmp_path / "gates.json"
    write_json(path, gates.to_document())
    assert read_gates(str(path)) == gates
    doc = read_json(path)
    assert doc["kind"] == "exit-gates" and doc["recall"] == 0.9 and doc["hidden"] == 6
    layer = doc["layers"]["5"]
    assert set(layer) == {"probe", "saturation", "positions", "agreeing", "agree_pct", "held_out", "note"}
    assert set(layer["probe"]) == {"weight", "bias", "gate", "auc", "l2", "break_even", "at_thresholds"}
    assert set(layer["saturation"]) == {"gate", "previous", "at_thresholds"}
    assert set(layer["saturation"]["at_thresholds"]["0.9"]) == {"passed_pct", "exits_kept_pct"}
    assert layer["saturation"]["previous"] == 2 and layer["positions"] == 300
    assert layer["probe"]["gate"] == gates.layers[5].probe_gate and layer["probe"]["auc"] > 0.95
    minimal = {  # evidence is optional
        "kind": "exit-gates",
        "hidden": 2,
        "layers": {"3": {"probe": {"weight": [1, 0.5], "bias": 0, "gate": 0.6}, "saturation": {"gate": 0.9}}},
    }
    read = ExitGates.from_document(minimal, "inline").layers[3]
    assert (read.weight, read.bias, read.probe_gate, read.saturation_gate) == ((1.0, 0.5), 0.0, 0.6, 0.9)
    assert read.previous == 0 and read.probe_at == {} and read.auc is None and read.agree_pct is None


def _set(doc: dict, path: str | tuple[str, ...], value) -> None:
    *parents, last = path.split(".") if isinstance(path, str) else path
    for key in parents:
        doc = doc[key]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("kind", "thresholds", "kind"),
        ("hidden", _DELETE, "hidden"),
        ("recall", 1.5, "recall"),
        ("layers", {}, "layers"),
        ("layers.2.probe", _DELETE, "layers.2.probe"),
        ("layers.2.saturation", [], "layers.2.saturation"),
        ("layers.2.probe.weight", [0.1, 0.2], "layers.2.probe.weight"),
        ("layers.2.probe.weight", ["a"] * 6, "layers.2.probe.weight"),
        ("layers.5.probe.bias", None, "layers.5.probe.bias"),
        ("layers.5.probe.gate", _DELETE, "layers.5.probe.gate"),
        ("layers.5.probe.gate", "high", "layers.5.probe.gate"),
        ("layers.5.probe.auc", "good", "layers.5.probe.auc"),
        ("layers.5.probe.at_thresholds", [], "layers.5.probe.at_thresholds"),
        ("layers.5.probe.at_thresholds.low", {}, "layers.5.probe.at_thresholds.low"),
        (
            ("layers", "5", "probe", "at_thresholds", "0.9", "passed_pct"),
            "most",
            "layers.5.probe.at_thresholds.0.9.passed_pct",
        ),
        ("layers.5.saturation.gate", _DELETE, "layers.5.saturation.gate"),
        ("layers.5.saturation.previous", 5, "layers.5.saturation.previous"),
        ("layers.5.positions", -1, "layers.5.positions"),
        ("layers.5.agreeing", 1.5, "layers.5.agreeing"),
        ("layers.5.note", 3, "layers.5.note"),
    ],
)
def test_bad_documents_name_the_file_and_field(gates, tmp_path, field, value, named):
    doc = copy.deepcopy(gates.to_document())
    _set(doc, field, value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=rf"bad\.json field '{re.escape(named)}'"):
        read_gates(str(path))


def test_bad_layer_keys_are_named(gates):
    doc = gates.to_document()
    doc["layers"]["x"] = doc["layers"]["2"]
    with pytest.raises(InputError, match=r"gates\.json field 'layers\.x'"):
        ExitGates.from_document(doc, "gates.json")


# ---- the command ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traced(tiny_model_dirs, tmp_path_factory):
    """The "lite" tiny model's traces of the eval set, as ``lite trace`` writes them."""
    dirs, evalset = tiny_model_dirs
    model, tokenizer = load_model(dirs["lite"]), load_tokenizer(dirs["lite"])
    records = [json.loads(line) for line in evalset.read_text().splitlines()]
    traces = trace_records(
        model, tokenizer, records, RunLabels("tiny", "lite", "calib"), max_new_tokens=16, batch_size=2,
        progress=False,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("traces") / "calib.jsonl"
    write_jsonl(path, traces)
    return dirs["lite"], evalset, path, traces


def probes_args(model, evalset, traces, out, layers="1,2,4") -> list[str]:
    return [
        "probes", "--model", str(model), "--eval", str(evalset), "--traces", str(traces), "--layers", layers,
        "--recall", "0.9", "--max-new-tokens", "16", "--threads", "1", "--out", str(out),
    ]  # fmt: skip


def test_command_writes_the_gates_of_every_intermediate_layer(traced, tmp_path, capsys):
    model, evalset, path, traces = traced
    out = tmp_path / "probes" / "lite.json"
    main(probes_args(model, evalset, path, out))
    gates = read_gates(str(out))
    assert sorted(gates.layers) == [1, 2]  # the final layer needs no gate
    assert gates.recall == 0.9 and gates.hidden == 64
    positions = sum(len(t["token_ids"]) for t in traces)
    for layer, g in gates.layers.items():
        assert g.positions == positions
        assert g.agreeing == sum(row[layer - 1] == row[-1] for t in traces for row in t["layer_argmax"])
    assert gates.layers[2].previous == 1
    config = read_json(out.with_name("lite.json.config.json"))
    assert config["command"] == "probes" and config["layers"] == [1, 2]
    assert config["label_agreement_pct"] == {"1": 100.0, "2": 100.0}
    err = capsys.readouterr().err
    assert "layer 1:" in err and "layer 2:" in err and "probe AUC" in err and "at t=0.9" in err
    for g in gates.layers.values():
        assert set(g.probe_at) == set(g.saturation_at) == {0.5, 0.7, 0.9}
        assert g.auc is None or 0 <= g.auc <= 1
        if g.agreeing:  # gates that pass at least the recall's share of the agreeing positions
            assert g.note is None and g.probe_at[0.5].passed_pct >= 90 * g.agreeing / g.positions - 1e-9
            assert g.saturation_at[0.5].passed_pct >= 90 * g.agreeing / g.positions - 1e-9
        else:
            assert g.probe_gate == g.saturation_gate == NEVER and g.note


def test_command_names_traces_that_do_not_match_their_prompts(traced, tmp_path):
    model, evalset, path, traces = traced
    out = tmp_path / "gates.json"
    first = traces[0]
    cases = [
        ({**first, "prompt_tokens": first["prompt_tokens"] + 1}, rf"field 'prompt_tokens'.*{first['id']}"),
        ({**first, "id": "nowhere"}, r"field 'id'.*'nowhere'"),
        ({**first, "n_layers": 3}, r"field 'n_layers'"),
    ]
    for bad, message in cases:
        wrong = tmp_path / "wrong.jsonl"
        write_jsonl(wrong, [bad])
        with pytest.raises(InputError, match=rf"wrong\.jsonl {message}"):
            main(probes_args(model, evalset, wrong, out))
    # a trace whose layer 1 claims to agree everywhere is another model's
    claimed = [{**t, "layer_argmax": [[row[-1], *row[1:]] for row in t["layer_argmax"]]} for t in traces]
    wrong = tmp_path / "claimed.jsonl"
    write_jsonl(wrong, claimed)
    with pytest.raises(InputError, match=r"claimed\.jsonl field 'layer_argmax': layer 1"):
        main(probes_args(model, evalset, wrong, out))
    assert not out.exists()
