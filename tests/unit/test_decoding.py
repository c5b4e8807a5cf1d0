"""Decoders on tiny random LLaMAs: equal to generate / to HF hidden states, batch-independent, seeded."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest
import torch

from lite.cli import main as lite_main
from lite.data import encode_prompt
from lite.decoders import blocks
from lite.decoders.dispatch import decode, trace
from lite.decoders.names import VALID_NAMES
from lite.decoders.policies import RandomPolicy
from lite.decoders.records import RunLabels, fit_to_context, generate_records, trace_records
from lite.decoders.specs import decoder_from_name, parse_thresholds
from lite.io import InputError, config_path, read_json, read_jsonl
from lite.modeling import save_model

EOS, PAD, N = 2, 0, 4
# Different lengths, so batches are left-padded.
PROMPTS = [
    [5, 17, 33],
    [8, 9, 10, 11, 12, 13, 14, 15, 16],
    [40, 41],
    [60, 3, 70, 4, 80, 5, 90, 6, 50, 7, 33, 20],
]
MAX_NEW = 10

GENERATION_FIELDS = {
    "model", "tuning", "evalset", "decoder", "id", "category", "instruction", "input", "reference", "text",
    "token_ids", "exit_layers", "confidences", "n_layers", "checkpoints", "prompt_tokens", "flops",
    "prompt_truncated_chars",
}  # fmt: skip
TRACE_FIELDS = {
    "model", "tuning", "evalset", "id", "category", "token_ids", "layer_argmax", "layer_confidence",
    "n_layers", "prompt_tokens", "prompt_truncated_chars",
}  # fmt: skip
EVAL = [
    {"id": "e1", "instruction": "Add 3 and 4.", "input": "", "category": "math", "reference": "7"},
    {"id": "e2", "instruction": "Reverse the words.", "input": "red green blue", "category": "words",
     "reference": None},
    {"id": "e3", "instruction": "Count the words in this sentence, then add 12 and 30.", "input": "",
     "category": "math", "reference": None},
    {"id": "e4", "instruction": "Sort 5 3 9.", "input": "", "category": "sort", "reference": "3 5 9"},
]  # fmt: skip
LABELS = RunLabels("tiny4", "lite", "unit")


@pytest.fixture(scope="module")
def tok_model(tokenized_model):
    """A tokenizer trained on Alpaca-style prompts and a sharpened 4-layer model of its vocabulary."""
    return tokenized_model(EVAL)


def run(model, name, prompts=PROMPTS, checkpoints=(2, 3), thresholds=None, seed=0, eos=(EOS,), keys=None):
    spec = decoder_from_name(name, checkpoints, thresholds, seed, n_layers=N)
    return decode(model, prompts, spec, max_new_tokens=MAX_NEW, eos_ids=set(eos), pad_id=PAD, keys=keys)


def median_thresholds(model, prompts, checkpoints):
    """Per checkpoint, the median confidence of plain generation: a mix of early and late exits."""
    rows = [row for gen in trace(model, prompts, max_new_tokens=MAX_NEW, eos_ids={EOS}, pad_id=PAD)
            for row in gen.layer_confidence]  # fmt: skip
    return {c: statistics.median(row[c - 1] for row in rows) for c in checkpoints}


def hf_generate(model, prompt, eos=EOS):
    ids = torch.tensor([prompt], device=model.device)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=MAX_NEW,
        eos_token_id=eos,
        pad_token_id=PAD,
    )
    return out[0, len(prompt) :].tolist()


def hf_layer_heads(model, ids):
    """Every layer's (argmax, confidence) at the last position, from HF's output_hidden_states."""
    with torch.no_grad():
        hidden = model.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        result = []
        for layer in range(1, N + 1):
            h = hidden[layer][0, -1]
            # HF appends the last hidden state after the final norm: hidden_states[N] is already
            # normed, the others are raw layer outputs
            logits = model.lm_head(h if layer == N else model.model.norm(h))
            probs = torch.softmax(logits, dim=-1)
            result.append((int(logits.argmax()), float(probs.max())))
    return result


# ---- final / fixed -----------------------------------------------------------------------------


def test_final_equals_model_generate_and_fixed_final(tiny_llama):
    batched = run(tiny_llama, "final")
    fixed = run(tiny_llama, f"fixed-L{N}")
    for prompt, gen, fix in zip(PROMPTS, batched, fixed, strict=True):
        reference = hf_generate(tiny_llama, prompt)
        assert len(reference) == MAX_NEW
        assert gen.token_ids == reference
        assert run(tiny_llama, "final", [prompt])[0].token_ids == reference
        assert fix.token_ids == reference
        assert gen.exit_layers == [N] * MAX_NEW and gen.heads == [1] * MAX_NEW


def test_stops_at_eos_and_keeps_it(tiny_llama):
    tokens = run(tiny_llama, "final", [PROMPTS[1]])[0].token_ids
    stop = next(t for t in range(1, MAX_NEW) if tokens[t] not in tokens[:t])  # first new token after 0
    eos = tokens[stop]
    gens = run(tiny_llama, "final", eos=(eos,))
    assert gens[1].token_ids == tokens[: stop + 1] == hf_generate(tiny_llama, PROMPTS[1], eos=eos)
    for prompt, gen in zip(PROMPTS, gens, strict=True):  # other rows go on until their own EOS
        assert gen.token_ids == hf_generate(tiny_llama, prompt, eos=eos)


def test_fixed_layer_computes_only_its_layers_and_matches_hidden_states(sharp, monkeypatch):
    calls = [0] * N
    layer_fn = blocks.decoder_layer

    def counted(layer, index, *args):
        calls[index] += 1
        return layer_fn(layer, index, *args)

    monkeypatch.setattr(blocks, "decoder_layer", counted)
    gens = run(sharp, "fixed-L2")
    assert calls[2:] == [0, 0] and calls[0] == calls[1] > 0
    for prompt, gen in zip(PROMPTS, gens, strict=True):
        assert gen.exit_layers == [2] * len(gen.token_ids)
        ids = list(prompt)
        for token, confidence in zip(gen.token_ids, gen.confidences, strict=True):
            expected_token, expected_confidence = hf_layer_heads(sharp, ids)[1]
            assert token == expected_token
            assert confidence == pytest.approx(expected_confidence, abs=1e-5)
            ids.append(token)


# ---- dynamic -----------------------------------------------------------------------------------


def test_dynamic_never_exiting_equals_final(sharp):
    final = run(sharp, "final")
    dynamic = run(sharp, "dynamic-paper", thresholds={2: 1.01, 3: 5.0})
    for f, d in zip(final, dynamic, strict=True):
        assert d.token_ids == f.token_ids
        assert d.exit_layers == [N] * len(d.token_ids)
        assert d.heads == [3] * len(d.token_ids)  # checkpoints 2, 3 and the final head were read
        assert d.confidences == pytest.approx(f.confidences, abs=1e-5)


def test_dynamic_always_exiting_equals_fixed_first_checkpoint(sharp):
    fixed = run(sharp, "fixed-L2")
    dynamic = run(sharp, "dynamic", thresholds={2: 0.0, 3: 0.0})
    for f, d in zip(fixed, dynamic, strict=True):
        assert d.token_ids == f.token_ids
        assert d.exit_layers == [2] * len(d.token_ids)
        assert d.heads == [1] * len(d.token_ids)


def test_dynamic_matches_an_independent_reference(sharp):
    """Exit decisions recomputed from HF's own forward pass with output_hidden_states, token by token."""
    checkpoints = (1, 2, 3)
    thresholds = median_thresholds(sharp, PROMPTS, checkpoints)
    gens = run(sharp, "dynamic-calibrated", checkpoints=checkpoints, thresholds=thresholds)
    exits = set()
    for prompt, gen in zip(PROMPTS, gens, strict=True):
        ids = list(prompt)
        for token, layer, confidence in zip(gen.token_ids, gen.exit_layers, gen.confidences, strict=True):
            heads = hf_layer_heads(sharp, ids)
            expected = next(c for c in (*checkpoints, N) if c == N or heads[c - 1][1] >= thresholds[c])
            assert (token, layer) == (heads[expected - 1][0], expected)
            assert confidence == pytest.approx(heads[expected - 1][1], abs=1e-5)
            ids.append(token)
        exits.update(gen.exit_layers)
    assert len(exits) >= 3, exits  # the test is only meaningful with early and late exits


# ---- baselines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["random-half", "random-k", "sequential"])
def test_baselines_are_seeded_and_batch_independent(tiny_llama, name):
    keys = ["a", "b", "c", "d"]
    first = run(tiny_llama, name, checkpoints=(1, 2, 3), keys=keys)
    again = run(tiny_llama, name, checkpoints=(1, 2, 3), keys=keys)
    assert [g.exit_layers for g in first] == [g.exit_layers for g in again]
    for i, gen in enumerate(first):  # one prompt at a time, same key: same exits and tokens
        alone = run(tiny_llama, name, [PROMPTS[i]], checkpoints=(1, 2, 3), keys=[keys[i]])[0]
        assert (alone.token_ids, alone.exit_layers) == (gen.token_ids, gen.exit_layers)
        assert gen.heads == [1] * len(gen.token_ids)  # no confidence is read
    other = run(tiny_llama, name, checkpoints=(1, 2, 3), keys=keys, seed=1)
    if name == "sequential":
        for gen in first + other:
            assert gen.exit_layers == [(1, 2, 3, 4)[t % 4] for t in range(len(gen.token_ids))]
    else:
        assert [g.exit_layers for g in first] != [g.exit_layers for g in other]
        assert len({layer for g in first for layer in g.exit_layers}) == 4


@pytest.mark.parametrize("probability", [0.5, 0.25])
def test_random_policy_exit_rate(probability):
    policy = RandomPolicy(probability, n_intermediate=3, seed=0, keys=["x"])
    rate = statistics.mean(float(policy.exits(step, 0, torch.zeros(1))[0]) for step in range(3000))
    assert rate == pytest.approx(probability, abs=0.03)


# ---- trace -------------------------------------------------------------------------------------


def test_trace_matches_final_and_hidden_states(sharp):
    final = run(sharp, "final")
    traced = trace(sharp, PROMPTS, max_new_tokens=MAX_NEW, eos_ids={EOS}, pad_id=PAD)
    for prompt, f, t in zip(PROMPTS, final, traced, strict=True):
        assert t.token_ids == f.token_ids
        assert [row[N - 1] for row in t.layer_argmax] == t.token_ids
        ids = list(prompt)
        for token, argmax, confidence in zip(t.token_ids, t.layer_argmax, t.layer_confidence, strict=True):
            heads = hf_layer_heads(sharp, ids)
            assert argmax == [a for a, _ in heads]
            assert confidence == pytest.approx([c for _, c in heads], abs=1e-5)
            ids.append(token)
    # the layers disagree somewhere, or the comparison above would not test the indexing
    assert any(len(set(row)) > 1 for t in traced for row in t.layer_argmax)


# ---- records -----------------------------------------------------------------------------------


def _flat(values) -> list[float]:
    return [v for item in values for v in (_flat(item) if isinstance(item, list) else [item])]


def _same_records(a: list[dict], b: list[dict], float_fields: tuple[str, ...]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in float_fields} == {
            k: v for k, v in y.items() if k not in float_fields
        }
        for field in float_fields:
            # padding changes summation order in the kernels; tokens and exits must not change
            assert _flat(x[field]) == pytest.approx(_flat(y[field]), abs=1e-5)


@pytest.mark.parametrize("name", ["final", "fixed-L2", "dynamic-paper", "random-half", "sequential"])
def test_generation_records_batched_equal_single(tok_model, name):
    model, tokenizer = tok_model
    prompts = [encode_prompt(tokenizer, r) for r in EVAL]
    assert len({len(p) for p in prompts}) > 1  # padding really happens
    thresholds = median_thresholds(model, prompts, (1, 2, 3))
    spec = decoder_from_name(name, [1, 2, 3], thresholds, seed=3)
    single = generate_records(model, tokenizer, EVAL, spec, LABELS, max_new_tokens=MAX_NEW, batch_size=1)
    batched = generate_records(model, tokenizer, EVAL, spec, LABELS, max_new_tokens=MAX_NEW, batch_size=3)
    _same_records(single, batched, ("confidences",))


def test_generation_record_fields_and_flops(tok_model):
    model, tokenizer = tok_model
    prompts = [encode_prompt(tokenizer, r) for r in EVAL]
    thresholds = median_thresholds(model, prompts, (2, 3))
    final = generate_records(
        model, tokenizer, EVAL, decoder_from_name("final", [2, 3]), LABELS, max_new_tokens=8, batch_size=8
    )
    dynamic = generate_records(
        model,
        tokenizer,
        EVAL,
        decoder_from_name("dynamic-paper", [2, 3], thresholds),
        LABELS,
        max_new_tokens=8,
        batch_size=8,
    )
    for eval_record, prompt, f, d in zip(EVAL, prompts, final, dynamic, strict=True):
        for record in (f, d):
            assert set(record) == GENERATION_FIELDS
            json.dumps(record)
            assert {k: record[k] for k in ("model", "tuning", "evalset")} == {
                "model": "tiny4",
                "tuning": "lite",
                "evalset": "unit",
            }
            assert {
                k: record[k] for k in ("id", "category", "instruction", "input", "reference")
            } == eval_record
            assert record["prompt_tokens"] == len(prompt) and prompt[0] == tokenizer.bos_token_id
            assert record["prompt_truncated_chars"] == 0
            assert record["n_layers"] == N and record["checkpoints"] == [2, 3, N]
            assert len(record["token_ids"]) == len(record["exit_layers"]) == len(record["confidences"]) >= 1
            assert record["text"] == tokenizer.decode(record["token_ids"], skip_special_tokens=True)
            assert all(0.0 < c <= 1.0 for c in record["confidences"])
            assert record["flops"]["kvcache"] < record["flops"]["nocache"]
        assert f["decoder"] == "final" and d["decoder"] == "dynamic-paper"
        assert set(f["exit_layers"]) == {N}
    early = [d for d in dynamic if max(d["exit_layers"]) < N and len(d["token_ids"]) > 1]
    assert early, "no response exited early throughout"
    for d in early:  # every token exits before the final layer: cheaper in both accountings
        f = final[dynamic.index(d)]
        if len(f["token_ids"]) >= len(d["token_ids"]):
            assert d["flops"]["nocache"] < f["flops"]["nocache"]
            assert d["flops"]["kvcache"] < f["flops"]["kvcache"]
    total = {
        k: sum(r["flops"][k] for r in dynamic) / sum(r["flops"][k] for r in final)
        for k in ("nocache", "kvcache")
    }
    assert total["nocache"] < 1.0


def test_trace_records(tok_model):
    model, tokenizer = tok_model
    single = trace_records(model, tokenizer, EVAL, LABELS, max_new_tokens=MAX_NEW, batch_size=1)
    batched = trace_records(model, tokenizer, EVAL, LABELS, max_new_tokens=MAX_NEW, batch_size=4)
    _same_records(single, batched, ("layer_confidence",))
    final = generate_records(
        model, tokenizer, EVAL, decoder_from_name("final", [2]), LABELS, max_new_tokens=MAX_NEW, batch_size=8
    )
    for t, f in zip(single, final, strict=True):
        assert set(t) == TRACE_FIELDS
        assert t["token_ids"] == f["token_ids"]
        assert [row[-1] for row in t["layer_argmax"]] == t["token_ids"]
        assert all(len(row) == N for row in t["layer_argmax"] + t["layer_confidence"])


@pytest.mark.parametrize(
    ("name", "kv_cache"), [("final", False), ("dynamic-paper", False), ("dynamic-paper", True)]
)
def test_a_prompt_longer_than_the_context_is_cut_from_the_left(tok_model, tokenized_model, name, kv_cache):
    _, tokenizer = tok_model
    context = 128
    model, _ = tokenized_model(EVAL, tokenizer=tokenizer, max_positions=context)
    long = {**EVAL[0], "id": "long", "instruction": "Reverse the words. " * 30 + "Add 3 and 4."}
    records = [EVAL[0], long, EVAL[3]]
    longest_fitting = max(len(encode_prompt(tokenizer, r)) for r in (EVAL[0], EVAL[3]))
    assert len(encode_prompt(tokenizer, long)) + MAX_NEW > context >= longest_fitting + MAX_NEW
    decoder = decoder_from_name(name, [2, 3], {2: 0.5, 3: 0.5})
    common = {"max_new_tokens": MAX_NEW, "batch_size": 3}  # the long prompt shares a batch with short ones
    out = generate_records(model, tokenizer, records, decoder, LABELS, kv_cache=kv_cache, **common)
    assert [r["prompt_truncated_chars"] for r in out] == [0, out[1]["prompt_truncated_chars"], 0]
    cut = out[1]["prompt_truncated_chars"]
    assert cut > 0 and out[1]["prompt_tokens"] + MAX_NEW <= context
    assert out[1]["instruction"] == long["instruction"]  # the record keeps the text the judge sees
    # the model saw the template whole around the request's tail, and nothing else
    ids, _ = fit_to_context(model, tokenizer, long, MAX_NEW)
    assert len(ids) == out[1]["prompt_tokens"] and ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True).endswith("### Response:\n")
    tail = {**long, "instruction": long["instruction"][cut:]}
    assert tail["instruction"].endswith("Add 3 and 4.")
    (alone,) = generate_records(model, tokenizer, [tail], decoder, LABELS, kv_cache=kv_cache, **common)
    assert alone["prompt_truncated_chars"] == 0
    assert (alone["token_ids"], alone["exit_layers"]) == (out[1]["token_ids"], out[1]["exit_layers"])
    traces = trace_records(model, tokenizer, records, LABELS, **common)
    assert [t["prompt_truncated_chars"] for t in traces] == [0, cut, 0]


# ---- names, thresholds, errors -----------------------------------------------------------------


def test_decoder_names():
    assert decoder_from_name("final", [4, 2]).checkpoints == (2, 4)
    assert decoder_from_name("fixed-L3", [2], n_layers=4).layer == 3
    assert decoder_from_name("fixed-L3", [2], n_layers=4).checkpoints == (2, 4)
    spec = decoder_from_name("dynamic-aggressive", [2, 4], {"2": 0.8}, n_layers=4)
    assert spec.kind == "dynamic" and spec.thresholds == {2: 0.8}
    assert decoder_from_name("random-k", [2], seed=7).seed == 7
    spec = decoder_from_name("speculative-L3", [2], n_layers=4, draft_tokens=6)
    assert (spec.kind, spec.layer, spec.draft.tokens, spec.checkpoints) == ("speculative", 3, 6, (2, 4))
    # the draft settings are written only into the configs of speculative decoders
    assert "draft_tokens" not in dataclasses.asdict(decoder_from_name("final", [2]))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: decoder_from_name("beam", [2]),
            r"unknown decoder 'beam'; valid: final, fixed-L\{k\}, dynamic",
        ),
        (lambda: decoder_from_name("fixed-L9", [2], n_layers=4), r"'fixed-L9': layer 9 is outside 1\.\.4"),
        (lambda: decoder_from_name("fixed-L0", [2]), r"'fixed-L0': layer 0 is outside"),
        (lambda: decoder_from_name("fixed-L5", [2]).resolve(4), r"layer 5 is outside 1\.\.4"),
        (lambda: decoder_from_name("dynamic-paper", [2]), r"needs thresholds"),
        (
            lambda: decoder_from_name("dynamic", [2, 3], {2: 0.9}, n_layers=4),
            r"no threshold for checkpoint layer 3",
        ),
        (lambda: decoder_from_name("dynamic", [2], {2: 0.9, 3: 0.9}, n_layers=4), r"threshold for layer 3"),
        (lambda: decoder_from_name("dynamic", [2], {2: -0.1}), r"layer 2 has -0\.1"),
        (lambda: decoder_from_name("final", [2, 6], n_layers=4), r"checkpoint layer 6 is outside 1\.\.4"),
        (lambda: decoder_from_name("final", [0, 2]), r"checkpoints"),
        (
            lambda: decoder_from_name("speculative-L4", [2], n_layers=4),
            r"'speculative-L4': layer 4 is outside 1\.\.3",
        ),
        (lambda: decoder_from_name("speculative-L4", [2]).resolve(4), r"draft layer 4 must be below"),
        (lambda: decoder_from_name("speculative-L1", [2], draft_tokens=0), r"Draft\.tokens must be >= 1"),
    ],
)
def test_decoder_errors(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_valid_names_cover_the_paper():
    assert {"final", "fixed-L{k}", "dynamic-paper", "random-half", "random-k", "sequential"} <= set(
        VALID_NAMES
    )


def test_parse_thresholds(tmp_path):
    path = tmp_path / "calibrated.json"
    path.write_text(json.dumps({"thresholds": {"2": 0.91, "4": 1.01}, "target": 0.95, "min_count": 20}))
    assert parse_thresholds(path) == {2: 0.91, 4: 1.01}
    assert parse_thresholds('{"2": 0.5, "6": 1}') == {2: 0.5, 6: 1.0}
    assert parse_thresholds('{"thresholds": {"8": 0.7}}') == {8: 0.7}
    with pytest.raises(InputError, match="neither a file nor a JSON mapping"):
        parse_thresholds("no-such-file.json")
    with pytest.raises(InputError, match="field 'x': a layer number"):
        parse_thresholds('{"x": 0.5}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"thresholds": {"2": "high"}}')
    with pytest.raises(InputError, match=r"bad\.json field '2': threshold must be a number"):
        parse_thresholds(bad)


# ---- command line ------------------------------------------------------------------------------


def test_cli_generate_and_trace(tmp_path, tok_model):
    model, tokenizer = tok_model
    model_dir = save_model(model, tokenizer, tmp_path / "model")
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text("".join(json.dumps(r) + "\n" for r in EVAL))
    common = ["--model", str(model_dir), "--evalset", str(evalset), "--model-name", "tiny4",
              "--tuning", "lite", "--evalset-name", "unit", "--max-new-tokens", "6", "--batch-size", "2",
              "--threads", "1"]  # fmt: skip
    out = tmp_path / "gen" / "dynamic-paper.jsonl"
    lite_main(["generate", *common, "--decoder", "dynamic-paper", "--checkpoints", "2,3", "--out", str(out),
               "--thresholds", '{"2": 0.3, "3": 0.3}', "--limit", "3"])  # fmt: skip
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["e1", "e2", "e3"]
    assert all(set(r) == GENERATION_FIELDS and r["decoder"] == "dynamic-paper" for r in records)
    expected = generate_records(
        model, tokenizer, EVAL[:3], decoder_from_name("dynamic-paper", [2, 3], {2: 0.3, 3: 0.3}), LABELS,
        max_new_tokens=6, batch_size=2,
    )  # fmt: skip
    _same_records(records, expected, ("confidences",))
    config = read_json(out.with_name(out.name + ".config.json"))
    assert config["decoder"]["thresholds"] == {"2": 0.3, "3": 0.3} and config["n_layers"] == N

    traced = tmp_path / "trace.jsonl"
    lite_main(["trace", *common, "--out", str(traced)])
    assert [r["id"] for r in read_jsonl(traced)] == ["e1", "e2", "e3", "e4"]
    assert read_json(tmp_path / "trace.jsonl.config.json")["command"] == "trace"


def test_cli_several_eval_sets_in_one_run_write_what_each_run_alone_writes(tmp_path, tok_model):
    model, tokenizer = tok_model
    model_dir = save_model(model, tokenizer, tmp_path / "model")
    sets = {"first": EVAL[:3], "second": EVAL[3:]}
    for name, records in sets.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    common = ["--model", str(model_dir), "--model-name", "tiny4", "--tuning", "lite", "--max-new-tokens", "6",
              "--batch-size", "2", "--threads", "1"]  # fmt: skip
    decoding = ["--decoder", "random-half", "--checkpoints", "2,3", "--kv-cache"]

    def flags(name, out):
        return ["--evalset", str(tmp_path / f"{name}.jsonl"), "--evalset-name", name, "--out", str(out)]

    for command, extra in (("generate", decoding), ("trace", [])):
        together = [
            arg for name in sets for arg in flags(name, tmp_path / command / "together" / f"{name}.jsonl")
        ]
        lite_main([command, *common, *extra, *together])
        for name in sets:
            alone = tmp_path / command / "alone" / f"{name}.jsonl"
            lite_main([command, *common, *extra, *flags(name, alone)])
            joint = tmp_path / command / "together" / f"{name}.jsonl"
            assert [r["evalset"] for r in read_jsonl(joint)] == [name] * len(sets[name])
            assert read_jsonl(joint) == read_jsonl(alone), (command, name)
            assert read_json(config_path(joint)) == read_json(config_path(alone)), (command, name)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--evalset", "a.jsonl", "--evalset-name", "a", "--out", "a.out", "--evalset", "b.jsonl"],
            "got 2 --evalset, 1 --evalset-name, 1 --out",
        ),  # fmt: skip
        (
            [
                "--evalset",
                "a.jsonl",
                "--evalset-name",
                "a",
                "--out",
                "a.out",
                "--evalset",
                "a.jsonl",
                "--evalset-name",
                "a",
                "--out",
                "b.out",
            ],
            "--evalset-name a is given more than once",
        ),  # fmt: skip
    ],
)
def test_cli_eval_set_flags_must_pair_up(tmp_path, flags, message):
    common = ["--model", str(tmp_path), "--model-name", "m", "--tuning", "t", "--decoder", "final",
              "--checkpoints", "2"]  # fmt: skip
    with pytest.raises(InputError, match=message):
        lite_main(["generate", *common, *flags])


def test_cli_errors(tmp_path, tok_model):
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text(json.dumps(EVAL[0]) + "\n" + json.dumps({"id": "x", "input": ""}) + "\n")
    common = ["--evalset", str(evalset), "--out", str(tmp_path / "o.jsonl"), "--model-name", "m",
              "--tuning", "t", "--evalset-name", "e", "--checkpoints", "2"]  # fmt: skip
    with pytest.raises(InputError, match="unknown decoder 'greedy'"):
        lite_main(["generate", "--model", str(tmp_path), "--decoder", "greedy", *common])
    model, tokenizer = tok_model
    model_dir = save_model(model, tokenizer, tmp_path / "model")
    with pytest.raises(InputError, match=r"eval\.jsonl:2 field 'instruction': missing"):
        lite_main(["generate", "--model", str(model_dir), "--decoder", "final", *common])
    evalset.write_text(json.dumps(EVAL[0]) + "\n")
    with pytest.raises(InputError, match=r"'fixed-L7': layer 7 is outside 1\.\.4"):
        lite_main(["generate", "--model", str(model_dir), "--decoder", "fixed-L7", *common])
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_decoder_layer_is_bitwise_the_hf_layer(tiny_model, attn, kv_heads):
    """The written-out layer equals LlamaDecoderLayer.forward exactly: prefill, then a cached step."""
    model = tiny_model(
        attn=attn, vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_key_value_heads=kv_heads, attention_bias=True, mlp_bias=True,
    )  # fmt: skip
    for p in model.parameters():  # the biases start at zero; give them values
        torch.nn.init.normal_(p, std=0.3)
    batch = blocks.PaddedBatch.from_lists([[5, 6, 7, 8], [9, 10]], pad_id=0, device="cpu")
    ours, theirs = blocks.new_cache(model), blocks.new_cache(model)
    with torch.no_grad():
        for step in range(2):  # the prompt block, then one new token against the cache
            ids = batch.ids if step == 0 else torch.tensor([[11], [12]])
            if step:
                batch = batch.append(ids[:, 0])
            hidden = blocks.embed(model, ids)
            positions = batch.position_ids()[:, -ids.shape[1] :]
            span = blocks.make_span(model, hidden, batch.real, positions)
            mine = blocks.run_layers(model, hidden, 1, 2, span, ours)
            hf, rope = hidden, model.model.rotary_emb(hidden, positions)
            for layer in model.model.layers:
                hf = layer(
                    hf, attention_mask=span.mask, position_ids=positions,
                    position_embeddings=rope, cache=theirs, use_cache=True,
                )  # fmt: skip
            assert torch.equal(mine, hf)


def test_rotary_table_is_bitwise_the_rotary_module(tiny_llama):
    table = blocks.RotaryTable(tiny_llama)
    hidden = torch.zeros(2, 3, tiny_llama.config.hidden_size)
    for positions in ([[0, 1, 2], [5, 6, 7]], [[300, 301, 302], [0, 0, 1]]):  # the second grows the table
        ids = torch.tensor(positions)
        cos, signed = table.rope(hidden, ids)  # (batch, 1, q, head_dim) each
        their_cos, their_sin = tiny_llama.model.rotary_emb(hidden, ids)  # (batch, q, head_dim) each
        half = their_sin.shape[-1] // 2
        assert torch.equal(cos[:, 0], their_cos)
        assert torch.equal(signed[:, 0], torch.cat([-their_sin[..., :half], their_sin[..., half:]], dim=-1))
    assert table.cos.shape[0] >= 303


@pytest.mark.parametrize("rope_type", ["default", "dynamic"])
def test_rope_factors_rotate_bitwise_as_hf(tiny_model, rope_type):
    """x * cos + roll(x) * signed sin is HF's apply_rotary_pos_emb exactly, from the table or per call."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    dynamic = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}
    model = tiny_model(
        vocab_size=32, hidden_size=32, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=64, rope_parameters=dynamic if rope_type == "dynamic" else None,
    )  # fmt: skip
    table = blocks.RotaryTable(model)
    assert table.per_call == (rope_type == "dynamic")
    torch.manual_seed(0)
    q, k = torch.randn(2, 2, 3, 16), torch.randn(2, 2, 3, 16)  # (batch, heads, q, head_dim)
    hidden = torch.zeros(2, 3, 32)
    for positions in ([[0, 1, 2], [5, 6, 7]], [[90, 91, 92], [0, 0, 1]]):  # past 64: dynamic rescales
        ids = torch.tensor(positions)
        theirs = apply_rotary_pos_emb(q, k, *model.model.rotary_emb(hidden, ids))
        cos, signed = table.rope(hidden, ids)
        assert cos.shape == signed.shape == (2, 1, 3, 16)
        for x, hf in zip((q, k), theirs, strict=True):
            assert torch.equal(x * cos + x.roll(8, -1) * signed, hf)
