"""The paper's figures, laid out like the paper: a row per base model (the main model first), a
panel per eval set, in the paper's colours (``lite.report.style``).

Each function takes the loaded ``Inputs`` and keyword options and returns a matplotlib figure;
``lite.report.build`` saves it as PDF + PNG. A function's docstring starts with what the figure
shows (``lite.report.captions`` adds what the paper found and what this run shows) and has an
``Inputs:`` line naming the files it needs (``lite figure --help`` lists them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from lite.decoders.names import decoder_name
from lite.io import InputError
from lite.report import style
from lite.report.inputs import (
    Inputs,
    alignment_table,
    calibration_layers,
    calibration_table,
    evalset_order,
    fixed_exits,
    model_order,
    sorted_like,
)
from lite.report.metrics import compare_cost, exit_shares, pair_quality, system_summary

SCORE_LABEL = "judge score (1-10)"
# Calibration bins with fewer tokens than this are drawn hollow and left off the curve: one or two
# tokens give an alignment of 0 or 100 % that says nothing.
MIN_BIN_TOKENS = 20
COST_LABEL = "FLOPs (% of final layer)"


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _require(frame: pd.DataFrame, what: str) -> None:
    if frame.empty:
        raise InputError(f"no {what} among the inputs")


def _legend(fig, axes) -> None:
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if not handles:
        return
    # as many columns as fit the figure's width (at most 4): a one-panel figure's legend in one
    # row would be cut off at both edges
    renderer = fig.canvas.get_renderer()
    for ncols in range(min(len(labels), 4), 0, -1):
        legend = fig.legend([handles[k] for k in labels], labels, loc="outside lower center", ncols=ncols)
        if ncols == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            return
        legend.remove()


def _quality_cost_row(
    ax_q, ax_c, quality: pd.DataFrame, cost: pd.DataFrame, x: str, y: str, arrange, label_cost: bool
):
    """One base model's row: the judge scores of ``x`` and ``y`` (``ax_q``) and ``y``'s FLOPs as %
    of ``x``'s (``ax_c``), a bar group per index value of ``quality`` / ``cost`` in ``arrange``'s
    order; ``label_cost`` writes each % above its bar."""
    styles = style.pair_styles(x, y)
    if quality.empty:
        _empty(ax_q, "no judgments")
    else:
        groups = arrange(quality.index)
        scores = {x: quality.loc[groups, "score_x"].tolist(), y: quality.loc[groups, "score_y"].tolist()}
        style.grouped_bars(ax_q, groups, scores, styles)
        ax_q.set_ylim(0, 10)
        ax_q.set_ylabel(SCORE_LABEL)
    if cost.empty:
        _empty(ax_c, "no generations")
    else:
        groups = arrange(cost.index)
        pct = cost.loc[groups, "pct_of_final_nocache"].tolist()
        style.grouped_bars(ax_c, groups, {x: [100.0] * len(groups), y: pct}, styles)
        if label_cost:
            width = 0.4  # grouped_bars' bar width for two series: i + width / 2 is the second bar
            for i, value in enumerate(pct):
                ax_c.text(i + width / 2, value + 2, f"{value:.0f}%", ha="center", va="bottom",
                          fontsize=style.MIN_FONT_SIZE)  # fmt: skip
        ax_c.set_ylim(0, 115)
        ax_c.set_ylabel(COST_LABEL)


def _quality_cost(inputs: Inputs, tuning: str, final: str, dynamic: str, title: str):
    x, y = f"{tuning}.{final}", f"{tuning}.{dynamic}"
    quality = pair_quality(inputs.judgments, x, y)
    cost = compare_cost(inputs.generations, x, y)
    if quality.empty and cost.empty:
        raise InputError(f"no judgments of {x} vs {y} and no generations of both among the inputs")
    order = evalset_order(inputs)
    models = sorted_like([*quality["model"], *cost["model"]], model_order(inputs))
    fig, axes = style.grid(len(models), 2, width=4.4)
    for r, model in enumerate(models):
        ax_q, ax_c = axes[r]
        q = quality[quality["model"] == model].set_index("evalset")
        c = cost[cost["model"] == model].set_index("evalset")
        _quality_cost_row(ax_q, ax_c, q, c, x, y, lambda sets: sorted_like(sets, order), label_cost=True)
        ax_q.set_title(f"{model}: quality ({title})")
        ax_c.set_title(f"{model}: cost (no KV cache)")
    _legend(fig, axes)
    return fig


def fig1(inputs: Inputs, *, tuning: str = "lite", final: str = "final", dynamic: str = "dynamic-paper"):
    """Quality (judge score) and cost (FLOPs, % of final-layer generation) of final-layer
    generation (orange) vs dynamic early exit (blue) per eval set; one row per base model, the
    main model first.

    Inputs: judgments of {tuning}.{final} vs {tuning}.{dynamic}; generation records of both systems.
    """
    return _quality_cost(inputs, tuning, final, dynamic, "dynamic exit")


def fig12(inputs: Inputs, *, tuning: str = "lite", final: str = "final", dynamic: str = "dynamic-aggressive"):
    """Quality and cost of final-layer generation (orange) vs dynamic early exit with the
    aggressive thresholds (blue), per eval set; one row per base model.

    Inputs: judgments of {tuning}.{final} vs {tuning}.{dynamic}; generation records of both systems.
    """
    return _quality_cost(inputs, tuning, final, dynamic, "aggressive thresholds")


def fig3(inputs: Inputs, *, tuning: str = "it", final: str = "final"):
    """Quality of responses generated from fixed intermediate layers of the instruction-tuned model
    (dotted), each judged against the same model's final layer (solid); a panel per eval set.

    Inputs: judgments of {tuning}.fixed-L{k} vs {tuning}.{final} for each exit layer k.
    """
    reference = f"{tuning}.{final}"
    parts, exits = [], fixed_exits(inputs, tuning)
    for layer, system in exits:
        part = pair_quality(inputs.judgments, system, reference)
        parts.append(part.assign(layer=layer))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    _require(frame, f"judgments of {tuning}.fixed-L<k> vs {reference}")
    order, models = evalset_order(inputs), sorted_like(frame["model"], model_order(inputs))
    sets = sorted_like(frame["evalset"], order)
    fig, axes = style.grid(len(models), len(sets))
    fixed_style = {
        **style.system_style(exits[0][1]),  # every fixed exit looks alike
        "label": f"{style.tuning_name(tuning)} fixed exit",
    }
    styles = {"fixed": fixed_style, "final": style.system_style(reference)}
    for r, model in enumerate(models):
        for c, evalset in enumerate(sets):
            ax = axes[r, c]
            part = frame[(frame["model"] == model) & (frame["evalset"] == evalset)].sort_values("layer")
            if part.empty:
                _empty(ax, "no judgments")
            else:
                labels = [f"L{k}" for k in part["layer"]]
                style.grouped_bars(
                    ax, labels, {"fixed": part["score_x"].tolist(), "final": part["score_y"].tolist()}, styles
                )
                ax.set_ylim(0, 10)
                ax.set_xlabel("exit layer")
                ax.set_ylabel(SCORE_LABEL)
            ax.set_title(f"{model} / {evalset}")
    _legend(fig, axes)
    return fig


def fig4(inputs: Inputs, *, a: str = "it.final", b: str = "lite.final"):
    """Quality of the instruction-tuned model's final layer (orange) vs the LITE model's final layer
    (blue): mean judge score per eval set (left) and the outcome split (right).

    Inputs: judgments of {a} vs {b}.
    """
    frame = pair_quality(inputs.judgments, a, b)
    _require(frame, f"judgments of {a} vs {b}")
    order, models = evalset_order(inputs), sorted_like(frame["model"], model_order(inputs))
    fig, axes = style.grid(len(models), 2, width=4.4)
    styles = style.pair_styles(a, b)
    for r, model in enumerate(models):
        part = frame[frame["model"] == model].set_index("evalset")
        sets = sorted_like(part.index, order)
        ax_s, ax_o = axes[r]
        style.grouped_bars(
            ax_s, sets, {a: part.loc[sets, "score_x"].tolist(), b: part.loc[sets, "score_y"].tolist()}, styles
        )
        ax_s.set_ylim(0, 10)
        ax_s.set_ylabel(SCORE_LABEL)
        ax_s.set_title(f"{model}: mean score")
        total = part.loc[sets, ["wins", "ties", "losses"]].sum(axis=1).replace(0, np.nan)
        left = np.zeros(len(sets))
        colours = {"wins": style.REFERENCE_COLOR, "ties": "#BBBBBB", "losses": style.COMPARED_COLOR}
        names = {
            "wins": f"{style.system_label(a)} better",
            "ties": "tie",
            "losses": f"{style.system_label(b)} better",
        }
        for outcome in ("wins", "ties", "losses"):
            share = (100.0 * part.loc[sets, outcome] / total).fillna(0).to_numpy()
            ax_o.barh(sets, share, left=left, color=colours[outcome], alpha=0.7, label=names[outcome])
            left += share
        ax_o.set_xlim(0, 100)
        ax_o.set_xlabel("share of instances (%)")
        ax_o.invert_yaxis()
        ax_o.set_title(f"{model}: outcomes")
    _legend(fig, axes)
    return fig


def _alignment_figure(inputs: Inputs, tunings: Sequence[str], layers: Sequence[int] | None):
    frame = alignment_table(inputs)
    frame = frame[frame["tuning"].isin(list(tunings))]
    _require(frame, f"alignment tables or traces of tunings {list(tunings)}")
    order, models = evalset_order(inputs), sorted_like(frame["model"], model_order(inputs))
    sets = sorted_like(frame["evalset"], order)
    # the paper's: the first tuning (the reference) orange, the second blue
    colors = dict(zip(tunings, (style.REFERENCE_COLOR, style.COMPARED_COLOR), strict=False))
    fig, axes = style.grid(len(models), len(sets))
    for r, model in enumerate(models):
        for c, evalset in enumerate(sets):
            ax = axes[r, c]
            part = frame[(frame["model"] == model) & (frame["evalset"] == evalset)]
            for layer in layers or []:
                ax.axvline(layer, color="grey", linewidth=0.6, linestyle=":")
            for tuning in tunings:
                line = part[part["tuning"] == tuning].sort_values("layer")
                if not line.empty:
                    ax.plot(line["layer"], line["alignment_pct"], marker="o", markersize=3,
                            color=colors.get(tuning, style.OTHER_COLOR),
                            label=style.tuning_name(tuning))  # fmt: skip
            ax.set_ylim(0, 105)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("layer (dotted: checkpoints)" if layers else "layer")
            ax.set_ylabel("alignment with final layer (%)")
            ax.set_title(f"{model} / {evalset}")
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    return fig


def fig5(inputs: Inputs, *, tunings: Sequence[str] = ("it", "lite"), layers: Sequence[int] | None = None):
    """Alignment of every layer's argmax token with the final layer's during final-layer greedy
    generation (% of generated positions), instruction tuning (orange) vs LITE (blue); a panel per
    eval set, the checkpoint layers (--layers) dotted.

    Inputs: alignment CSVs (lite align) or trace records of the tunings compared.
    """
    return _alignment_figure(inputs, tunings, layers)


def fig13(
    inputs: Inputs, *, tunings: Sequence[str] = ("it", "lite_weighted"), layers: Sequence[int] | None = None
):
    """Alignment of every layer with the final layer (%), instruction tuning (orange) vs weighted
    LITE (blue); the checkpoint layers dotted.

    Inputs: alignment CSVs (lite align) or trace records of the tunings compared.
    """
    return _alignment_figure(inputs, tunings, layers)


def fig14(
    inputs: Inputs, *, tunings: Sequence[str] = ("lite", "lite_weighted"), layers: Sequence[int] | None = None
):
    """Alignment of every layer with the final layer (%), LITE (orange) vs weighted LITE (blue); the
    checkpoint layers dotted.

    Inputs: alignment CSVs (lite align) or trace records of the tunings compared.
    """
    return _alignment_figure(inputs, tunings, layers)


def _counts_table(ax, counts: dict[int, np.ndarray], bins: list[float], colors: dict) -> None:
    """The tokens behind each point, as a table under the panel: a column per confidence bin
    (headed by its lower edge), a row per layer in its colour. In the panel itself the counts of
    layers near 100 % would print over each other."""
    rows = [[f"{low:g}" for low in bins]] + [[str(int(n)) for n in values] for values in counts.values()]
    labels = ["confidence ≥", *(f"layer {layer} tokens" for layer in counts)]
    table = ax.table(cellText=rows, rowLabels=labels, cellLoc="center", loc="bottom")
    table.auto_set_font_size(False)
    table.set_fontsize(style.MIN_FONT_SIZE)
    for (row, _), cell in table.get_celld().items():
        cell.set_linewidth(0.3)
        if row > 0:
            cell.get_text().set_color(colors[list(counts)[row - 1]])


def _calibration_figure(inputs: Inputs, tuning: str, layers: Sequence[int] | None):
    frame = calibration_table(inputs)
    frame = frame[frame["tuning"] == tuning]
    _require(frame, f"calibration tables or traces of tuning {tuning!r}")
    layers = calibration_layers(inputs, frame, tuning, layers)
    missing = set(layers) - set(frame["layer"])
    if missing:
        raise InputError(f"calibration of {tuning!r} has no layers {sorted(missing)}")
    colors = style.layer_colors(layers)
    order, models = evalset_order(inputs), sorted_like(frame["model"], model_order(inputs))
    sets = sorted_like(frame["evalset"], order)
    edges = frame[["bin", "bin_low"]].drop_duplicates().sort_values("bin_low")
    bins, lows = edges["bin"].tolist(), edges["bin_low"].tolist()
    x = np.arange(len(bins))
    fig, axes = style.grid(len(models), len(sets), width=4.6, height=3.6)
    for r, model in enumerate(models):
        for c, evalset in enumerate(sets):
            ax = axes[r, c]
            part = frame[(frame["model"] == model) & (frame["evalset"] == evalset)]
            counts = {}
            for layer in layers:
                line = part[part["layer"] == layer].set_index("bin").reindex(bins)
                counts[layer] = line["count"].fillna(0).to_numpy()
                solid = counts[layer] >= MIN_BIN_TOKENS
                alignment = line["alignment_pct"].to_numpy()
                # the curve joins the bins with evidence; thin bins are hollow, off the line
                ax.plot(x[solid], alignment[solid], marker="o", markersize=4, color=colors[layer],
                        label=f"layer {layer}")  # fmt: skip
                ax.plot(x[~solid], alignment[~solid], linestyle="none", marker="o", markersize=4,
                        markerfacecolor="none", color=colors[layer])  # fmt: skip
            _counts_table(ax, counts, lows, colors)
            ax.set_xlim(-0.5, len(bins) - 0.5)
            ax.set_xticks(x, [])  # the table's first row names the bins
            ax.tick_params(axis="x", length=0)
            ax.set_ylim(-5, 105)  # a point at 0 % stays clear of the table
            # short: the table's row labels reach out under the end of a long one
            ax.set_ylabel("alignment (%)")
            ax.set_title(f"{model} / {evalset}: {style.tuning_name(tuning)}")
            ax.grid(alpha=0.3)
    # the legend's key to the hollow markers (an empty line: it draws nothing in the panel)
    axes[0, 0].plot([], [], linestyle="none", marker="o", markersize=4, markerfacecolor="none", color="grey",
                    label=f"hollow: fewer than {MIN_BIN_TOKENS} tokens, off the curve")  # fmt: skip
    _legend(fig, axes)
    return fig


def fig6(inputs: Inputs, *, tuning: str = "lite", layers: Sequence[int] | None = None):
    """Confidence vs alignment of the checkpoint layers of the LITE model: per confidence bin
    (max softmax probability), the % of positions where the layer's token equals the final
    layer's; a panel per eval set, the tokens per bin in the table under it, bins with too few
    tokens hollow.

    Inputs: calibration CSVs (lite align) or trace records of {tuning}.
    """
    return _calibration_figure(inputs, tuning, layers)


def fig11(inputs: Inputs, *, tuning: str = "it", layers: Sequence[int] | None = None):
    """Confidence vs alignment of the checkpoint layers of the instruction-tuned (IT) model, as in
    fig6.

    Inputs: calibration CSVs (lite align) or trace records of {tuning}.
    """
    return _calibration_figure(inputs, tuning, layers)


def fig15(inputs: Inputs, *, tuning: str = "lite_weighted", layers: Sequence[int] | None = None):
    """Confidence vs alignment of the checkpoint layers of the weighted-LITE model, as in fig6.

    Inputs: calibration CSVs (lite align) or trace records of {tuning}.
    """
    return _calibration_figure(inputs, tuning, layers)


def fig7(inputs: Inputs, *, tuning: str = "lite", final: str = "final", dynamic: str = "dynamic-paper"):
    """Mean response length (generated tokens, EOS included) of final-layer generation (orange) vs
    dynamic early exit (blue), per eval set; a panel per base model.

    Inputs: generation records of {tuning}.{final} and {tuning}.{dynamic}.
    """
    x, y = f"{tuning}.{final}", f"{tuning}.{dynamic}"
    frame = system_summary(inputs.generations)
    frame = frame[frame["system"].isin([x, y])]
    _require(frame, f"generation records of {x} or {y}")
    order, models = evalset_order(inputs), sorted_like(frame["model"], model_order(inputs))
    fig, axes = style.grid(1, len(models), width=4.4)
    for c, model in enumerate(models):
        ax = axes[0, c]
        part = frame[frame["model"] == model].pivot(index="evalset", columns="system", values="mean_length")
        sets = sorted_like(part.index, order)
        series = {s: part.reindex(sets)[s].tolist() for s in (x, y) if s in part}
        style.grouped_bars(ax, sets, series, style.pair_styles(x, y))
        ax.set_ylabel("mean response length (tokens)")
        ax.set_title(model)
    _legend(fig, axes)
    return fig


def fig8(inputs: Inputs, *, tuning: str = "lite", dynamic: str = "dynamic-paper"):
    """Share of generated tokens produced at each exit layer under dynamic early exit; a panel per
    eval set, a row per base model.

    Inputs: generation records of {tuning}.{dynamic}.
    """
    system = f"{tuning}.{dynamic}"
    frame = exit_shares(inputs.generations, system)
    _require(frame, f"generation records of {system}")
    order, models = evalset_order(inputs), sorted_like(frame["model"], model_order(inputs))
    sets = sorted_like(frame["evalset"], order)
    fig, axes = style.grid(len(models), len(sets))
    bar = style.system_style(system, style.COMPARED_COLOR)
    for r, model in enumerate(models):
        for c, evalset in enumerate(sets):
            ax = axes[r, c]
            part = frame[(frame["model"] == model) & (frame["evalset"] == evalset)]
            if part.empty:
                _empty(ax, "no generations")
            else:
                labels = [str(k) for k in part["layer"]]
                ax.bar(labels, part["share_pct"], **bar)
                ax.set_ylim(0, 100)
                ax.grid(**style.GRID)
                ax.set_xlabel("exit layer")
                ax.set_ylabel("share of tokens (%)")
            ax.set_title(f"{model} / {evalset}")
    _legend(fig, axes)
    return fig


def _category_figure(inputs: Inputs, evalset: str, tuning: str, final: str, dynamic: str):
    x, y = f"{tuning}.{final}", f"{tuning}.{dynamic}"
    judgments = [j for j in inputs.judgments if j.get("evalset") == evalset]
    generations = [g for g in inputs.generations if g.get("evalset") == evalset]
    quality = pair_quality(judgments, x, y, by=("model", "evalset", "category"))
    cost = compare_cost(generations, x, y, by=("model", "evalset", "category"))
    if quality.empty and cost.empty:
        raise InputError(
            f"no judgments or generations of {x} vs {y} on eval set {evalset!r} among the inputs"
        )
    models = sorted_like([*quality["model"], *cost["model"]], model_order(inputs))
    fig, axes = style.grid(len(models), 2, width=5.0)
    for r, model in enumerate(models):
        ax_q, ax_c = axes[r]
        q = quality[quality["model"] == model].set_index("category")
        c = cost[cost["model"] == model].set_index("category")
        _quality_cost_row(ax_q, ax_c, q, c, x, y, lambda cats: sorted(cats, key=str), label_cost=False)
        ax_q.set_title(f"{model} / {evalset}: quality by category")
        ax_c.set_title(f"{model} / {evalset}: cost by category")
    _legend(fig, axes)
    return fig


def fig9(
    inputs: Inputs,
    *,
    evalset: str,
    tuning: str = "lite",
    final: str = "final",
    dynamic: str = "dynamic-paper",
):
    """Category-level quality (judge score) and cost (FLOPs, % of final) of final-layer generation
    (orange) vs dynamic early exit (blue) on the first eval set (the paper's Vicuna).

    Inputs: judgments of {tuning}.{final} vs {tuning}.{dynamic} and generation records of both on
    --evalset.
    """
    return _category_figure(inputs, evalset, tuning, final, dynamic)


def fig10(
    inputs: Inputs,
    *,
    evalset: str,
    tuning: str = "lite",
    final: str = "final",
    dynamic: str = "dynamic-paper",
):
    """Category-level quality and cost of final-layer generation (orange) vs dynamic early exit
    (blue) on the third eval set (the paper's WizardLM).

    Inputs: judgments of {tuning}.{final} vs {tuning}.{dynamic} and generation records of both on
    --evalset.
    """
    return _category_figure(inputs, evalset, tuning, final, dynamic)


_FRONTIER_MARKERS = {"paper": "o", "aggressive": "v", "calibrated": "*"}
# the baselines are all grey, so each needs a shape of its own to be told apart in the legend
_BASELINE_MARKERS = {"random-half": "X", "random-k": "P", "sequential": "D"}
# options of the KV-cached exit (lite.decoders.names): a colour and a line style each, the paper's
# exact decoder (no option) in the compared blue
_OPTION_STYLES = {
    "": (style.COMPARED_COLOR, "-"),
    "copy": ("#55A868", "--"),
    "probe-copy": ("#8172B3", "-."),
    "saturation-copy": ("#937860", ":"),
    "probe": ("#C44E52", ":"),
    "saturation": ("#DA8BC3", ":"),
}


def _option_style(option: str) -> tuple[str, str]:
    return _OPTION_STYLES.get(option, ("#64B5CD", ":"))


def frontier(inputs: Inputs, *, tuning: str = "lite", final: str = "final"):
    """The quality/cost frontier of dynamic exit (beyond the paper): mean judge score against % FLOPs
    saved over final-layer generation, no-KV-cache accounting (the paper's) left and KV-cache right,
    a row per base model. A line joins each threshold sweep from cautious to aggressive (the
    paper's thresholds t moved to 1 - k (1 - t), points labelled xk): the paper's exact decoder in
    blue, each option of the KV-cached exit (``-copy``, ``-probe-copy``, ...) in a colour of its own,
    labelled in the KV-cache panel, where they differ. The paper's, aggressive and calibrated
    settings are marked by shape in their option's colour, the random and sequential baselines in
    grey; the final layer (orange) is the point at no saving.

    Inputs: judgments of {tuning}.{decoder} vs {tuning}.{final} and generation records of each system.
    """
    from lite.report.tables import frontier as frontier_table

    frame = frontier_table(inputs, tuning=tuning, final=final)
    # "" for the paper's exact decoders: a value, unlike None, that grouping and equality keep
    frame = frame.assign(
        option=frame["system"].str.partition(".")[2].map(lambda n: decoder_name(n).option or "")
    )
    models = sorted_like(frame["model"], model_order(inputs))
    fig, axes = style.grid(len(models), 2, width=4.6, height=3.4)
    for r, model in enumerate(models):
        part = frame[frame["model"] == model]
        for c, accounting in enumerate(("nocache", "kvcache")):
            ax = axes[r, c]
            saved = f"saved_pct_{accounting}"
            ax.scatter([0.0], [part["score_final"].mean()], color=style.FINAL_COLOR, marker="s",
                       label=f"{style.tuning_name(tuning)} {final}", zorder=3)  # fmt: skip
            sweeps = part[part["scale"].notna()]
            options = sorted(set(sweeps["option"]))  # the paper's ("") first
            # scale labels: the paper's sweep without a cache, the last option's with one (option
            # lines run close together there; their points sit at the same scales in order)
            labelled = options[0] if accounting == "nocache" else options[-1]
            for opt in options:
                color, line = _option_style(opt)
                sweep = sweeps[sweeps["option"] == opt].sort_values("scale")
                ax.plot(sweep[saved], sweep["score"], color=color, linestyle=line, marker=".",
                        label="threshold sweep" + (f", {opt}" if opt else ""))  # fmt: skip
                if opt == labelled:
                    for i, row in enumerate(sweep.itertuples()):
                        # neighbouring scales sit close together: labels alternate below and above
                        offset = (3, -10) if i % 2 == 0 else (3, 5)
                        ax.annotate(f"x{row.scale:g}", (getattr(row, saved), row.score), xytext=offset,
                                    textcoords="offset points", fontsize=style.MIN_FONT_SIZE,
                                    color=color)  # fmt: skip
            for row in part[part["scale"].isna()].itertuples():
                decoder = row.system.partition(".")[2]
                is_baseline = row.kind == "baseline"
                setting = row.kind.partition(" ")[0]  # calibrated, paper, aggressive (option after)
                markers, key = (_BASELINE_MARKERS, decoder) if is_baseline else (_FRONTIER_MARKERS, setting)
                marker = markers.get(key, "X" if is_baseline else "o")
                ax.scatter([getattr(row, saved)], [row.score], marker=marker,
                           s=70 if setting == "calibrated" else 40, zorder=4,
                           color=style.OTHER_COLOR if is_baseline else _option_style(row.option)[0],
                           edgecolor="black", linewidth=0.5, label=decoder)  # fmt: skip
            where = "no KV cache" if accounting == "nocache" else "KV cache"
            ax.set_xlabel(f"FLOPs saved (%, {where})")
            ax.set_ylabel(SCORE_LABEL)
            ax.set_ylim(*_span([*part["score"], *part["score_final"]], pad=0.5))
            ax.set_xlim(*_span([0.0, *part[saved]], pad=6.0))
            ax.grid(axis="both", alpha=0.3)
            ax.set_title(f"{model}: quality vs FLOPs saved, {where}")
    _legend(fig, axes)
    return fig


def _span(values, pad: float) -> tuple[float, float]:
    """Axis limits holding every value with ``pad`` to spare (room for a marker and its label)."""
    values = [float(v) for v in values if not np.isnan(v)]
    return min(values) - pad, max(values) + pad
