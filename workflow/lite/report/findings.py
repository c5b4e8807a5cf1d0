"""The paper's findings and whether this run shows them: the verdicts of the headline table and
the "this run" sentences of the captions.

One averaging rule everywhere: a number is computed per eval set first, then averaged over the
eval sets, each set weighing the same (as the tables' ``mean`` rows do). A verdict says "holds"
or "does not hold here" by a stated test on those numbers; the tests' margins are below, each
with the reason for its size. The paper's own numbers live in ``PAPER`` and nowhere else.
``FINDINGS`` measures one artefact's finding from its inputs, ``headline_findings`` the headline's
(the report's first page, and `snakemake seeds` on every seed).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from lite.decoders.names import BASELINE_NAMES, decoder_name
from lite.report.inputs import (
    Inputs,
    alignment_table,
    calibration_layers,
    calibration_table,
    early_checkpoints,
    fixed_exits,
    judged_decoders,
)
from lite.report.metrics import compare_cost, exit_shares, pair_quality, system_summary
from lite.report.style import system_label, tuning_name

# Two judge scores (1-10) this close count as the same quality; a system further below another
# has lost quality. Below the smallest loss the paper reports for a baseline.
SAME_QUALITY_POINTS = 0.5
# The paper calls the aggressive thresholds' loss small: at most twice the same-quality margin.
SMALL_LOSS_POINTS = 2 * SAME_QUALITY_POINTS
# Less than a tenth of the FLOPs is not the "considerable" saving the paper claims.
MIN_SAVING_PCT = 10.0
# Alignments (% of positions) further apart than this differ ("far above"); closer ones are close.
ALIGNMENT_GAP_POINTS = 10.0
# Confidence predicts alignment at a layer when its confident tokens (at least HIGH_CONFIDENCE,
# where the paper's thresholds lie) agree with the final layer as often as the paper's threshold
# rule asks (alignment above 95 %).
HIGH_CONFIDENCE = 0.9
TRUSTED_ALIGNMENT_PCT = 95.0
# Exits are spread (fig8) when no layer takes more than MAX_ONE_LAYER_PCT of the tokens and at
# least MIN_EXIT_LAYERS layers (the final one included) each take MIN_EXIT_SHARE_PCT or more: the
# paper's exits spread over its checkpoints, not one layer doing nearly all the work.
MAX_ONE_LAYER_PCT = 70.0
MIN_EXIT_LAYERS = 3
MIN_EXIT_SHARE_PCT = 5.0
# Responses this close in mean length (% of the final layer's) are "about the same length".
SAME_LENGTH_PCT = 10.0


@dataclasses.dataclass(frozen=True)
class Claim:
    """What the paper found: in words, and its own numbers where it gives them."""

    words: str
    numbers: str = ""

    @property
    def text(self) -> str:
        return f"{self.words} ({self.numbers})" if self.numbers else self.words


PAPER = {
    "fig1": Claim(
        "dynamic early exit keeps the final layer's quality while saving FLOPs",
        "33-47 % of the FLOPs saved on 7B, 44-51 % on 13B, at the final layer's score",
    ),
    "fig3": Claim(
        "after standard instruction tuning the intermediate layers produce poor text, far below the "
        "final layer",
        "far below the final layer at every intermediate layer",
    ),
    "fig4": Claim("LITE does not hurt the final layer", "IT's and LITE's final layers score about the same"),
    "fig5": Claim(
        "LITE's intermediate layers agree with the final layer far more often than IT's",
        "LITE far above IT at every intermediate layer",
    ),
    "fig6": Claim(
        "after LITE, alignment rises with confidence: confidence is a usable exit signal",
        "thresholds set where alignment exceeds 95 %",
    ),
    "fig7": Claim(
        "dynamic exit gives responses of about the same length, so its savings are not from shorter answers"
    ),
    "fig8": Claim(
        "tokens exit at many layers, many early, a sizeable share only at the final layer",
        "spread over the checkpoints",
    ),
    "fig9": Claim("quality holds in every category; the savings differ between categories"),
    "fig11": Claim(
        "after standard tuning, confidence is a poor exit signal: confident intermediate predictions are "
        "often not the final layer's"
    ),
    "fig12": Claim(
        "lower thresholds save more at a small loss of quality", "about 50 % of the FLOPs saved on 7B"
    ),
    "fig13": Claim("weighted LITE aligns the intermediate layers much better than IT"),
    "fig14": Claim(
        "LITE and weighted LITE align about equally; weighted LITE, with more weight on deep layers, "
        "aligns the early ones a little less"
    ),
    "fig15": Claim("as with LITE, alignment rises with confidence: confidence is a usable exit signal"),
    "table6": Claim(
        "random and sequential exits lose quality that dynamic exit keeps",
        "0.8-1.9 points below dynamic exit on every eval set",
    ),
}
PAPER["fig10"] = PAPER["fig9"]
# Beyond the paper, which counts FLOPs without a KV cache: what the options of the KV-cached exit buy.
PAPER["frontier"] = Claim(
    "(beyond the paper, which counts FLOPs without a KV cache) an early exit saves compute with a KV "
    "cache at the final layer's quality"
)
# The KV-cache finding keeps decoders at this share of the final layer's score or more ...
KV_KEPT_SCORE_PCT = 99.0
# ... and asks an option among them to save at least this share of the KV-cache FLOPs.
KV_SAVING_PCT = 25.0
KV_SAVED_OPTION = "FLOPs saved with a KV cache by the best option (%)"
KV_SAVED_EXACT = "FLOPs saved with a KV cache by the best exact decoder (%)"
KV_KEPT_OPTION = "the best option's score, % of the final layer's"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One paper finding measured in this run."""

    claim: Claim
    shown_in: str  # the paper's figures and tables that show it
    this_run: str  # the same measure here, in words and numbers
    holds: bool | None  # None: the inputs cannot tell (e.g. no confident tokens at all)
    test: str  # the rule the verdict applies, with its margin
    # the numbers behind ``this_run``, by what they measure (`snakemake seeds` compares them across seeds)
    measures: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.holds is None:
            return f"not measured ({self.test})"
        return f"{'holds' if self.holds else 'does not hold here'} ({self.test})"

    def sentence(self) -> str:
        """The caption's sentences: the paper's finding, this run's numbers, the verdict."""
        return f"The paper: {self.claim.text}. This run: {self.this_run}; {self.verdict}."


# ----------------------------------------------------------------------------- averaging


def _of_model(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    return frame[frame["model"] == model]


def scores(judgments: Iterable[dict], x: str, y: str, model: str) -> tuple[float, float] | None:
    """Mean judge scores of ``x`` and ``y`` judged against each other, mean over the eval sets."""
    frame = _of_model(pair_quality(judgments, x, y), model)
    if frame.empty:
        return None
    return float(frame["score_x"].mean()), float(frame["score_y"].mean())


def savings(generations: Iterable[dict], final: str, other: str, model: str) -> dict[str, float] | None:
    """% FLOPs ``other`` saves over ``final`` per accounting, mean over the eval sets."""
    frame = _of_model(compare_cost(generations, final, other), model)
    if frame.empty:
        return None
    return {a: float(frame[f"saved_pct_{a}"].mean()) for a in ("nocache", "kvcache")}


def layer_alignment(alignment: pd.DataFrame, model: str, tuning: str) -> dict[int, float]:
    """Alignment with the final layer (%) per layer of one tuning, mean over the eval sets."""
    part = alignment[(alignment["model"] == model) & (alignment["tuning"] == tuning)]
    means = part.groupby("layer")["alignment_pct"].mean()
    return {int(layer): float(value) for layer, value in means.items()}


def confident_alignment(calibration: pd.DataFrame, model: str, tuning: str) -> dict[int, float]:
    """Per layer: the % of its tokens of confidence >= HIGH_CONFIDENCE that equal the final layer's,
    pooled over the confidence bins of one eval set, then the mean over the eval sets (NaN where no
    eval set has such tokens)."""
    part = calibration[
        (calibration["model"] == model)
        & (calibration["tuning"] == tuning)
        # a bin edge read back from a CSV may differ from the constant in its last digit
        & (calibration["bin_low"] >= HIGH_CONFIDENCE - 1e-9)
    ]
    per_set = part.groupby(["evalset", "layer"])[["aligned", "count"]].sum()
    pct = (100.0 * per_set["aligned"] / per_set["count"].replace(0, np.nan)).rename("pct").reset_index()
    means = pct.groupby("layer")["pct"].mean()
    layers = sorted(calibration.loc[calibration["tuning"] == tuning, "layer"].unique())
    return {int(layer): float(means.get(layer, np.nan)) for layer in layers}


def mean_exit_shares(generations: Iterable[dict], system: str, model: str) -> dict[int, float]:
    """% of generated tokens leaving at each exit layer under ``system``, mean over the eval sets."""
    frame = _of_model(exit_shares(generations, system), model)
    means = frame.groupby("layer")["share_pct"].mean()
    return {int(layer): float(value) for layer, value in means.items()}


def mean_lengths(generations: Iterable[dict], systems: Sequence[str], model: str) -> dict[str, float]:
    """Mean response length (tokens) of each system, mean over the eval sets."""
    frame = _of_model(system_summary(generations), model)
    frame = frame[frame["system"].isin(list(systems))]
    means = frame.groupby("system")["mean_length"].mean()
    return {str(system): float(value) for system, value in means.items()}


# ----------------------------------------------------------------------------- findings


def points(value: float) -> str:
    """A score difference in words: "1 point", "0.5 points"."""
    return f"{value:g} point" + ("" if value == 1 else "s")


def _decoder(system: str) -> str:
    return system.partition(".")[2]


def _at_layers(layers: Sequence[int]) -> str:
    return f"layer{'s' if len(layers) > 1 else ''} {_listed(layers, '{:d}')}"


def _listed(values: Iterable[float], fmt: str = "{:.1f}") -> str:
    return " / ".join("–" if np.isnan(v) else fmt.format(v) for v in values)


def alignment_finding(
    alignment: pd.DataFrame, model: str, reference: str, compared: str, layers: Sequence[int], figure: str
) -> Finding | None:
    """``compared`` far above ``reference`` at every layer (fig5, fig13) or, for fig14, close to it."""
    ref, cmp = layer_alignment(alignment, model, reference), layer_alignment(alignment, model, compared)
    layers = [k for k in layers if k in ref and k in cmp]
    if not layers:
        return None
    a, b = tuning_name(reference), tuning_name(compared)
    gaps = [cmp[k] - ref[k] for k in layers]
    if figure == "fig14":
        holds = all(abs(g) < ALIGNMENT_GAP_POINTS for g in gaps)
        test = f"within {points(ALIGNMENT_GAP_POINTS)} of each other at every layer shown"
    else:
        holds = all(g >= ALIGNMENT_GAP_POINTS for g in gaps)
        test = f"{b} at least {points(ALIGNMENT_GAP_POINTS)} above {a} at every layer shown"
    this_run = (
        f"at {_at_layers(layers)}, {b} {_listed(cmp[k] for k in layers)} %, "
        f"{a} {_listed(ref[k] for k in layers)} % of the tokens equal the final layer's"
    )
    measures = {f"{b} - {a} alignment at layer {k} (points)": g for k, g in zip(layers, gaps, strict=True)}
    return Finding(PAPER[figure], figure, this_run, holds, test, measures)


def final_quality_finding(judgments: Iterable[dict], model: str, a: str, b: str) -> Finding | None:
    """The final layers of two tunings score about the same (fig4)."""
    pair = scores(judgments, a, b, model)
    if pair is None:
        return None
    this_run = f"{system_label(a)} scores {pair[0]:.2f}, {system_label(b)} {pair[1]:.2f}"
    holds = abs(pair[0] - pair[1]) <= SAME_QUALITY_POINTS
    measures = {
        f"{system_label(a)} score": pair[0],
        f"{system_label(b)} score": pair[1],
        f"{system_label(b)} score, % of {system_label(a)}'s": 100.0 * pair[1] / pair[0],
    }
    return Finding(PAPER["fig4"], "fig4", this_run, holds, f"within {points(SAME_QUALITY_POINTS)}", measures)


def fixed_exit_finding(
    judgments: Iterable[dict], model: str, tuning: str, final: str, layers: Sequence[int]
) -> Finding | None:
    """Every fixed intermediate exit of ``tuning`` scores far below its final layer (fig3)."""
    reference = f"{tuning}.{final}"
    pairs = {k: scores(judgments, f"{tuning}.fixed-L{k}", reference, model) for k in layers}
    pairs = {k: p for k, p in pairs.items() if p is not None}
    if not pairs:
        return None
    this_run = "; ".join(
        f"layer {k} scores {x:.2f} against the final layer's {y:.2f}" for k, (x, y) in pairs.items()
    )
    holds = all(y - x > SAME_QUALITY_POINTS for x, y in pairs.values())
    test = f"every fixed exit more than {points(SAME_QUALITY_POINTS)} below the final layer"
    measures = {f"final layer - layer {k} score (points)": y - x for k, (x, y) in pairs.items()}
    return Finding(PAPER["fig3"], "fig3", this_run, holds, test, measures)


def confidence_finding(
    calibration: pd.DataFrame, model: str, tuning: str, layers: Sequence[int], figure: str
) -> Finding | None:
    """Confidence predicts alignment at every layer (fig6, fig15: the paper's finding) or fails to at
    some layer (fig11: the paper's finding for IT)."""
    confident = confident_alignment(calibration, model, tuning)
    layers = [k for k in layers if k in confident]
    if not layers:
        return None
    values = [confident[k] for k in layers]
    # a layer with no confident tokens never exits: its confidence does not serve as a signal
    trusted = [not np.isnan(v) and v >= TRUSTED_ALIGNMENT_PCT for v in values]
    this_run = (
        f"of {tuning_name(tuning)}'s tokens of confidence at least {HIGH_CONFIDENCE:g}, "
        f"{_listed(values)} % equal the final layer's at {_at_layers(layers)}"
    )
    if any(np.isnan(v) for v in values):
        this_run += " (–: no token that confident)"
    if figure == "fig11":
        holds = not all(trusted)
        if all(trusted):
            this_run += f": here {tuning_name(tuning)}'s confidence predicts alignment too"
        test = f"below {TRUSTED_ALIGNMENT_PCT:g} % at some layer"
    else:
        holds = all(trusted)
        test = f"at least {TRUSTED_ALIGNMENT_PCT:g} % at every layer"
    measures = {
        f"alignment of confident tokens at layer {k} (%)": v for k, v in zip(layers, values, strict=True)
    }
    return Finding(PAPER[figure], figure, this_run, holds, test, measures)


def exit_finding(generations: Iterable[dict], model: str, system: str) -> Finding | None:
    """Exits spread over the layers, none taking nearly all of them (fig8)."""
    shares = mean_exit_shares(generations, system, model)
    if not shares:
        return None
    this_run = ", ".join(f"layer {k} {v:.0f} %" for k, v in shares.items())
    taking = [k for k, v in shares.items() if v >= MIN_EXIT_SHARE_PCT]
    holds = max(shares.values()) <= MAX_ONE_LAYER_PCT and len(taking) >= MIN_EXIT_LAYERS
    rare = [k for k, v in shares.items() if v < MIN_EXIT_SHARE_PCT]
    if rare:
        this_run += f" ({_at_layers(rare)} below {MIN_EXIT_SHARE_PCT:g} %)"
    measures = {f"tokens exiting at layer {k} (%)": v for k, v in shares.items()}
    test = (
        f"no layer above {MAX_ONE_LAYER_PCT:g} %, at least {MIN_EXIT_LAYERS} layers at "
        f"{MIN_EXIT_SHARE_PCT:g} % or more"
    )
    return Finding(PAPER["fig8"], "fig8", this_run, holds, test, measures)


def final_minus(pair: tuple[float, float]) -> float:
    """How far a system's score (first) is below the final layer's (second)."""
    return pair[1] - pair[0]


# the measures of a saving finding (fig1, fig12)
SAVED, SAVED_KVCACHE = "FLOPs saved (%)", "FLOPs saved with a KV cache (%)"
SCORE, KEPT_SCORE = "score", "score, % of the final layer's"


def _saving_text(pair: tuple[float, float], saved: dict[str, float]) -> str:
    return (
        f"{saved['nocache']:.1f} % of the FLOPs saved ({saved['kvcache']:.1f} % with a KV cache) at a "
        f"score of {pair[0]:.2f} against the final layer's {pair[1]:.2f}"
    )


def saving_finding(
    judgments: Iterable[dict], generations: Iterable[dict], model: str, final: str, dynamic: str
) -> Finding | None:
    """Dynamic exit saves FLOPs at the final layer's quality (fig1, table1)."""
    return _saving_at_most(
        judgments, generations, model, final, dynamic, SAME_QUALITY_POINTS, "fig1", "fig1, table1"
    )


def aggressive_finding(
    judgments: Iterable[dict], generations: Iterable[dict], model: str, final: str, aggressive: str
) -> Finding | None:
    """Lower thresholds save FLOPs at a small loss (fig12)."""
    return _saving_at_most(
        judgments, generations, model, final, aggressive, SMALL_LOSS_POINTS, "fig12", "fig12"
    )


def _saving_at_most(
    judgments, generations, model, final, decoder, loss_points, paper_key, where
) -> Finding | None:
    """``decoder`` saves at least MIN_SAVING_PCT of the FLOPs, at most ``loss_points`` below final."""
    pair, saved = scores(judgments, decoder, final, model), savings(generations, final, decoder, model)
    if pair is None or saved is None:
        return None
    holds = final_minus(pair) <= loss_points and saved["nocache"] >= MIN_SAVING_PCT
    test = f"at least {MIN_SAVING_PCT:g} % saved, at most {points(loss_points)} below the final layer"
    measures = {
        SAVED: saved["nocache"],
        SAVED_KVCACHE: saved["kvcache"],
        SCORE: pair[0],
        KEPT_SCORE: 100.0 * pair[0] / pair[1],
    }
    return Finding(PAPER[paper_key], where, _saving_text(pair, saved), holds, test, measures)


def baseline_finding(
    judgments: Iterable[dict],
    generations: Iterable[dict],
    model: str,
    final: str,
    dynamic: str,
    baselines: Sequence[str],
) -> Finding | None:
    """Every random or sequential baseline scores below dynamic exit (table6)."""
    dyn = scores(judgments, dynamic, final, model)
    rows = {}
    for baseline in baselines:
        pair = scores(judgments, baseline, final, model)
        saved = savings(generations, final, baseline, model)
        if pair is not None:
            rows[baseline] = (pair[0], saved["nocache"] if saved else np.nan)
    if dyn is None or not rows:
        return None
    parts = [
        f"{_decoder(b)} {score:.2f} ({dyn[0] - score:.2f} below, {saved:.1f} % saved)"
        for b, (score, saved) in rows.items()
    ]
    this_run = f"{', '.join(parts)} against {_decoder(dynamic)}'s {dyn[0]:.2f}"
    # a dynamic decoder that lets no token out early keeps the final layer's quality trivially
    shares = mean_exit_shares(generations, dynamic, model)
    never_exits = bool(shares) and not any(v > 0 for k, v in shares.items() if k != max(shares))
    if never_exits:
        this_run += f"; {_decoder(dynamic)} lets no token exit before the final layer"
    holds = not never_exits and all(dyn[0] - score > SAME_QUALITY_POINTS for score, _ in rows.values())
    test = (
        f"every baseline more than {points(SAME_QUALITY_POINTS)} below dynamic exit, which lets some "
        "tokens exit early"
    )
    measures = {
        f"{_decoder(dynamic)} - {_decoder(b)} score (points)": dyn[0] - s for b, (s, _) in rows.items()
    }
    return Finding(PAPER["table6"], "table6", this_run, holds, test, measures)


def length_finding(generations: Iterable[dict], model: str, final: str, dynamic: str) -> Finding | None:
    """Dynamic exit's responses are about as long as the final layer's (fig7)."""
    lengths = mean_lengths(generations, [final, dynamic], model)
    if final not in lengths or dynamic not in lengths:
        return None
    change = 100.0 * (lengths[dynamic] / lengths[final] - 1.0)
    this_run = (
        f"{lengths[dynamic]:.1f} tokens with dynamic exit, {lengths[final]:.1f} with the final layer "
        f"({change:+.0f} %)"
    )
    holds = abs(change) <= SAME_LENGTH_PCT
    return Finding(PAPER["fig7"], "fig7", this_run, holds, f"within {SAME_LENGTH_PCT:g} %")


def category_finding(quality: pd.DataFrame, cost: pd.DataFrame, figure: str) -> Finding | None:
    """Quality holds in every category (fig9, fig10): per category of one eval set, the dynamic
    decoder's score (``score_y``) against the final layer's (``score_x``) and its % FLOPs saved."""
    if quality.empty:
        return None
    drops = (quality["score_x"] - quality["score_y"]).set_axis(quality["category"])
    worst = drops.idxmax()
    if drops[worst] > 0:
        this_run = f"the largest drop below the final layer's score is {drops[worst]:.2f} points, in {worst}"
    else:
        this_run = "dynamic exit scores at least the final layer's in every category"
    if not cost.empty:
        this_run += (
            f", {cost['saved_pct_nocache'].min():.0f}-{cost['saved_pct_nocache'].max():.0f} % of the "
            "FLOPs saved across categories"
        )
    holds = bool((drops <= SAME_QUALITY_POINTS).all())
    test = f"at most {points(SAME_QUALITY_POINTS)} below the final layer in every category"
    return Finding(PAPER[figure], figure, this_run, holds, test)


# ----------------------------------------------------------------------------- from an artefact's inputs


def _fig1(inputs: Inputs, model: str, *, tuning: str, final: str, dynamic: str) -> Finding | None:
    return saving_finding(
        inputs.judgments, inputs.generations, model, f"{tuning}.{final}", f"{tuning}.{dynamic}"
    )


def _fig12(inputs: Inputs, model: str, *, tuning: str, final: str, dynamic: str) -> Finding | None:
    return aggressive_finding(
        inputs.judgments, inputs.generations, model, f"{tuning}.{final}", f"{tuning}.{dynamic}"
    )


def _fig3(inputs: Inputs, model: str, *, tuning: str, final: str) -> Finding | None:
    layers = [layer for layer, _ in fixed_exits(inputs, tuning)]
    return fixed_exit_finding(inputs.judgments, model, tuning, final, layers)


def _fig4(inputs: Inputs, model: str, *, a: str, b: str) -> Finding | None:
    return final_quality_finding(inputs.judgments, model, a, b)


def _alignment(figure: str):
    def finding(inputs: Inputs, model: str, *, tunings: Sequence[str], layers: Sequence[int] | None):
        frame = alignment_table(inputs)
        if frame.empty:
            return None
        shown = list(layers) if layers else sorted(frame["layer"].unique())[:-1]
        return alignment_finding(frame, model, tunings[0], tunings[1], shown, figure)

    return finding


def _confidence(figure: str):
    def finding(inputs: Inputs, model: str, *, tuning: str, layers: Sequence[int] | None):
        frame = calibration_table(inputs)
        frame = frame[frame["tuning"] == tuning]
        if frame.empty:
            return None
        shown = calibration_layers(inputs, frame, tuning, layers)
        return confidence_finding(frame, model, tuning, shown, figure)

    return finding


def _fig7(inputs: Inputs, model: str, *, tuning: str, final: str, dynamic: str) -> Finding | None:
    return length_finding(inputs.generations, model, f"{tuning}.{final}", f"{tuning}.{dynamic}")


def _fig8(inputs: Inputs, model: str, *, tuning: str, dynamic: str) -> Finding | None:
    return exit_finding(inputs.generations, model, f"{tuning}.{dynamic}")


def _category(figure: str):
    def finding(inputs: Inputs, model: str, *, evalset: str, tuning: str, final: str, dynamic: str):
        x, y = f"{tuning}.{final}", f"{tuning}.{dynamic}"
        judgments = [j for j in inputs.judgments if j.get("evalset") == evalset and j.get("model") == model]
        generations = [
            g for g in inputs.generations if g.get("evalset") == evalset and g.get("model") == model
        ]
        by = ("model", "evalset", "category")
        return category_finding(
            pair_quality(judgments, x, y, by=by), compare_cost(generations, x, y, by=by), figure
        )

    return finding


def _table6(inputs: Inputs, model: str, *, tuning: str, final: str, decoders: Sequence[str] | None):
    decoders = list(decoders) if decoders is not None else judged_decoders(inputs, tuning, final)
    # the dynamic decoder the baselines are measured against: the first of the judged ones
    named = [decoder_name(d) for d in decoders]
    dynamic = [d.name for d in named if d.family == "dynamic" and d.option is None]
    baselines = [f"{tuning}.{d.name}" for d in named if d.family == "baseline"]
    if not dynamic:
        return None
    return baseline_finding(
        inputs.judgments, inputs.generations, model, f"{tuning}.{final}", f"{tuning}.{dynamic[0]}", baselines
    )


# artefact -> its finding for one base model, from the inputs and the artefact's options
def kvcache_finding(
    judgments: Iterable[dict], generations: Iterable[dict], model: str, final: str, decoders: Sequence[str]
) -> Finding | None:
    """Among ``decoders`` (systems judged against ``final``, baselines excluded), the most KV-cache
    FLOPs saved at KV_KEPT_SCORE_PCT of the final layer's score or more: by an option of the
    KV-cached exit (``-copy``, ``-probe``, ...) and by the paper's exact decoders. Holds where an
    option saves KV_SAVING_PCT or more. None without a judged option."""
    best: dict[bool, tuple[float, float, str]] = {}  # option? -> (KV-cache saving, kept %, system)
    for system in decoders:
        named = decoder_name(system.partition(".")[2])
        pair, saved = scores(judgments, system, final, model), savings(generations, final, system, model)
        if named.family == "baseline" or pair is None or saved is None:
            continue
        kept = 100.0 * pair[0] / pair[1]
        option = named.option is not None
        if kept >= KV_KEPT_SCORE_PCT and saved["kvcache"] > best.get(option, (-math.inf,))[0]:
            best[option] = (saved["kvcache"], kept, system)
    if not any(decoder_name(d.partition(".")[2]).option for d in decoders):
        return None
    option, exact = best.get(True), best.get(False)
    words = [
        "no option keeps " + f"{KV_KEPT_SCORE_PCT:g} % of the final layer's score"
        if option is None
        else f"{option[2].partition('.')[2]} saves {option[0]:.1f} % with a KV cache at {option[1]:.1f} % "
        "of the final layer's score"
    ]
    if exact is not None:
        words.append(f"the paper's exact decoders at most {exact[0]:.1f} % ({exact[2].partition('.')[2]})")
    measures = {KV_SAVED_OPTION: math.nan if option is None else option[0]}
    measures[KV_KEPT_OPTION] = math.nan if option is None else option[1]
    measures[KV_SAVED_EXACT] = math.nan if exact is None else exact[0]
    return Finding(
        PAPER["frontier"],
        "frontier, table6",
        "; ".join(words),
        option is not None and option[0] >= KV_SAVING_PCT,
        f"an option saves at least {KV_SAVING_PCT:g} % with a KV cache at {KV_KEPT_SCORE_PCT:g} % of the "
        "final layer's score or more",
        measures,
    )


def frontier_finding(inputs: Inputs, model: str, *, tuning: str, final: str) -> Finding | None:
    """``kvcache_finding`` over every decoder of ``tuning`` judged against its final layer."""
    systems = [f"{tuning}.{d}" for d in judged_decoders(inputs, tuning, final)]
    return kvcache_finding(inputs.judgments, inputs.generations, model, f"{tuning}.{final}", systems)


FINDINGS: dict[str, Callable[..., Finding | None]] = {
    "fig1": _fig1,
    "fig3": _fig3,
    "fig4": _fig4,
    "fig5": _alignment("fig5"),
    "fig6": _confidence("fig6"),
    "fig7": _fig7,
    "fig8": _fig8,
    "fig9": _category("fig9"),
    "fig10": _category("fig10"),
    "fig11": _confidence("fig11"),
    "fig12": _fig12,
    "fig13": _alignment("fig13"),
    "fig14": _alignment("fig14"),
    "fig15": _confidence("fig15"),
    "table6": _table6,
}


def headline_findings(
    inputs: Inputs, model: str, *, tuning: str, final: str, dynamic: str, aggressive: str, baseline: str
) -> list[Finding]:
    """The paper's main findings measured on one base model, in the paper's order; the layers read
    are the checkpoints of ``tuning`` (the same model's, so IT's too)."""
    layers = early_checkpoints(inputs, tuning) or None
    found = [
        FINDINGS["fig5"](inputs, model, tunings=(baseline, tuning), layers=layers),
        FINDINGS["fig4"](inputs, model, a=f"{baseline}.{final}", b=f"{tuning}.{final}"),
        FINDINGS["fig3"](inputs, model, tuning=baseline, final=final),
        FINDINGS["fig6"](inputs, model, tuning=tuning, layers=layers),
        FINDINGS["fig11"](inputs, model, tuning=baseline, layers=layers),
        FINDINGS["fig8"](inputs, model, tuning=tuning, dynamic=dynamic),
        FINDINGS["fig1"](inputs, model, tuning=tuning, final=final, dynamic=dynamic),
        FINDINGS["fig12"](inputs, model, tuning=tuning, final=final, dynamic=aggressive),
        FINDINGS["table6"](inputs, model, tuning=tuning, final=final, decoders=[dynamic, *BASELINE_NAMES]),
        frontier_finding(inputs, model, tuning=tuning, final=final),
    ]
    return [f for f in found if f is not None]
