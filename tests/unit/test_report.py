"""Figures and tables build from small synthetic records, and their numbers are the right ones."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from types import SimpleNamespace

import jinja2
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from docutils.core import publish_parts

from lite import analysis, cli, report
from lite.io import InputError, read_json, read_jsonl, write_jsonl
from lite.plan import ARTEFACT_SPECS
from lite.report import findings, metrics, style, tables
from lite.report.inputs import load_inputs

ROOT = Path(__file__).resolve().parents[2]
N_LAYERS = 8
CHECKPOINTS = [2, 4, 6, 8]
EVALSETS = {"vic": ["generic", "math"], "wiz": ["code", "writing"]}
DECODERS = {
    "it": ["final", "fixed-L2", "fixed-L4"],
    "lite": [
        "final",
        "dynamic-paper",
        "dynamic-aggressive",
        "random-half",
        "random-k",
        "sequential",
        "dynamic-x0.5",
        "dynamic-x3",
    ],
    "lite_weighted": ["final"],
}
# how often a layer agrees with the final one, per tuning (LITE's intermediate layers align more)
AGREEMENT = {"it": 0.4, "lite": 0.85, "lite_weighted": 0.75}


def _flops(exit_layers: list[int]) -> dict:
    # a stand-in cost model: proportional to the layers run, plus a head per token; with a KV cache
    # a quarter of that, plus a catch-up per early exit that costs more than the exit saved (so
    # early exit can cost more than the final layer there, as it can for real)
    nocache = float(sum(1000 * layer + 50 for layer in exit_layers))
    catch_up = 1500 * sum(layer < N_LAYERS for layer in exit_layers)
    return {"nocache": nocache, "kvcache": nocache / 4 + catch_up}


def make_records(models=("tiny8", "tiny8b"), n_prompts: int = 6, seed: int = 0) -> dict[str, list[dict]]:
    """Consistent generation, trace, judgment and eval records for every model/tuning/evalset/decoder.

    Returns {"generations": [...], "traces": [...], "judgments": [...], "evals": {evalset: [...]}}.
    """
    rng = np.random.default_rng(seed)
    out = {"generations": [], "traces": [], "judgments": [], "evals": {}}
    for evalset, categories in EVALSETS.items():
        prompts = [
            {
                "id": f"{evalset}_{i}",
                "instruction": f"Say {i} words about thing {i}",
                "input": "x" if i % 2 else "",
                "category": categories[i % len(categories)],
                "reference": None,
            }
            for i in range(n_prompts)
        ]
        out["evals"][evalset] = prompts
        for model in models:
            for tuning, decoders in DECODERS.items():
                systems = {}
                for decoder in decoders:
                    for prompt in prompts:
                        length = int(rng.integers(3, 10))
                        if decoder == "final":
                            exits = [N_LAYERS] * length
                        elif decoder.startswith("fixed-L"):
                            exits = [int(decoder[7:])] * length
                        else:
                            exits = [int(x) for x in rng.choice(CHECKPOINTS, size=length)]
                        record = {
                            "model": model,
                            "tuning": tuning,
                            "evalset": evalset,
                            "decoder": decoder,
                            **prompt,
                            "text": " ".join(f"w{t}" for t in range(length)),
                            "token_ids": [int(t) for t in rng.integers(3, 90, size=length)],
                            "exit_layers": exits,
                            "confidences": [float(c) for c in rng.uniform(0.3, 1, length)],
                            "n_layers": N_LAYERS,
                            "checkpoints": CHECKPOINTS,
                            "prompt_tokens": 12,
                            # one prompt of vic was cut to fit the context
                            "prompt_truncated_chars": 30 if prompt["id"] == "vic_1" else 0,
                            "flops": _flops(exits),
                        }
                        out["generations"].append(record)
                        systems.setdefault(decoder, []).append(record)
                    if decoder != "final":
                        out["judgments"] += _judge(
                            rng, model, evalset, f"{tuning}.final", f"{tuning}.{decoder}", prompts
                        )
                for prompt, final in zip(prompts, systems["final"], strict=True):
                    out["traces"].append(_trace(rng, model, tuning, evalset, prompt, final["token_ids"]))
            out["judgments"] += _judge(rng, model, evalset, "it.final", "lite.final", prompts)
    return out


def _judge(rng, model, evalset, a, b, prompts) -> list[dict]:
    records = []
    for k, prompt in enumerate(prompts):
        first, second = int(rng.integers(4, 10)), int(rng.integers(4, 10))
        parsed = k != 0  # one unparseable instance per pair
        consistent = k != 1
        outcome = (
            None
            if not parsed
            else ("tie" if not consistent or first == second else "win" if first > second else "loss")
        )
        records.append(
            {
                "model": model,
                "evalset": evalset,
                "id": prompt["id"],
                "category": prompt["category"],
                "system_a": a,
                "system_b": b,
                "orders": [
                    {"first": "a", "scores": [first, second], "raw": f"{first} {second}", "parsed": parsed},
                    {"first": "b", "scores": [second, first], "raw": f"{second} {first}", "parsed": True},
                ],
                "score_a": float(first) if parsed else None,
                "score_b": float(second) if parsed else None,
                "outcome": outcome,
                "consistent": consistent,
                "parsed": parsed,
                "judge": {
                    "name": "reference",
                    "model": None,
                    "prompt_version": "v1",
                    "api_version": None,
                    "sampling": {},
                },
            }
        )
    return records


def _trace(rng, model, tuning, evalset, prompt, token_ids) -> dict:
    argmax, confidence = [], []
    for token in token_ids:
        row, conf = [], []
        for _layer in range(1, N_LAYERS):
            agree = rng.random() < AGREEMENT[tuning]
            row.append(token if agree else int(rng.integers(3, 90)) + 100)
            conf.append(float(rng.uniform(0.7, 1.0) if agree else rng.uniform(0.0, 0.7)))
        argmax.append([*row, token])
        confidence.append([*conf, float(rng.uniform(0.5, 1.0))])
    return {
        "model": model,
        "tuning": tuning,
        "evalset": evalset,
        "id": prompt["id"],
        "category": prompt["category"],
        "token_ids": token_ids,
        "layer_argmax": argmax,
        "layer_confidence": confidence,
    }


def _group(records: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault(tuple(record[k] for k in keys), []).append(record)
    return groups


@pytest.fixture(scope="module")
def record_files(tmp_path_factory) -> dict[str, list[str]]:
    """The fixture written to disk the way the workflow lays it out; paths grouped by kind."""
    root = tmp_path_factory.mktemp("results")
    records = make_records()
    files = {
        "generations": [],
        "traces": [],
        "judgments": [],
        "evals": [],
        "alignment": [],
        "calibration": [],
        "similarity": [],
    }
    for (model, tuning, evalset, decoder), recs in _group(
        records["generations"], "model", "tuning", "evalset", "decoder"
    ).items():
        path = root / model / "generations" / tuning / evalset / f"{decoder}.jsonl"
        write_jsonl(path, recs)
        files["generations"].append(str(path))
    for (model, tuning, evalset), recs in _group(records["traces"], "model", "tuning", "evalset").items():
        path = root / model / "traces" / tuning / f"{evalset}.jsonl"
        write_jsonl(path, recs)
        files["traces"].append(str(path))
        for kind, frame in (
            ("alignment", analysis.alignment(recs)),
            ("calibration", analysis.calibration(recs)),
        ):
            out = root / model / "analysis" / tuning / evalset / f"{kind}.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(out, index=False)
            files[kind].append(str(out))
    for (model, evalset, a, b), recs in _group(
        records["judgments"], "model", "evalset", "system_a", "system_b"
    ).items():
        path = root / model / "judgments" / "reference" / evalset / f"{a}~{b}.jsonl"
        write_jsonl(path, recs)
        files["judgments"].append(str(path))
    for evalset, recs in records["evals"].items():
        path = root / "data" / "eval" / f"{evalset}.jsonl"
        write_jsonl(path, recs)
        files["evals"].append(str(path))
        # similarity tables as lite similarity writes them (values made up, spaCy is tested elsewhere)
        sim = pd.DataFrame(
            {
                "model": "tiny8",
                "evalset": evalset,
                "id": [r["id"] for r in recs],
                "category": [r["category"] for r in recs],
                "system_a": "lite.final",
                "system_b": "lite.dynamic-paper",
                "similarity": np.linspace(0.8, 1.0, len(recs)),
            }
        )
        path = root / "tiny8" / "similarity" / evalset / "final~dynamic-paper.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        sim.to_csv(path, index=False)
        files["similarity"].append(str(path))
    files["root"] = [str(root)]
    return files


def _inputs_for(name: str, files: dict[str, list[str]]) -> list[str]:
    if name in ("fig5", "fig13", "fig14"):
        return files["alignment"]
    if name in ("fig6", "fig11", "fig15"):
        return files["calibration"]
    if name == "table2":
        return files["similarity"]
    if name == "table4":
        return files["evals"] + files["generations"]
    if name == "headline":
        return files["alignment"] + files["calibration"] + files["judgments"] + files["generations"]
    return files["judgments"] + files["generations"]


@pytest.mark.parametrize(
    ("kind", "name"), [(kind, name) for kind, named in report.ARTEFACTS.items() for name in named]
)
def test_every_artefact_builds(kind, name, record_files, tmp_path):
    artefact = report.ARTEFACTS[kind][name]
    options = {"evalset": "wiz"} if name in ("fig9", "fig10") else {}
    suffix = ".pdf" if artefact.kind == "figure" else ".csv"
    out = tmp_path / f"{name}{suffix}"
    written = report.build(name, artefact.kind, _inputs_for(name, record_files), out, **options)
    caption = tmp_path / f"{name}.caption.rst"
    if artefact.kind == "figure":
        twin = out.with_suffix(".png")
        assert written == [out, twin, caption]
        assert out.read_bytes().startswith(b"%PDF") and out.stat().st_size > 1000
        assert twin.read_bytes().startswith(b"\x89PNG") and twin.stat().st_size > 1000
    else:
        markdown, html = out.with_suffix(".md"), out.with_suffix(".html")
        assert written == [out, markdown, html, caption]
        frame = pd.read_csv(out)
        assert len(frame) > 0
        assert markdown.read_text().count("\n|") >= len(frame) + 1
        assert html.read_text().count("<tr>") == len(frame) + 1  # the header row and one per row
    # the caption opens with what the artefact shows; a paper finding's adds this run's verdict
    text = caption.read_text()
    assert text.startswith(f"**{name}.** {artefact.caption}")
    if name in findings.FINDINGS:
        assert "The paper: " in text and "This run: " in text
        assert "holds" in text or "does not hold here" in text
    config = read_json(out.with_name(out.name + ".config.json"))
    assert config["artefact"] == name and config["inputs"]
    assert artefact.caption and artefact.needs


def test_each_artefact_takes_the_options_its_rule_passes():
    """lite.plan's entry of an artefact (kinds, options) and lite.report's function agree."""
    for name, spec in ARTEFACT_SPECS.items():
        for kind in spec.kinds:
            assert set(spec.options) <= set(report.ARTEFACTS[kind][name].options), (kind, name)


def test_table1_equals_hand_computation(tmp_path):
    """Two prompts: final costs 100 + 300, dynamic 50 + 150 -> 50 % saved (no cache)."""
    base = {
        "model": "m",
        "tuning": "lite",
        "evalset": "vic",
        "category": "c",
        "instruction": "i",
        "input": "",
    }
    records = [
        {
            **base,
            "decoder": "final",
            "id": "a",
            "token_ids": [1, 2],
            "flops": {"nocache": 100.0, "kvcache": 40.0},
        },
        {
            **base,
            "decoder": "final",
            "id": "b",
            "token_ids": [1],
            "flops": {"nocache": 300.0, "kvcache": 60.0},
        },
        {
            **base,
            "decoder": "dynamic-paper",
            "id": "a",
            "token_ids": [1],
            "flops": {"nocache": 50.0, "kvcache": 30.0},
        },
        {
            **base,
            "decoder": "dynamic-paper",
            "id": "b",
            "token_ids": [1, 2, 3],
            "flops": {"nocache": 150.0, "kvcache": 45.0},
        },
    ]
    write_jsonl(tmp_path / "final.jsonl", records[:2])
    write_jsonl(tmp_path / "dyn.jsonl", records[2:])
    out = tmp_path / "table1.csv"
    cli.main(
        ["table", "table1", "--out", str(out), str(tmp_path / "final.jsonl"), str(tmp_path / "dyn.jsonl")]
    )
    frame = pd.read_csv(out)
    row = frame[frame["evalset"] == "vic"].iloc[0]
    assert row["n"] == 2
    assert row["final_flops_nocache"] == 400.0 and row["dynamic_flops_nocache"] == 200.0
    assert row["saved_pct_nocache"] == pytest.approx(50.0)
    assert row["saved_pct_kvcache"] == pytest.approx(25.0)  # 75 of 100
    mean = frame[frame["evalset"] == "mean"].iloc[0]
    assert mean["saved_pct_nocache"] == pytest.approx(50.0) and np.isnan(mean["final_flops_nocache"])
    assert "| m | dynamic-paper | vic | 2 |" in (tmp_path / "table1.md").read_text()


def test_table1_on_fixture_matches_record_sums(record_files, tmp_path):
    inputs = load_inputs(record_files["generations"])
    frame = report.make("table1", inputs, model="tiny8")
    for evalset in EVALSETS:
        final = [
            g
            for g in inputs.generations
            if (g["model"], g["tuning"], g["evalset"], g["decoder"]) == ("tiny8", "lite", evalset, "final")
        ]
        dyn = [
            g
            for g in inputs.generations
            if (g["model"], g["tuning"], g["evalset"], g["decoder"])
            == ("tiny8", "lite", evalset, "dynamic-paper")
        ]
        expected = 100 * (
            1 - sum(g["flops"]["nocache"] for g in dyn) / sum(g["flops"]["nocache"] for g in final)
        )
        got = frame[frame["evalset"] == evalset]["saved_pct_nocache"].item()
        assert got == pytest.approx(expected)
    assert set(frame["model"]) == {"tiny8"}


def _judgment(a, b, sa, sb, outcome, consistent=True, parsed=True, rid="1", judge="reference"):
    return {
        "model": "m",
        "evalset": "vic",
        "id": rid,
        "category": "c",
        "system_a": a,
        "system_b": b,
        "orders": [],
        "score_a": sa,
        "score_b": sb,
        "outcome": outcome,
        "consistent": consistent,
        "parsed": parsed,
        "judge": {"name": judge},
    }


def test_quality_flips_pairs_and_counts_failures():
    judgments = [
        _judgment("lite.dyn", "lite.final", 8.0, 6.0, "win", rid="1"),
        _judgment("lite.dyn", "lite.final", 5.0, 7.0, "loss", rid="2"),
        _judgment("lite.dyn", "lite.final", 6.5, 6.5, "tie", consistent=False, rid="3"),
        _judgment("lite.dyn", "lite.final", None, None, None, parsed=False, rid="4"),
    ]
    q = metrics.pair_quality(judgments, "lite.final", "lite.dyn").iloc[0]
    assert q["n"] == 4 and q["unparsed"] == 1
    assert q["score_x"] == pytest.approx((6 + 7 + 6.5) / 3) and q["score_y"] == pytest.approx(
        (8 + 5 + 6.5) / 3
    )
    assert (q["wins"], q["ties"], q["losses"]) == (1, 1, 1)  # seen from lite.final: dyn's loss is its win
    assert q["inconsistent_pct"] == pytest.approx(100 / 3)
    with pytest.raises(InputError, match="several judges"):
        metrics.pair_quality(
            judgments + [_judgment("lite.dyn", "lite.final", 1.0, 2.0, "loss", judge="claude")],
            "lite.final",
            "lite.dyn",
        )
    with pytest.raises(InputError, match="given twice"):
        metrics.quality(judgments + judgments[:1])


def test_table6_uses_each_baseline(record_files):
    inputs = load_inputs(record_files["judgments"] + record_files["generations"])
    frame = report.make("table6", inputs)
    systems = list(dict.fromkeys(frame["system"]))
    assert systems == [
        "lite.dynamic-aggressive",
        "lite.dynamic-paper",
        "lite.dynamic-x0.5",
        "lite.dynamic-x3",
        "lite.random-half",
        "lite.random-k",
        "lite.sequential",
    ]
    row = frame[
        (frame["model"] == "tiny8") & (frame["system"] == "lite.random-k") & (frame["evalset"] == "vic")
    ]
    direct = metrics.pair_quality(inputs.judgments, "lite.random-k", "lite.final")
    direct = direct[(direct["model"] == "tiny8") & (direct["evalset"] == "vic")]
    assert row["score"].item() == pytest.approx(direct["score_x"].item())
    assert row["unparsed"].item() == 1  # one unparseable instance per pair in the fixture


def test_table4_from_eval_files(record_files):
    frame = report.make("table4", load_inputs(record_files["evals"]))
    assert frame["evalset"].tolist() == ["vic", "wiz"]
    assert frame["count"].tolist() == [6, 6] and frame["categories"].tolist() == [2, 2]
    # "Say i words about thing i" has 6 words; odd ids add the one-word input
    assert frame["mean_prompt_words"].tolist() == [6.5, 6.5]
    assert "truncated_prompts" not in frame  # eval records cannot tell what a model had to cut


def test_table4_counts_truncated_prompts_from_generations(record_files):
    # what the workflow passes: the main model's LITE final-layer generations
    finals = [
        p
        for p in record_files["generations"]
        if p.endswith("final.jsonl") and "/tiny8/generations/lite/" in p
    ]
    frame = report.make("table4", load_inputs(record_files["evals"] + finals))
    assert frame["evalset"].tolist() == ["vic", "wiz"] and frame["count"].tolist() == [6, 6]
    assert frame["truncated_prompts"].tolist() == [1, 0]
    # every system of both models: still one prompt per model, not one per record
    frame = report.make("table4", load_inputs(record_files["evals"] + record_files["generations"]))
    assert frame["truncated_prompts"].tolist() == [2, 0]
    # an eval set without generation records has no count rather than a false 0
    vic_only = [p for p in finals if "/vic/" in p]
    frame = report.make("table4", load_inputs(record_files["evals"] + vic_only))
    assert frame["truncated_prompts"].isna().tolist() == [False, True]
    assert "| wiz | 6 | 2 | 6.50 | – |" in tables.to_markdown(frame)


def test_alignment_figure_from_traces_or_tables_agree(record_files):
    from_tables = load_inputs(record_files["alignment"]).alignment
    from_traces = analysis.alignment(load_inputs(record_files["traces"]).traces)
    keys = ["model", "tuning", "evalset", "layer"]
    merged = from_tables.merge(from_traces, on=keys, suffixes=("_csv", "_trace"))
    assert len(merged) == len(from_traces)
    np.testing.assert_allclose(merged["alignment_pct_csv"], merged["alignment_pct_trace"])
    # the fixture's LITE layers agree more often than IT's, as the paper's do
    early = from_traces[(from_traces["layer"] == 2) & (from_traces["model"] == "tiny8")]
    assert (
        early[early["tuning"] == "lite"]["alignment_pct"].min()
        > early[early["tuning"] == "it"]["alignment_pct"].max()
    )


def test_exit_shares_cover_every_checkpoint(record_files):
    inputs = load_inputs(record_files["generations"])
    shares = metrics.exit_shares(inputs.generations, "lite.dynamic-paper")
    for _, part in shares.groupby(["model", "evalset"]):
        assert part["layer"].tolist() == CHECKPOINTS
        assert part["share_pct"].sum() == pytest.approx(100.0)


def test_bad_inputs_are_named(record_files, tmp_path):
    with pytest.raises(InputError, match="needs option"):
        report.build("fig9", "figure", record_files["judgments"], tmp_path / "f.pdf")
    with pytest.raises(InputError, match="takes no option"):
        report.build("fig5", "figure", record_files["alignment"], tmp_path / "f.pdf", evalset="vic")
    with pytest.raises(InputError, match="no judgments of it.final vs lite.final"):
        report.build("fig4", "figure", record_files["generations"][:1], tmp_path / "f.pdf")
    mixed = tmp_path / "mixed.jsonl"
    first_gen = json.loads(open(record_files["generations"][0]).readline())
    first_judgment = json.loads(open(record_files["judgments"][0]).readline())
    write_jsonl(mixed, [first_gen, first_judgment])
    with pytest.raises(InputError, match=r"mixed.jsonl:2: file mixes"):
        load_inputs([mixed])
    final, dynamic = (
        next(p for p in record_files["generations"] if p.endswith(f"tiny8/generations/lite/vic/{d}"))
        for d in ("final.jsonl", "dynamic-paper.jsonl")
    )
    broken = tmp_path / "broken.jsonl"
    write_jsonl(broken, [{k: v for k, v in r.items() if k != "flops"} for r in read_jsonl(dynamic)])
    with pytest.raises(InputError, match=r"broken.jsonl:1: missing field 'flops'"):
        report.make("table1", load_inputs([final, broken]))
    assert not (tmp_path / "f.pdf").exists()


def test_markdown_twin_formats_numbers():
    frame = pd.DataFrame(
        {
            "evalset": ["vic", "a|b"],
            "flops": [1.23e9, 5.0e4],
            "pct": [33.333, 1.0],
            "n": [4, 5],
            "x": [np.nan, 0.5],
        }
    )
    text = tables.to_markdown(frame, "caption")
    assert text.startswith("caption")
    assert "| vic | 1.230e+09 | 33.33 | 4 | – |" in text
    assert "| a\\|b | 5.000e+04 | 1.00 | 5 | 0.50 |" in text


# ----------------------------------------------------------------------------- the paper's colours

ORANGE, BLUE = mcolors.to_rgba(style.REFERENCE_COLOR), mcolors.to_rgba(style.COMPARED_COLOR)


def _bar_colours(fig) -> dict[str, tuple]:
    """Face colour of each labelled bar series, over every panel."""
    colours = {}
    for ax in fig.axes:
        for bars in ax.containers:
            colours.setdefault(bars.get_label(), bars.patches[0].get_facecolor())
    plt.close(fig)
    return colours


def _line_colours(fig) -> dict[str, tuple]:
    """Colour of each labelled line, over every panel."""
    colours = {
        line.get_label(): mcolors.to_rgba(line.get_color())
        for ax in fig.axes
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }
    plt.close(fig)
    return colours


def test_figures_draw_the_reference_orange_and_what_it_is_compared_with_blue(record_files):
    judged = load_inputs(record_files["judgments"] + record_files["generations"])
    fig1 = _bar_colours(report.make("fig1", judged))
    assert fig1["LITE final"] == ORANGE and fig1["LITE dynamic-paper"] == BLUE
    fig4 = _bar_colours(report.make("fig4", judged))
    assert fig4["IT final"] == ORANGE and fig4["LITE final"] == BLUE
    alignment = load_inputs(record_files["alignment"])
    expected = {
        "fig5": {"IT": ORANGE, "LITE": BLUE},
        "fig13": {"IT": ORANGE, "weighted LITE": BLUE},
        "fig14": {"LITE": ORANGE, "weighted LITE": BLUE},
    }
    for name, colours in expected.items():
        assert _line_colours(report.make(name, alignment, layers=(2, 4, 6))) == colours, name


def test_fig1_puts_the_main_model_first(record_files):
    # the main model's files come first, as the workflow passes them, though its name sorts last
    files = sorted(record_files["judgments"] + record_files["generations"], key=lambda p: "/tiny8b/" not in p)
    fig = report.make("fig1", load_inputs(files))
    titles = [ax.get_title() for ax in fig.axes]
    plt.close(fig)
    assert titles[0].startswith("tiny8b:") and titles[2].startswith("tiny8:")


def _luminance(colour) -> float:
    r, g, b, _ = mcolors.to_rgba(colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_calibration_counts_sit_in_a_legible_table(record_files):
    inputs = load_inputs(record_files["calibration"])
    fig = report.make("fig6", inputs, layers=(2, 4, 6))
    fig.canvas.draw()
    for ax in fig.axes:
        (table,) = ax.tables  # the counts, none printed over the points
        cells = table.get_celld()
        assert [cells[row, -1].get_text().get_text() for row in range(4)] == [
            "confidence ≥",
            "layer 2 tokens",
            "layer 4 tokens",
            "layer 6 tokens",
        ]
        texts = [cell.get_text() for cell in cells.values()] + [ax.title, ax.yaxis.label]
        assert all(text.get_fontsize() >= style.MIN_FONT_SIZE for text in texts)
        assert all(_luminance(text.get_color()) < 0.75 for text in texts)  # no pale yellow
    # the first panel's counts are the calibration table's
    first = inputs.calibration
    first = first[(first["model"] == "tiny8") & (first["evalset"] == "vic") & (first["tuning"] == "lite")]
    counts = first[first["layer"] == 4].sort_values("bin_low")["count"].astype(str).tolist()
    cells = fig.axes[0].tables[0].get_celld()
    assert [cells[2, col].get_text().get_text() for col in range(len(counts))] == counts
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert any(text.startswith("hollow: fewer than") for text in legend)
    plt.close(fig)


def test_frontier_keeps_every_point_on_its_axes(record_files):
    fig = report.make(
        "frontier", load_inputs(record_files["judgments"] + record_files["generations"]), "figure"
    )
    titles = [ax.get_title() for ax in fig.axes]
    assert len(set(titles)) == len(titles)
    xs = []
    for ax in fig.axes:
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        points = [*(xy for c in ax.collections for xy in c.get_offsets())]
        points += [*(xy for line in ax.get_lines() for xy in line.get_xydata())]
        assert points and all(x0 < x < x1 and y0 < y < y1 for x, y in points), ax.get_title()
        xs += [x for x, _ in points]
    plt.close(fig)
    assert min(xs) < -3  # the fixture's KV-cache savings go below zero, and stay on the axes


# ----------------------------------------------------------------------------- findings and verdicts


def _exit_record(evalset: str, counts: dict[int, int]) -> dict:
    exits = [layer for layer, n in counts.items() for _ in range(n)]
    return {
        "model": "m",
        "tuning": "lite",
        "decoder": "dynamic-paper",
        "evalset": evalset,
        "id": "1",
        "token_ids": list(range(len(exits))),
        "exit_layers": exits,
        "checkpoints": list(counts),
    }


def test_exit_verdict_wants_exits_spread_with_no_layer_taking_nearly_all():
    spread = findings.exit_finding(
        [_exit_record("vic", {3: 67, 6: 8, 9: 1, 12: 24})], "m", "lite.dynamic-paper"
    )
    # a checkpoint may take few exits while three layers take their share and none takes 70 %
    assert spread.holds and spread.this_run == (
        "layer 3 67 %, layer 6 8 %, layer 9 1 %, layer 12 24 % (layer 9 below 5 %)"
    )
    one_layer = findings.exit_finding(
        [_exit_record("vic", {3: 71, 6: 10, 9: 5, 12: 14})], "m", "lite.dynamic-paper"
    )
    assert one_layer.holds is False and one_layer.verdict.startswith("does not hold here")
    two_layers = findings.exit_finding(
        [_exit_record("vic", {3: 60, 6: 4, 9: 4, 12: 32})], "m", "lite.dynamic-paper"
    )
    assert two_layers.holds is False
    assert "tokens exit at many layers" in two_layers.sentence()
    assert "This run: layer 3 60 %" in two_layers.sentence()


def test_findings_average_over_eval_sets_not_over_tokens():
    # a small set where layer 3 takes every token, a large one where it takes a tenth
    records = [_exit_record("vic", {3: 10, 12: 0}), _exit_record("wiz", {3: 10, 12: 90})]
    shares = findings.mean_exit_shares(records, "lite.dynamic-paper", "m")
    assert shares == {3: pytest.approx(55.0), 12: pytest.approx(45.0)}  # pooled: 18 % and 82 %


def _calibration(tuning: str, confident: dict[int, tuple[int, int]]) -> pd.DataFrame:
    """Calibration rows of one eval set: per layer, (tokens, aligned) at confidence >= 0.9 and a
    low-confidence bin the verdict must not read."""
    rows = []
    for layer, (count, aligned) in confident.items():
        for low, high, n, hits in ((0.0, 0.9, 50, 5), (0.9, 1.0, count, aligned)):
            rows.append(
                {
                    "model": "m",
                    "tuning": tuning,
                    "evalset": "vic",
                    "layer": layer,
                    "bin": f"{low}-{high}",
                    "bin_low": low,
                    "bin_high": high,
                    "count": n,
                    "aligned": hits,
                    "alignment_pct": 100.0 * hits / n,
                }  # fmt: skip
            )
    return pd.DataFrame(rows)


def test_fig11_says_when_it_confidence_predicts_alignment_too():
    trusted = _calibration("it", {3: (100, 99), 6: (100, 98)})
    finding = findings.confidence_finding(trusted, "m", "it", [3, 6], "fig11")
    assert finding.holds is False and "here IT's confidence predicts alignment too" in finding.this_run
    assert "99.0 / 98.0 % equal the final layer's at layers 3 / 6" in finding.this_run
    poor = _calibration("it", {3: (100, 81), 6: (100, 98)})
    finding = findings.confidence_finding(poor, "m", "it", [3, 6], "fig11")
    assert finding.holds and "predicts alignment too" not in finding.this_run
    # the same numbers after LITE: the paper's fig6 finding holds only where every layer is trusted
    assert findings.confidence_finding(trusted.assign(tuning="lite"), "m", "lite", [3, 6], "fig6").holds
    assert not findings.confidence_finding(poor.assign(tuning="lite"), "m", "lite", [3, 6], "fig6").holds


def test_quality_verdicts_use_the_same_quality_margin():
    judgments = [
        _judgment("lite.dynamic-paper", "lite.final", 7.0, 7.2, "loss"),
        _judgment("lite.sequential", "lite.final", 6.4, 7.2, "loss"),
        _judgment("lite.random-k", "lite.final", 6.8, 7.2, "loss"),
        _judgment("it.final", "lite.final", 7.3, 7.2, "win"),
    ]
    baselines = ["lite.sequential", "lite.random-k"]
    finding = findings.baseline_finding(judgments, [], "m", "lite.final", "lite.dynamic-paper", baselines)
    assert finding.holds is False  # random-k is only 0.2 below dynamic exit
    assert (
        finding.this_run.startswith("sequential 6.40 (0.60 below")
        and "dynamic-paper's 7.00" in finding.this_run
    )
    finding = findings.baseline_finding(judgments, [], "m", "lite.final", "lite.dynamic-paper", baselines[:1])
    assert finding.holds
    assert findings.final_quality_finding(judgments, "m", "it.final", "lite.final").holds
    # a dynamic decoder that never exits early keeps the final layer's score trivially: no verdict "holds"
    never = [_exit_record("vic", {3: 0, 12: 10})]
    finding = findings.baseline_finding(
        judgments, never, "m", "lite.final", "lite.dynamic-paper", baselines[:1]
    )
    assert (
        finding.holds is False
        and "dynamic-paper lets no token exit before the final layer" in finding.this_run
    )
    exits = [_exit_record("vic", {3: 4, 12: 6})]
    assert findings.baseline_finding(
        judgments, exits, "m", "lite.final", "lite.dynamic-paper", baselines[:1]
    ).holds


def test_alignment_verdict_reads_the_gap_at_each_layer():
    frame = pd.DataFrame(
        [
            {"model": "m", "tuning": t, "evalset": e, "layer": k, "alignment_pct": v}
            for t, values in {"it": {3: 50.0, 6: 80.0}, "lite": {3: 90.0, 6: 85.0}}.items()
            for e in ("vic", "wiz")
            for k, v in values.items()
        ]
    )
    far = findings.alignment_finding(frame, "m", "it", "lite", [3, 6], "fig5")
    assert far.holds is False  # 5 points apart at layer 6
    assert far.this_run.startswith("at layers 3 / 6, LITE 90.0 / 85.0 %, IT 50.0 / 80.0 %")
    assert findings.alignment_finding(frame, "m", "it", "lite", [3], "fig5").holds
    close = findings.alignment_finding(
        frame.replace({"it": "lite_weighted"}), "m", "lite", "lite_weighted", [6], "fig14"
    )
    assert close.holds


def test_headline_gives_a_verdict_per_finding(record_files):
    inputs = load_inputs(_inputs_for("headline", record_files))
    frame = report.make("headline", inputs)
    assert list(frame.columns) == tables.HEADLINE_COLUMNS
    shown = ["fig5", "fig4", "fig3", "fig6", "fig11", "fig8", "fig1, table1", "fig12", "table6"]
    assert frame["finding (where shown)"].str.extract(r"\(([^()]*)\)$")[0].tolist() == shown
    assert frame["verdict"].str.match(r"(holds|does not hold here) \(").all()
    # the main model's (the first generation records') exit shares, the mean over the eval sets
    shares = metrics.exit_shares(inputs.generations, "lite.dynamic-paper")
    main = shares[shares["model"] == "tiny8"].groupby("layer")["share_pct"].mean()
    expected = ", ".join(f"layer {layer} {value:.0f} %" for layer, value in main.items())
    assert frame.loc[shown.index("fig8"), "this run"].startswith(expected)


# ----------------------------------------------------------------------------- the report's pages

REPORT = ROOT / "workflow" / "report"
# a number in digits that is not part of a name (fig5, table1, LLaMA-2, 7B) or a file (*.config.json)
LITERAL_NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?(?![\w])")
JINJA = re.compile(r"{{.*?}}|{%.*?%}", re.S)


def test_report_prose_types_no_number():
    """The report's pages take their numbers from the run: through Jinja from the config, or from
    the caption and table files a job wrote; the text around them names none."""
    for path in REPORT.glob("*.rst"):
        prose = JINJA.sub("", path.read_text())
        assert not LITERAL_NUMBER.findall(prose), (path.name, LITERAL_NUMBER.findall(prose))
    # the captions' fixed part (what an artefact shows) has no measured number either
    for named in report.ARTEFACTS.values():
        for name, artefact in named.items():
            assert not re.search(r"\d\.\d|\d\s*%", artefact.caption), (name, artefact.caption)


def _render_report_page(template: Path, **context) -> str:
    """A report page as Snakemake renders it: Jinja2 with its settings, then docutils to HTML."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return publish_parts(env.from_string(template.read_text()).render(**context), writer="html")["body"]


def test_each_report_caption_is_the_one_its_job_wrote(record_files, tmp_path, monkeypatch):
    report.build("fig8", "figure", record_files["generations"], tmp_path / "results/figures/fig8.pdf")
    monkeypatch.chdir(tmp_path)  # Snakemake builds the report in the workflow's directory
    output = SimpleNamespace(caption="results/figures/fig8.caption.rst")
    page = _render_report_page(REPORT / "artefact.rst", snakemake=SimpleNamespace(output=output))
    written = (tmp_path / output.caption).read_text()
    assert "This run: tiny8: layer 2" in page and written.split("This run: ")[1][:40] in page


def test_landing_page_shows_the_headline_table_and_its_verdicts(record_files, tmp_path, monkeypatch):
    out = tmp_path / "results/tables/headline.csv"
    report.build("headline", "table", _inputs_for("headline", record_files), out)
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    files = [SimpleNamespace(target="headline.html", path=Path("results/tables/headline.html"))]
    page = _render_report_page(REPORT / "workflow.rst", snakemake=SimpleNamespace(config=config), files=files)
    assert '<table id="headline"' in page
    for verdict in pd.read_csv(out)["verdict"]:
        assert html.escape(verdict) in page
    assert "12 layers of width 64" in page  # the set-up, from the config
    # a report without the headline table (a config without IT) still has its first page
    page = _render_report_page(REPORT / "workflow.rst", snakemake=SimpleNamespace(config=config), files=[])
    assert "<table" not in page and "The set-up of this run" in page


def test_kvcache_finding_picks_the_option_that_saves_most_at_the_final_layers_quality(monkeypatch):
    # system -> ((its score, the final layer's), % KV-cache FLOPs saved)
    table = {
        "lite.dynamic-x4-probe-copy": ((7.00, 7.05), 27.0),  # 99.3 % of the final layer's score
        "lite.dynamic-x5-probe-copy": ((6.80, 7.05), 40.0),  # 96.5 %: too far below
        "lite.dynamic-x5": ((7.00, 7.05), 5.0),  # the paper's exact decoder
        "lite.random-k": ((7.05, 7.05), 50.0),  # a baseline never counts
    }
    monkeypatch.setattr(findings, "scores", lambda judgments, x, y, model: table[x][0])
    monkeypatch.setattr(
        findings, "savings", lambda generations, final, x, model: {"nocache": 60.0, "kvcache": table[x][1]}
    )
    found = findings.kvcache_finding([], [], "m", "lite.final", list(table))
    assert found.holds and "dynamic-x4-probe-copy saves 27.0 %" in found.this_run
    assert found.measures[findings.KV_SAVED_OPTION] == 27.0 and found.measures[findings.KV_SAVED_EXACT] == 5.0
    table["lite.dynamic-x4-probe-copy"] = ((7.00, 7.05), 20.0)  # under the bar of 25 %
    assert not findings.kvcache_finding([], [], "m", "lite.final", list(table)).holds
    table["lite.dynamic-x4-probe-copy"] = ((6.90, 7.05), 30.0)  # no option keeps 99 %
    found = findings.kvcache_finding([], [], "m", "lite.final", list(table))
    assert not found.holds and "no option keeps" in found.this_run
    assert (
        findings.kvcache_finding([], [], "m", "lite.final", ["lite.dynamic-x5"]) is None
    )  # no option judged
