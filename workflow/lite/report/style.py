"""One palette and one way of saving, shared by every figure.

The paper's colours: in every comparison the reference is orange and what is compared with it
blue. Final-layer generation is orange beside dynamic exit in blue (fig1, fig7, fig9, fig10, fig12),
IT orange beside LITE (fig3-fig5, fig11) or weighted LITE (fig13) in blue, and LITE orange beside
weighted LITE in blue (fig14). The fill says which decoder (final layer solid, dynamic exit hatched,
fixed exit dotted, baselines crossed), so a figure printed without colour still tells them apart.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lite.decoders.names import decoder_name  # noqa: E402
from lite.io import atomic_write  # noqa: E402

REFERENCE_COLOR = "#DD8452"  # orange: final-layer generation, IT, the first of two compared tunings
COMPARED_COLOR = "#4C72B0"  # blue: dynamic exit, LITE, the second of two compared tunings
FINAL_COLOR = REFERENCE_COLOR
OTHER_COLOR = "#8C8C8C"  # a tuning the paper has no colour for
# where a figure shows one tuning alone: IT orange, LITE and weighted LITE blue, as in the paper
TUNING_COLORS = {"it": REFERENCE_COLOR, "lite": COMPARED_COLOR, "lite_weighted": COMPARED_COLOR}
TUNING_NAMES = {"it": "IT", "lite": "LITE", "lite_weighted": "weighted LITE"}

GRID = {"axis": "y", "alpha": 0.3}
# the smallest text on a figure: a PNG in the report and a PDF column must both be readable
MIN_FONT_SIZE = 8


def tuning_color(tuning: str) -> str:
    return TUNING_COLORS.get(tuning, OTHER_COLOR)


def tuning_name(tuning: str) -> str:
    return TUNING_NAMES.get(tuning, tuning)


def _lighter(color: str, amount: float) -> tuple[float, float, float]:
    rgb = np.array(mcolors.to_rgb(color))
    return tuple(rgb + (1.0 - rgb) * amount)


def system_style(system: str, color: str | None = None) -> dict:
    """Bar keyword arguments (color, hatch, edgecolor, label) for a ``tuning.decoder`` system drawn
    in ``color`` (default: its tuning's). Final-layer and dynamic-exit bars are the colour itself,
    so the two series of the paper's figures are its orange and blue; their white hatch marks
    dynamic exit. Fixed exits and baselines are lighter shades with a hatch of the colour."""
    tuning, _, decoder = system.partition(".")
    base = color or tuning_color(tuning)
    named = decoder_name(decoder)
    if named.family == "final":
        face, hatch, edge = base, None, base
    elif named.thresholded:
        face, hatch, edge = base, "//", "white"
    elif named.family == "fixed":
        face, hatch, edge = _lighter(base, 0.6), "..", base
    else:
        face, hatch, edge = _lighter(base, 0.75), "xx", base
    return {"color": face, "hatch": hatch, "edgecolor": edge, "label": system_label(system)}


def pair_styles(reference: str, compared: str) -> dict[str, dict]:
    """Bar styles of two compared systems: ``reference`` orange, ``compared`` blue (the paper's)."""
    return {
        reference: system_style(reference, REFERENCE_COLOR),
        compared: system_style(compared, COMPARED_COLOR),
    }


def system_label(system: str) -> str:
    tuning, _, decoder = system.partition(".")
    return f"{tuning_name(tuning)} {decoder}" if decoder else tuning_name(tuning)


def layer_colors(layers) -> dict[int, tuple]:
    """A sequential colour per layer (shallow = light, deep = dark) for per-layer curves. Viridis
    stops at its green: its yellow end is unreadable as text or a thin line on white."""
    layers = sorted(layers)
    cmap = matplotlib.colormaps["viridis"]
    span = max(len(layers) - 1, 1)
    return {layer: cmap(0.72 * (1 - i / span)) for i, layer in enumerate(layers)}


def grid(nrows: int, ncols: int, width: float = 3.6, height: float = 3.0):
    """A figure with an (nrows, ncols) array of axes, always 2-D."""
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, constrained_layout=True
    )
    return fig, axes


def grouped_bars(ax, groups: list[str], series: dict[str, list[float]], styles: dict[str, dict]) -> None:
    """Bars for each group (x tick) and series (one bar each), series in insertion order."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        offset = (k - (len(series) - 1) / 2) * width
        ax.bar(x + offset, values, width, **styles[name])
    long_names = max((len(str(g)) for g in groups), default=0) > 8  # category names: slant to fit
    ax.set_xticks(x, groups, rotation=30 if long_names else 0, ha="right" if long_names else "center")
    ax.grid(**GRID)


def save_figure(fig, out: str | os.PathLike) -> list[Path]:
    """Save ``out`` (normally .pdf) and its .png twin atomically; returns both paths.

    PDF metadata dates are dropped so the same inputs give the same bytes.
    """
    out = Path(out)
    paths = [out] if out.suffix == ".png" else [out, out.with_suffix(".png")]
    for path in paths:
        fmt = path.suffix.lstrip(".") or "pdf"
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=150, metadata=metadata)
    plt.close(fig)
    return paths
