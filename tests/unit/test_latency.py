"""``lite latency``: widening preserves the model, the table's ratios and checks, the command's files."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from lite import latency, sections
from lite.cli import main as lite_main
from lite.decoders.agreement import hf_greedy, hf_greedy_batch
from lite.decoders.engines import greedy_cached
from lite.io import InputError, read_json


def test_widen_computes_the_same_function(tiny_llama):
    wide = latency.widen(tiny_llama, 3)
    config = wide.config
    assert (config.hidden_size, config.intermediate_size, config.num_attention_heads) == (192, 384, 12)
    assert config.num_key_value_heads == 6 and config.head_dim == 16
    ids = torch.tensor([[5, 17, 33, 8, 9, 60, 61]])
    with torch.no_grad():
        assert torch.allclose(tiny_llama(ids).logits, wide(ids).logits, atol=1e-4)
    prompt = [[5, 17, 33]]
    same = [
        greedy_cached(m, prompt, 4, max_new_tokens=12, eos_ids=set(), pad_id=0)[0].token_ids
        for m in (tiny_llama, wide)
    ]
    assert same[0] == same[1]
    assert latency.widen(tiny_llama, 1) is tiny_llama


@pytest.mark.parametrize("name", ["dynamic-x2-probe-copy", "dynamic-x2-saturation-copy"])
def test_widened_gates_decide_as_the_narrow_ones(sharp, name):
    """The bench's wider copy runs the exit options with the gates widened alike: the same tokens
    and exits (a probe fitted on the narrow model would not even fit the wide one's width)."""
    from test_exit_options import gates_document

    from lite.decoders.dispatch import decode
    from lite.decoders.specs import decoder_from_name

    wide = latency.widen(sharp, 2)
    document = gates_document(sharp, gate=0.45)
    runs = []
    for model, gates in ((sharp, document), (wide, latency.widen_gates(document, 2))):
        spec = decoder_from_name(name, [1, 2, 3, 4], {1: 0.5, 2: 0.5, 3: 0.5}, n_layers=4, gates=gates)
        common = {"max_new_tokens": 10, "eos_ids": set(), "pad_id": 0}
        gens = decode(model, [[5, 17, 33], [8, 9]], spec, kv_cache=True, **common)
        runs.append([(g.token_ids, g.exit_layers) for g in gens])
    assert runs[0] == runs[1]
    exits = [layer for _, layers in runs[0] for layer in layers]
    assert min(exits) < 4 == max(exits)  # tokens exit early and at the end: the gates decided
    assert latency.widen_gates(document, 2)["hidden"] == 2 * document["hidden"]
    assert latency.widen_gates(document, 1) is document


def test_hf_greedy_ignores_eos_like_the_other_decoders(tiny_llama):
    prompt = [5, 17, 33]
    free = greedy_cached(tiny_llama, [prompt], 4, max_new_tokens=10, eos_ids=set(), pad_id=0)[0].token_ids
    tiny_llama.generation_config.eos_token_id = free[1]  # the model's EOS comes up second
    assert hf_greedy(tiny_llama, prompt, max_new_tokens=10, eos_ids=(), pad_id=0) == free


def test_hf_greedy_batch_equals_one_prompt_at_a_time(sharp):
    prompts = [[5, 17, 33], [8, 9, 10, 11, 12, 13], [40]]  # left padding of different lengths
    alone = [hf_greedy(sharp, p, max_new_tokens=8, eos_ids=(), pad_id=0) for p in prompts]
    assert hf_greedy_batch(sharp, prompts, max_new_tokens=8, eos_ids=(), pad_id=0) == alone
    stop = alone[1][2]  # a stop token one row emits third: that row ends there, the others go on
    ended = hf_greedy_batch(sharp, prompts, max_new_tokens=8, eos_ids={stop}, pad_id=0)
    assert ended[1] == alone[1][: alone[1].index(stop) + 1]
    for got, free in zip(ended, alone, strict=True):
        assert got == (free[: free.index(stop) + 1] if stop in free else free)


def test_measure_and_summarize(sharp):
    config = latency.LatencyConfig(
        prompts=2, batch_sizes=(1, 2), max_new_tokens=6, repeats=2, draft_layers=(1, 3), draft_tokens=3
    )
    prompts = [[5, 17, 33], [8, 9, 10, 11]]  # batch 2 pads the first
    raw = latency.measure(sharp, prompts, [1, 2, 3], {1: 0.5, 2: 0.5, 3: 0.5}, config, 0, "tiny")
    decoders = [*sections.DECODERS, "speculative-L1", "speculative-L3", "speculative-adaptive"]
    layerskip = ["hf-layerskip-L1", "hf-layerskip-L3"]  # HF's assisted generation: batch size 1 only
    assert config.decoders() == decoders + layerskip
    assert config.runs() == [(1, d) for d in decoders + layerskip] + [(2, d) for d in decoders]
    assert sorted(raw["decoder"]) == sorted((decoders * 2 + layerskip) * 2)  # 2 batch sizes x 2 repeats
    # every decoder makes the same tokens at batch 2 as at batch 1, and those of its reference
    assert (raw["tokens"] == 12).all() and raw["same_tokens"].all()
    table = latency.summarize(raw, threads=1)
    assert list(table["decoder"]) == decoders + layerskip + decoders
    assert list(table["batch"]) == [1] * 9 + [2] * 7
    one = table[table["batch"] == 1].set_index("decoder")
    for name in layerskip:  # drafts and verifications: more FLOPs than plain decoding
        assert 0.0 <= one.loc[name, "acceptance"] <= 1.0 and one.loc[name, "tokens_per_round"] >= 1.0
        assert one.loc[name, "flops_needed"] > one.loc["hf-generate", "flops_needed"]
        assert one.loc[name, "flops"] >= one.loc[name, "flops_needed"]
    for batch in (1, 2):
        row = table[table["batch"] == batch].set_index("decoder")
        assert (
            row.loc["hf-generate", "speedup_vs_hf"] == 1.0
            and row.loc["dynamic-nocache", "speedup_vs_nocache"] == 1.0
        )
        assert row.loc["hf-generate", "flops_vs_final"] == 1.0
        # the paper's procedure recomputes prefixes: more FLOPs than the cached exit of the same tokens
        assert row.loc["dynamic-nocache", "flops"] > row.loc["dynamic-cached", "flops"]
        assert row.loc["dynamic-nocache", "flops_speedup"] < row.loc["dynamic-cached", "flops_speedup"]
        assert 0.0 <= row.loc["speculative-L3", "acceptance"] <= 1.0
        assert row.loc["speculative-adaptive", "tokens_per_round"] >= 1.0
        assert row.loc["dynamic-cached", "mean_exit_layer"] == row.loc["dynamic-nocache", "mean_exit_layer"]
        ratio = row["tokens_per_s"] / row.loc["hf-generate", "tokens_per_s"]
        assert row["speedup_vs_hf"].tolist() == pytest.approx(ratio.tolist())
        ours = row["tokens_per_s"] / row.loc["final", "tokens_per_s"]
        assert row.loc["final", "speedup_vs_final"] == 1.0
        assert row["speedup_vs_final"].tolist() == pytest.approx(ours.tolist())
        best = row["seconds_min"].rdiv(row["tokens"]) / (
            row.loc["final", "tokens"] / row.loc["final", "seconds_min"]
        )
        assert row.loc["final", "speedup_vs_final_best"] == 1.0
        assert row["speedup_vs_final_best"].tolist() == pytest.approx(best.tolist())
    cached = table[table["decoder"] == "dynamic-cached"].set_index("batch")
    # the needed FLOPs are the exits' (the same at any batch); a batch executes more (padding)
    assert cached.loc[1, "flops_needed"] == cached.loc[2, "flops_needed"]
    assert cached.loc[2, "flops"] > cached.loc[1, "flops"]


def test_measure_flags_tokens_that_change_with_the_batch(sharp, monkeypatch):
    """A decoder whose tokens depend on the batch size is marked, even where it equals its reference."""
    from lite.decoders import agreement

    real = agreement.hf_greedy_batch

    def batch_dependent(model, prompts, **common):
        tokens = real(model, prompts, **common)
        return [[t + 1 for t in row] for row in tokens] if len(prompts) > 1 else tokens

    monkeypatch.setattr(agreement, "hf_greedy_batch", batch_dependent)
    config = latency.LatencyConfig(
        prompts=2, batch_sizes=(1, 2), max_new_tokens=4, repeats=1, draft_layers=(2,)
    )
    raw = latency.measure(sharp, [[5, 17, 33], [8, 9, 10]], [2, 4], {2: 0.5}, config, 0, "tiny")
    table = latency.summarize(raw, threads=1).set_index(["batch", "decoder"])
    assert table.loc[(1, "hf-generate"), "same_tokens"] and not table.loc[(2, "hf-generate"), "same_tokens"]
    assert not table.loc[(2, "final"), "same_tokens"]  # its reference changed
    assert table.loc[(2, "dynamic-cached"), "same_tokens"]
    assert table.loc[(1, "hf-layerskip-L2"), "same_tokens"] and (2, "hf-layerskip-L2") not in table.index


def test_summarize_flags_a_mismatch_and_draws():
    raw = pd.DataFrame(
        [
            {
                "model": "m",
                "decoder": "hf-generate",
                "repeat": 0,
                "seconds": 2.0,
                "tokens": 10,
                "flops": 100,
                "same_tokens": True,
            },
            {
                "model": "m",
                "decoder": "dynamic-nocache",
                "repeat": 0,
                "seconds": 8.0,
                "tokens": 10,
                "flops": 900,
                "same_tokens": True,
                "mean_exit_layer": 3.0,
            },
            {
                "model": "m",
                "decoder": "dynamic-cached",
                "repeat": 0,
                "seconds": 1.0,
                "tokens": 10,
                "flops": 60,
                "same_tokens": False,
                "mean_exit_layer": 3.0,
            },
            {
                "model": "m",
                "decoder": "dynamic-cached",
                "repeat": 1,
                "seconds": 3.0,
                "tokens": 10,
                "flops": 60,
                "same_tokens": True,
                "mean_exit_layer": 3.0,
            },
        ]
    )
    table = latency.summarize(raw, threads=2).set_index("decoder")
    assert table.loc["dynamic-cached", "seconds"] == 2.0  # median of the repeats
    assert not table.loc["dynamic-cached", "same_tokens"]  # one bad repeat marks the row
    assert table.loc["dynamic-cached", "speedup_vs_nocache"] == 4.0
    assert table.loc["dynamic-cached", "flops_vs_final"] == 0.6
    # its FLOPs would make it 1/0.6 times as fast as HF generate; it measured as fast (10 tokens in
    # a median 2 s each): 60 % of the limit
    assert table.loc["dynamic-cached", "flops_speedup"] == pytest.approx(1 / 0.6)
    assert table.loc["dynamic-cached", "efficiency"] == pytest.approx(0.6)
    assert table.loc["hf-generate", "efficiency"] == 1.0


def test_best_of_repeats_ratio_is_immune_to_one_disturbed_repeat():
    """A repeat slowed by the machine moves the median ratio but not the best-of-repeats one."""
    timings = {
        "final": [2.0, 2.0, 2.0],
        "dynamic-cached": [1.0, 1.0, 6.0],
        "dynamic-x4-probe-copy": [1.0, 4.0, 4.0],
    }
    raw = pd.DataFrame(
        [
            {
                "model": "m",
                "decoder": name,
                "repeat": r,
                "seconds": t,
                "tokens": 10,
                "flops": 10,
                "same_tokens": True,
            }
            for name, seconds in timings.items()
            for r, t in enumerate(seconds)
        ]
    )
    table = latency.summarize(raw, threads=1).set_index("decoder")
    assert table.loc["dynamic-cached", "speedup_vs_final"] == 2.0  # median 1.0 s against 2.0 s
    assert table.loc["dynamic-cached", "speedup_vs_final_best"] == 2.0
    assert table.loc["dynamic-x4-probe-copy", "speedup_vs_final"] == 0.5  # two slowed repeats of three
    assert table.loc["dynamic-x4-probe-copy", "speedup_vs_final_best"] == 2.0
    assert table.loc["final", "speedup_vs_final_best"] == 1.0


def test_figure_and_table_need_no_torch(tmp_path):
    code = (
        "import sys, pandas as pd; from lite import latency, sections; "
        "t = pd.DataFrame({'model': ['m', 'm'], 'decoder': ['hf-generate', 'dynamic-cached'], "
        "'speedup_vs_hf': [1.0, 1.5], 'tokens_per_s': [10.0, 15.0], 'flops_vs_final': [1.0, 0.5]}); "
        f"latency.draw(t, {str(tmp_path / 'f.pdf')!r}); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "f.pdf").stat().st_size > 0 and (tmp_path / "f.png").stat().st_size > 0


def test_config_validation():
    with pytest.raises(ValueError, match="LatencyConfig.repeats"):
        latency.LatencyConfig(repeats=0)
    with pytest.raises(ValueError, match="LatencyConfig.draft_layers"):
        latency.LatencyConfig(draft_layers=())
    with pytest.raises(ValueError, match="LatencyConfig.widths"):
        latency.LatencyConfig(widths=(0,))
    with pytest.raises(ValueError, match="divide prompts=4"):
        latency.LatencyConfig(prompts=4, batch_sizes=(1, 3))
    assert set(latency.machine()) >= {"cpu", "cores", "platform"}


def test_cli_writes_table_figure_and_acceptance(tmp_path, tiny_model_dirs):
    dirs, evalset = tiny_model_dirs
    out, figure, accept = tmp_path / "t" / "latency.csv", tmp_path / "f" / "latency.pdf", tmp_path / "acc.csv"
    throughput = tmp_path / "f" / "throughput.pdf"
    lite_main(
        [
            "latency",
            "--model",
            str(dirs["lite"]),
            "--evalset",
            str(evalset),
            "--checkpoints",
            "2,4",
            "--thresholds",
            '{"2": 0.5}',
            "--out",
            str(out),
            "--figure",
            str(figure),
            "--throughput-figure",
            str(throughput),
            "--prompts",
            "2",
            "--batch-sizes",
            "1,2",
            "--max-new-tokens",
            "5",
            "--repeats",
            "1",
            "--draft-layers",
            "1,2",
            "--widths",
            "1,2",
            "--compare",
            f"it={dirs['it']}",
            "--acceptance-tokens",
            "4",
            "--acceptance-prompts",
            "2",
            "--acceptance-out",
            str(accept),
        ]
    )
    table = pd.read_csv(out)
    # widths x (batch sizes x decoders + HF's LayerSkip from each draft layer at batch size 1)
    assert len(table) == 2 * (2 * 7 + 2) and table["same_tokens"].all()
    assert set(table["model"]) == {"lite h64 4L", "lite h128 4L (x2)"} and set(table["batch"]) == {1, 2}
    for path in (
        out.with_suffix(".md"),
        figure,
        figure.with_suffix(".png"),
        throughput,
        throughput.with_suffix(".png"),
    ):
        assert path.stat().st_size > 0
    config = read_json(out.with_name("latency.csv.config.json"))
    assert config["machine"]["torch_threads"] == 1 and len(config["repeats"]) == 32
    assert config["prompt_truncated_chars"] == [0, 0]  # short prompts are measured whole
    rates = pd.read_csv(accept)
    assert list(rates["model"]) == ["lite"] * 6 + ["it"] * 6 and list(rates["draft_layer"]) == [1, 2, 3] * 4
    assert list(rates["responses"]) == (["until-eos"] * 3 + ["fixed-length"] * 3) * 2
    fixed = rates[rates["responses"] == "fixed-length"]
    assert (fixed["tokens"] == 2 * 4).all() and rates["acceptance"].dropna().between(0, 1).all()


def test_cli_errors(tmp_path, tiny_model_dirs, capsys):
    dirs, evalset = tiny_model_dirs
    common = [
        "--evalset",
        str(evalset),
        "--checkpoints",
        "2,3",
        "--out",
        str(tmp_path / "l.csv"),
        "--figure",
        str(tmp_path / "l.pdf"),
        "--max-new-tokens",
        "3",
        "--repeats",
        "1",
        "--prompts",
        "3",
    ]

    def latency_cli(*extra, model=dirs["lite"], thresholds='{"2": 0.5, "3": 0.5}'):
        lite_main(["latency", "--model", str(model), "--thresholds", thresholds, *common, *extra])

    with pytest.raises(InputError, match="no threshold for checkpoint layer 3"):
        latency_cli(thresholds='{"2": 0.5}')
    with pytest.raises(InputError, match="not a model folder"):
        latency_cli(model=tmp_path)
    with pytest.raises(InputError, match="--compare: expected NAME=MODEL_DIR"):
        latency_cli("--compare", "it", "--acceptance-out", str(tmp_path / "a.csv"))
    with pytest.raises(InputError, match="LatencyConfig.repeats"):
        latency_cli("--repeats", "0")
    with pytest.raises(InputError, match=r"no record of category 'poetry' \(has: math, sort, words\)"):
        latency_cli("--category", "poetry")
    with pytest.raises(SystemExit):  # a usage error: the option's type comes from LatencyConfig
        latency_cli("--draft-layers", "2,x")
    assert "--draft-layers: expected comma-separated integers, got '2,x'" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"--checkpoints: give at least one value"):
        latency_cli("--checkpoints", ",")
    with pytest.raises(InputError, match=r"'speculative-L4': layer 4 is outside 1\.\.3"):
        latency_cli("--draft-layers", "4")
    with pytest.raises(InputError, match=r"eval.jsonl: 3 records, --prompts asks 4 \(batches of 1, 2\)"):
        latency_cli("--prompts", "4", "--batch-sizes", "1,2")
    with pytest.raises(InputError, match=r"batch_sizes must each divide prompts=3"):
        latency_cli("--batch-sizes", "2")
    assert not (tmp_path / "l.csv").exists()


def test_forbidden_tokens_are_never_chosen_by_any_decoder(tiny_llama):
    prompt = [5, 17, 33]
    free = greedy_cached(tiny_llama, [prompt], 4, max_new_tokens=10, eos_ids=set(), pad_id=0)[0].token_ids
    banned = free[1]
    with latency.forbidden(tiny_llama, [banned]):
        ours = greedy_cached(tiny_llama, [prompt], 4, max_new_tokens=10, eos_ids=set(), pad_id=0)[0].token_ids
        assert hf_greedy(tiny_llama, prompt, max_new_tokens=10, eos_ids=(), pad_id=0) == ours
    assert banned not in ours and ours[0] == free[0] and ours != free
    # the hook is gone after the block
    assert (
        greedy_cached(tiny_llama, [prompt], 4, max_new_tokens=10, eos_ids=set(), pad_id=0)[0].token_ids
        == free
    )
    config = latency.LatencyConfig(prompts=1, max_new_tokens=8, repeats=1, draft_layers=(2,), eos="forbid")
    raw = latency.measure(tiny_llama, [prompt], [2, 4], {2: 0.5}, config, 0, "tiny", eos_ids=[banned])
    assert raw["same_tokens"].all()
    with pytest.raises(ValueError, match="LatencyConfig.eos"):
        latency.LatencyConfig(eos="stop")


def test_layerskip_makes_hf_generates_tokens_drafting_under_the_same_ban(sharp):
    """HF's LayerSkip (``assistant_early_exit``) is exact greedy self-speculation: hf-generate's
    tokens, with the EOS ban on the drafts' logits too (they come from the same LM head)."""
    prompt = [5, 17, 33]
    free = hf_greedy(sharp, prompt, max_new_tokens=12, eos_ids=(), pad_id=0)
    banned = free[2]
    base, heads = sharp.model, []

    def head(module, args, logits):  # (layers run, the banned token masked) per head application
        heads.append((base.config.num_hidden_layers, bool(torch.isneginf(logits[..., banned]).all())))

    with latency.forbidden(sharp, [banned]):
        reference = hf_greedy(sharp, prompt, max_new_tokens=12, eos_ids=(), pad_id=0)
        handle = sharp.lm_head.register_forward_hook(head)
        tokens = hf_greedy_batch(
            sharp, [prompt], max_new_tokens=12, eos_ids=(), pad_id=0, assistant_early_exit=2
        )[0]
        handle.remove()
    assert tokens == reference and banned not in tokens and reference != free
    assert {layers for layers, _ in heads} == {2, 4} and all(masked for _, masked in heads)
    # the option stays on that call: the model's plain greedy decoding makes no draft pass
    heads.clear()
    handle = sharp.lm_head.register_forward_hook(head)
    assert hf_greedy(sharp, prompt, max_new_tokens=12, eos_ids=(), pad_id=0) == free
    handle.remove()
    assert {layers for layers, _ in heads} == {4}


def test_hf_counter_counts_plain_generate_as_kvcache_flops_and_layerskips_passes(sharp):
    from lite.decoders.generation import Acceptance
    from lite.flops import ModelShape, kvcache_flops

    prompt, new = [5, 17, 33, 8], 10
    counter = latency._HFCounter(sharp)
    with counter.counting():
        tokens = hf_greedy(sharp, prompt, max_new_tokens=new, eos_ids=(), pad_id=0)
    shape = ModelShape.from_config(sharp.config)
    assert counter.causal == kvcache_flops(shape, len(prompt), [4] * new, [1] * new)
    assert counter.kernel > counter.causal  # the prompt's keys counted as a whole square
    assert (counter.rounds, counter.proposed) == (new, 0)  # a full pass per token, no drafts
    raw = latency._run(sharp, latency._HF(1), [prompt], 1, 0, new, metered=True)
    [(gen, meter)] = raw
    assert gen.token_ids == tokens and isinstance(meter, latency._HFCounter)
    stats = gen.acceptance
    assert stats == Acceptance(meter.proposed, new - meter.rounds, meter.rounds) and stats.proposed > 0
    assert 1 <= stats.rounds <= new and 0 <= stats.accepted <= stats.proposed
    with pytest.raises(ValueError, match="one prompt at a time"):
        latency._run(sharp, latency._HF(1), [prompt, prompt], 2, 0, new, metered=False)


def test_measure_times_the_workflows_exit_options_beside_the_rest(sharp):
    """``exits``: workflow decoders with their own thresholds and gates, timed with a KV cache;
    their FLOPs are the meters' and their tokens do not change with the batch."""
    from test_exit_options import gates_document

    config = latency.LatencyConfig(
        prompts=2,
        batch_sizes=(1, 2),
        max_new_tokens=6,
        repeats=1,
        draft_layers=(1,),
        exits=("dynamic-x2-probe-copy", "dynamic-paper-copy"),
    )
    assert config.decoders()[: len(sections.DECODERS) + 2] == [
        *sections.DECODERS,
        "dynamic-x2-probe-copy",
        "dynamic-paper-copy",
    ]
    thresholds = {1: 0.5, 2: 0.5, 3: 0.5}
    exits = {"dynamic-x2-probe-copy": {1: 0.6, 2: 0.6, 3: 0.6}, "dynamic-paper-copy": thresholds}
    prompts = [[5, 17, 33], [8, 9, 10, 11]]
    raw = latency.measure(
        sharp, prompts, [1, 2, 3], thresholds, config, 0, "tiny", exits=exits, gates=gates_document(sharp)
    )
    table = latency.summarize(raw, threads=1)
    for name in exits:
        rows = table[table["decoder"] == name]
        assert len(rows) == 2 and rows["same_tokens"].all() and (rows["mean_exit_layer"] < 4).all()
        assert (rows["flops"] >= rows["flops_needed"]).all()
        # what it needs is its copied accounting, gates and copies included, the same at any batch
        assert (rows["flops_needed"] == rows["flops_kvcache"]).all() and rows["flops_needed"].nunique() == 1
    # both accountings beside the speed, against the final layer's at the same batch size
    one = table[table["batch"] == 1].set_index("decoder")
    assert one.loc["final", "saved_pct_nocache"] == 0.0 and one.loc["final", "saved_pct_kvcache"] == 0.0
    assert one.loc["dynamic-paper-copy", "saved_pct_nocache"] > 0.0
    assert one.loc["dynamic-nocache", "saved_pct_kvcache"] == one.loc["dynamic-cached", "saved_pct_kvcache"]
    assert one[["saved_pct_nocache", "saved_pct_kvcache"]].loc["speculative-L1"].isna().all()
    with pytest.raises(InputError, match="no thresholds given"):
        latency.measure(sharp, prompts, [1, 2, 3], thresholds, config, 0, "tiny", exits={})
    with pytest.raises(ValueError, match="is not a dynamic decoder"):
        latency.LatencyConfig(exits=("final",))


def test_throughput_figure_gives_every_decoder_a_colour(tmp_path, monkeypatch):
    from lite.report import style

    """More decoders than one ten-colour palette holds (the bench times 13 by default)."""
    names = [f"d{i}" for i in range(13)]
    table = pd.DataFrame(
        [
            {"model": "m", "decoder": name, "batch": batch, "tokens_per_s": 10.0 + i, "flops_speedup": 1.0}
            for i, name in enumerate(["hf-generate", *names])
            for batch in (1, 16)
        ]
    )
    drawn = {}

    def keep(fig, out):  # the figure as drawn, before it is saved and closed
        drawn["lines"] = [line.get_color() for line in fig.axes[0].get_lines() if line.get_linestyle() == "-"]
        return [str(out)]

    monkeypatch.setattr(style, "save_figure", keep)
    latency.draw_throughput(table, tmp_path / "throughput.pdf")
    assert len(drawn["lines"]) == 14 and len({tuple(c) for c in drawn["lines"]}) == 14
