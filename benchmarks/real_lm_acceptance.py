r"""The acceptance table of LITE on a real pretrained LM, read from a finished run's files.

    python benchmarks/real_lm_acceptance.py --results results --model smollm2-135m \
        --layer-ce-it it.ce.csv --layer-ce-lite lite.ce.csv > acceptance.md

Each bar is one of the claims the paper makes for LLaMA-2, sized for a small model: LITE keeps the
final layer (held-out CE and judge score within 5 % of IT's), its intermediate checkpoints align
with the final layer (the middle one at least 20 points above IT, every one above IT),
confidence predicts alignment at the middle checkpoint (Spearman's rho >= 0.8 over confidence bins
of at least 20 tokens), and dynamic exit keeps the final layer's score while the random and
sequential baselines lose (at least 97 % kept while some tokens exit early; each baseline at least
0.5 below). The layer-CE
files come from `lite layer-ce` on the tuned IT and LITE models (the run itself does not score
held-out CE). Every number is computed here from the run's records; nothing is typed in.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from lite.decoders.names import BASELINE_NAMES
from lite.human.agreement import spearman
from lite.report.findings import layer_alignment, mean_exit_shares, savings, scores
from lite.report.inputs import load_inputs
from lite.report.tables import to_markdown

SAME_PCT = 5.0  # final-layer CE and judge score: LITE within this % of IT's
MIDDLE_GAP_POINTS = 20.0  # LITE's middle checkpoint at least this far above IT's alignment
MIN_RHO = 0.8  # confidence vs alignment at the middle checkpoint
MIN_BIN_TOKENS = 20
KEPT_PCT = 97.0  # dynamic exit's score, % of the final layer's
BASELINE_GAP = 0.5  # each baseline at least this far below dynamic exit


def _row(criterion: str, measured: str, bar: str, met: bool) -> dict:
    return {"criterion": criterion, "measured": measured, "bar": bar, "met": "met" if met else "not met"}


def acceptance(results: Path, model: str, ce_it: Path, ce_lite: Path, dynamic: list[str]) -> pd.DataFrame:
    root = results / model
    judgments = load_inputs(sorted((root / "judgments").rglob("*.jsonl"))).judgments
    alignment = pd.concat(pd.read_csv(p) for p in sorted((root / "analysis").rglob("alignment.csv")))
    calibration = pd.concat(
        pd.read_csv(p) for p in sorted((root / "analysis" / "lite").rglob("calibration.csv"))
    )
    ce = {name: pd.read_csv(path).set_index("layer") for name, path in (("it", ce_it), ("lite", ce_lite))}
    final_layer = int(ce["it"].index.max())
    checkpoints = [int(k) for k in ce["it"].index if k != final_layer]
    middle = checkpoints[len(checkpoints) // 2]
    rows = []

    it_ce, lite_ce = ce["it"].loc[final_layer, "ce"], ce["lite"].loc[final_layer, "ce"]
    change = 100 * (lite_ce / it_ce - 1)
    rows.append(
        _row(
            "LITE's final-layer held-out CE within 5 % of IT's",
            f"{lite_ce:.3f} vs {it_ce:.3f} ({change:+.1f} %)",
            f"<= +{SAME_PCT:g} %",
            change <= SAME_PCT,
        )
    )
    it_score, lite_score = scores(judgments, "it.final", "lite.final", model)
    change = 100 * (lite_score / it_score - 1)
    rows.append(
        _row(
            "LITE's final-layer judge score within 5 % of IT's",
            f"{lite_score:.2f} vs {it_score:.2f} ({change:+.1f} %)",
            f">= -{SAME_PCT:g} %",
            change >= -SAME_PCT,
        )
    )
    it_align, lite_align = layer_alignment(alignment, model, "it"), layer_alignment(alignment, model, "lite")
    gap = lite_align[middle] - it_align[middle]
    rows.append(
        _row(
            f"alignment at the middle checkpoint (layer {middle}): LITE at least IT's + 20 points",
            f"{lite_align[middle]:.1f} % vs {it_align[middle]:.1f} % ({gap:+.1f} points)",
            f">= +{MIDDLE_GAP_POINTS:g} points",
            gap >= MIDDLE_GAP_POINTS,
        )
    )
    above = {k: lite_align[k] - it_align[k] for k in checkpoints}
    rows.append(
        _row(
            "LITE above IT at every intermediate checkpoint",
            ", ".join(f"layer {k} {g:+.1f} points" for k, g in above.items()),
            "> 0 at each",
            all(g > 0 for g in above.values()),
        )
    )
    bins = calibration[(calibration["layer"] == middle)].groupby("bin_low")[["aligned", "count"]].sum()
    bins = bins[bins["count"] >= MIN_BIN_TOKENS]
    rho = spearman(list(bins.index), list(bins["aligned"] / bins["count"]))
    rows.append(
        _row(
            f"fig6: confidence and alignment rank-correlated at layer {middle}",
            f"Spearman {rho:.2f} over {len(bins)} bins of >= {MIN_BIN_TOKENS} tokens",
            f">= {MIN_RHO:g}",
            not math.isnan(rho) and rho >= MIN_RHO,
        )
    )
    generations = load_inputs(sorted((root / "generations" / "lite").rglob("*.jsonl"))).generations
    for decoder in dynamic:
        rows += _dynamic_rows(judgments, generations, model, decoder)
    return pd.DataFrame(rows)


def _dynamic_rows(judgments: list[dict], generations: list[dict], model: str, dynamic: str) -> list[dict]:
    """Dynamic exit keeps the final layer's score while exiting early (a decoder that never exits
    keeps it trivially: not met), and each baseline scores at least 0.5 below it."""
    dyn, final = scores(judgments, f"lite.{dynamic}", "lite.final", model)
    kept = 100 * dyn / final
    shares = mean_exit_shares(generations, f"lite.{dynamic}", model)
    early = sum(v for k, v in shares.items() if k != max(shares))
    saved = savings(generations, "lite.final", f"lite.{dynamic}", model)
    rows = [
        _row(
            f"{dynamic} keeps at least 97 % of the final layer's score, exiting early",
            f"{dyn:.2f} vs {final:.2f} ({kept:.1f} %); {early:.1f} % of the tokens exit early, "
            f"{saved['nocache']:.1f} % of the FLOPs saved ({saved['kvcache']:.1f} % with a KV cache)",
            f">= {KEPT_PCT:g} % with some early exits",
            kept >= KEPT_PCT and early > 0,
        )
    ]
    for baseline in BASELINE_NAMES:
        pair = scores(judgments, f"lite.{baseline}", "lite.final", model)
        if pair is None:
            continue
        below = dyn - pair[0]
        rows.append(
            _row(
                f"{baseline} at least 0.5 below {dynamic}",
                f"{pair[0]:.2f} ({below:.2f} below)",
                f">= {BASELINE_GAP:g} below",
                below >= BASELINE_GAP,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--layer-ce-it", type=Path, required=True, help="`lite layer-ce` CSV of the IT model")
    parser.add_argument(
        "--layer-ce-lite", type=Path, required=True, help="`lite layer-ce` CSV of the LITE model"
    )
    parser.add_argument(
        "--dynamic",
        default="dynamic-calibrated,dynamic-paper",
        help="dynamic decoders to check, comma-separated",
    )
    args = parser.parse_args(argv)
    dynamic = args.dynamic.split(",")
    table = acceptance(args.results, args.model, args.layer_ce_it, args.layer_ce_lite, dynamic)
    print(to_markdown(table), end="")


if __name__ == "__main__":
    main()
