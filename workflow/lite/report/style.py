"""One palette and one way of saving, shared by every figure.

Colour says which tuning produced a system (IT, LITE, weighted LITE keep their colour in every
figure); the fill says which decoder (final layer solid, dynamic exit hatched, fixed exit dotted,
baselines crossed), so "LITE dynamic" looks the same wherever it appears.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lite.io import atomic_write  # noqa: E402

# the paper's colours: IT orange, LITE blue (its captions name them)
TUNING_COLORS = {"it": "#DD8452", "lite": "#4C72B0", "lite_weighted": "#55A868"}
TUNING_NAMES = {"it": "IT", "lite": "LITE", "lite_weighted": "weighted LITE"}
# tunings outside the table get the next unused colour of this list, by sorted name
_SPARE = ["#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]

FINAL_COLOR = "#333333"  # the reference line/bar where a figure is about layers, not tunings
GRID = {"axis": "y", "alpha": 0.3}


def tuning_color(tuning: str) -> str:
    if tuning in TUNING_COLORS:
        return TUNING_COLORS[tuning]
    return _SPARE[sum(map(ord, tuning)) % len(_SPARE)]


def tuning_name(tuning: str) -> str:
    return TUNING_NAMES.get(tuning, tuning)


def _lighter(color: str, amount: float) -> tuple[float, float, float]:
    rgb = np.array(mcolors.to_rgb(color))
    return tuple(rgb + (1.0 - rgb) * amount)


def system_style(system: str) -> dict:
    """Bar keyword arguments (color, hatch, edgecolor, label) for a ``tuning.decoder`` system."""
    tuning, _, decoder = system.partition(".")
    base = tuning_color(tuning)
    if decoder == "final":
        face, hatch = base, None
    elif decoder.startswith("dynamic"):
        face, hatch = _lighter(base, 0.45), "//"
    elif decoder.startswith("fixed"):
        face, hatch = _lighter(base, 0.6), ".."
    else:
        face, hatch = _lighter(base, 0.75), "xx"
    return {"color": face, "hatch": hatch, "edgecolor": base, "label": system_label(system)}


def system_label(system: str) -> str:
    tuning, _, decoder = system.partition(".")
    return f"{tuning_name(tuning)} {decoder}" if decoder else tuning_name(tuning)


def layer_colors(layers) -> dict[int, tuple]:
    """A sequential colour per layer (shallow = light, deep = dark) for per-layer curves."""
    layers = sorted(layers)
    cmap = matplotlib.colormaps["viridis_r"]
    span = max(len(layers) - 1, 1)
    return {layer: cmap(0.1 + 0.8 * i / span) for i, layer in enumerate(layers)}


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
