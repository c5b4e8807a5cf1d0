"""One prepared command that proves the GPU path on a single GPU, offline, in under 10 minutes.

    make gpu-check                     # one NVIDIA GPU (runs .venv/bin/python, else python3)
    make gpu-check DEVICE=cpu          # every step at toy size on the CPU (< 5 min on 2 cores; CI's check)
    python benchmarks/gpu_check.py [--device cuda|cpu] [--out results/gpu-check] [--steps a,b] \\
        [--limit STEP=SECONDS ...]

It installs nothing and downloads nothing (docs/gpu.md: what to bring to an offline machine). Each
step runs in its own process under its own time limit, so a hang or a CUDA crash in one loses no
other; the limits add up to under 10 minutes (``LIMITS``). After every step OUT/summary.json and
OUT/summary.md are rewritten: one line per step, passed / failed with the reason / skipped with
the reason, then what each step measured. OUT/logs/STEP.log holds each step's output. The command
exits 1 when a step failed.

Steps (with ``--device cpu`` each runs at toy size):
- exactness: the float32 exactness tests (``final`` = HF ``generate``, cached exit = no-cache loop,
  self-speculative = greedy) on the device, through tests/conftest.py's LITE_TEST_DEVICE.
- workflow: the default DAG through Snakemake in OUT/workflow (a copy of the workflow), tuning in
  bf16, generation on device ``auto`` in bfloat16: time per rule, bf16 agreement, the headline table.
  On the CPU: tests/workflow/config.ci.yaml cut to one model, one eval set, 10 tuning steps.
- training: one LITE and one IT training step (fused head + CE, bf16 weights, AdamW) at LLaMA-2-7B's
  shape with random weights, sequence 512, the largest batch that fits: time and peak memory.
- deepspeed: ``lite tune`` under torchrun with DeepSpeed ZeRO-2 on one device, two steps.
- latency: ``lite.latency`` at 7B's shape (random weights, bf16), batch 1 and 8.
- plan_cost: ``lite plan-cost``'s step model against the training and latency measurements.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("exactness", "workflow", "training", "deepspeed", "latency", "plan_cost")
# Seconds per step. On the GPU they add up to 555 s, so the whole check ends within 10 minutes even
# when every step runs into its limit; on the CPU the toy steps stay well inside theirs (DeepSpeed's
# first start on a machine compiles an op: 60-100 s on 2 cores).
LIMITS = {
    "cuda": {"exactness": 60, "workflow": 225, "training": 75, "deepspeed": 90, "latency": 90,
             "plan_cost": 15},
    "cpu": {"exactness": 90, "workflow": 240, "training": 60, "deepspeed": 150, "latency": 60,
            "plan_cost": 30},
}  # fmt: skip

# (a) The float32 exactness tests of the decoders, run with the tiny models on the device.
EXACTNESS_TESTS = [
    "tests/unit/test_decoding.py::test_final_equals_model_generate_and_fixed_final",
    "tests/unit/test_decoding.py::test_stops_at_eos_and_keeps_it",
    "tests/unit/test_decoding.py::test_dynamic_never_exiting_equals_final",
    "tests/unit/test_decoding.py::test_dynamic_always_exiting_equals_fixed_first_checkpoint",
    "tests/unit/test_decoding.py::test_generation_records_batched_equal_single",
    "tests/unit/test_fast_exits.py::test_cached_exit_equals_nocache_reference",
    "tests/unit/test_fast_exits.py::test_cached_exit_equals_reference_with_mixed_thresholds",
    "tests/unit/test_fast_exits.py::test_cached_exit_equals_reference_on_another_model",
    "tests/unit/test_fast_exits.py::test_cached_exit_equals_reference_for_baselines",
    "tests/unit/test_fast_exits.py::test_cached_exit_batched_equals_single",
    "tests/unit/test_fast_exits.py::test_cached_exit_stops_at_eos_per_row",
    "tests/unit/test_fast_exits.py::test_speculative_equals_final_layer_greedy",
    "tests/unit/test_fast_exits.py::test_speculative_single_equals_batched_and_respects_length",
    "tests/unit/test_fast_exits.py::test_adaptive_drafting_is_final_layer_greedy_and_finds_the_accepted_layer",
    "tests/unit/test_device_dtype.py::test_decoders_make_every_tensor_on_the_model_device",
]

# (c, d) Model geometry: LLaMA-2-7B on the GPU, the CI config's tiny4 on the CPU. ``exits`` are the
# LITE loss's layers and the decoders' checkpoints (the paper's: every 4th layer from 8).
GEOMETRY = {
    "cuda": {"shape": "LLAMA2_7B", "seq": 512, "prompt": 128, "exits": [8, 12, 16, 20, 24, 28, 32],
             "batches": [32, 16, 8, 4, 2, 1], "timed_steps": 3, "decode_prompt": 32, "new_tokens": 32},
    "cpu": {"shape": {"hidden": 64, "intermediate": 128, "heads": 4, "kv_heads": 2, "head_dim": 16,
                      "vocab": 400, "layers": 4},
            "seq": 64, "prompt": 16, "exits": [2, 4], "batches": [8], "timed_steps": 2, "decode_prompt": 8,
            "new_tokens": 8},
}  # fmt: skip
HEAD_CHUNK = 1024  # positions per chunk of the fused head + CE
LATENCY_PROMPTS = 8  # decoded at batch 1 and at batch 8
WORKFLOW_RESERVE = 25  # seconds of the workflow step kept for the float32 runs and the report
# plan-cost's "ok" verdict wants a runtime limit 1.5x its estimate; slower than that, it misleads
PLAN_MARGIN = 1.5


# ---- the runner ----------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", choices=("cuda", "cpu"), default="cuda", help="cpu: every step at toy size"
    )
    parser.add_argument(
        "--out", default="results/gpu-check", help="folder of the summary (default %(default)s)"
    )
    parser.add_argument(
        "--steps", default=",".join(STEPS), help=f"comma-separated, in order (default: all of {STEPS})"
    )
    parser.add_argument(
        "--limit", action="append", default=[], metavar="STEP=SECONDS", help="override one step's time limit"
    )
    parser.add_argument("--worker", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = [s for s in args.steps.split(",") if s]
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        parser.error(f"--steps: unknown {unknown}; known: {', '.join(STEPS)}")
    limits = dict(LIMITS[args.device])
    for item in args.limit:
        step, sep, seconds = item.partition("=")
        if not sep or step not in STEPS or not seconds.replace(".", "", 1).isdigit():
            parser.error(f"--limit: expected STEP=SECONDS with STEP one of {', '.join(STEPS)}, got {item!r}")
        limits[step] = float(seconds)
    args.limits = limits
    args.out = Path(args.out).resolve()
    return args


def child_env() -> dict[str, str]:
    """The steps' environment: offline, and this interpreter's scripts (lite, snakemake) first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_step(step: str, args: argparse.Namespace) -> dict:
    """One step in a fresh process of its own session, killed with everything it started at its limit."""
    limit = args.limits[step]
    result_file = args.out / "steps" / f"{step}.json"
    result_file.unlink(missing_ok=True)
    log = args.out / "logs" / f"{step}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", step, "--device", args.device]
    command += ["--out", str(args.out), "--limit", f"{step}={limit:g}"]
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=child_env(),
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            # the step's children (snakemake jobs, torchrun workers, pytest) share its process group
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    seconds = round(time.perf_counter() - start, 1)
    base = {"step": step, "seconds": seconds, "limit_s": limit, "log": str(log.relative_to(args.out))}
    if returncode is None:
        return {**base, "status": "failed", "reason": f"timed out after {limit:g} s (the step's limit)"}
    if returncode != 0 or not result_file.is_file():
        return {**base, "status": "failed", "reason": f"exit code {returncode}: {last_line(log)}"}
    return {**base, **json.loads(result_file.read_text())}


def last_line(log: Path) -> str:
    """The last non-empty line of a log (a Python error ends with its message), at most 300 characters."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def machine() -> dict:
    """What ran the check, found without importing torch (a broken CUDA set-up fails in a step, not here)."""
    from lite.latency import machine as cpu_machine

    info = {**cpu_machine(), "torch": _version("torch"), "transformers": _version("transformers")}
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        found = subprocess.run(query, capture_output=True, text=True, check=False)
        info["gpus"] = [
            line.strip() for line in found.stdout.splitlines() if line.strip()
        ] or found.stderr.strip()
    return info


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_summary(args: argparse.Namespace, info: dict, results: list[dict], wall: float) -> None:
    import pandas as pd

    from lite.io import atomic_write
    from lite.report.tables import to_markdown

    pending = [{"step": s, "status": "not run yet"} for s in args.steps[len(results) :]]
    summary = {"device": args.device, "machine": info, "wall_s": round(wall, 1), "steps": results + pending}
    write_ordered_json(args.out / "summary.json", summary)
    gpus = info.get("gpus")
    where = ", ".join(gpus) if isinstance(gpus, list) else info["cpu"]
    lines = [
        f"# GPU check ({args.device})",
        "",
        f"`{' '.join(sys.argv)}` on {where}; torch {info['torch']}, "
        f"transformers {info['transformers']}; {wall:.0f} s in all.",
        "",
    ]
    for result in results + pending:
        reason = f": {result['reason']}" if result.get("reason") else ""
        timing = f" ({result['seconds']:.0f} s of {result['limit_s']:g})" if "seconds" in result else ""
        lines.append(f"- **{result['step']}** {result['status']}{timing}{reason}")
    for result in results:
        tables = result.get("tables", {})
        if tables:
            lines += ["", f"## {result['step']}", ""]
        for caption, rows in tables.items():
            lines.append(to_markdown(pd.DataFrame(rows), f"{caption}:"))
        for text in result.get("notes", []):
            lines += [text.strip(), ""]
    with atomic_write(args.out / "summary.md") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return run_worker(args)
    if importlib.util.find_spec("lite") is None:  # the summary itself is written with lite's helpers
        raise SystemExit(
            "gpu-check: the lite package is not installed: pip install --no-deps -e . (docs/gpu.md)"
        )
    for folder in ("steps", "logs"):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    info = machine()
    results: list[dict] = []
    write_summary(args, info, results, 0.0)
    for step in args.steps:
        print(f"gpu-check: {step} (limit {args.limits[step]:g} s) ...", file=sys.stderr, flush=True)
        results.append(run_step(step, args))
        print(f"gpu-check: {step} {results[-1]['status']} {results[-1].get('reason', '')}", file=sys.stderr)
        write_summary(args, info, results, time.perf_counter() - start)
    print(f"gpu-check: {args.out / 'summary.md'}", file=sys.stderr)
    return 1 if any(r["status"] == "failed" for r in results) else 0


# ---- the steps (each in its own process) -----------------------------------------------------------


def write_ordered_json(path: Path, obj) -> None:
    """JSON in the order it was built (``lite.io.write_json`` sorts keys): tables keep their columns."""
    from lite.io import atomic_write

    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2)
        handle.write("\n")


def run_worker(args: argparse.Namespace) -> int:
    """Run one step and write its result (status, reason, measured values, tables) as JSON."""
    write_ordered_json(args.out / "steps" / f"{args.worker}.json", WORKERS[args.worker](args))
    return 0


def device_of(args: argparse.Namespace):
    """The step's torch device; ``cuda`` without a usable GPU ends the step with one line saying why."""
    from lite.commands.generate import resolve_device

    return resolve_device(argparse.Namespace(device=args.device), "gpu-check")


def exactness(args: argparse.Namespace) -> dict:
    import xml.etree.ElementTree as ElementTree

    report = args.out / "steps" / "exactness.junit.xml"
    report.unlink(missing_ok=True)  # a report of an earlier run would pass for this one's
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    env = {**child_env(), "LITE_TEST_DEVICE": str(device_of(args))}
    done = subprocess.run([*command, *EXACTNESS_TESTS], cwd=ROOT, env=env, check=False)
    if not report.is_file():
        return {"status": "failed", "reason": f"pytest exited {done.returncode} without a report"}
    cases = ElementTree.parse(report).getroot().iter("testcase")
    rows = []
    for case in cases:
        outcome = next(
            (child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed"
        )
        rows.append(
            {
                "test": f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}",
                "outcome": outcome,
            }
        )
    failed = [row["test"] for row in rows if row["outcome"] in ("failure", "error")]
    passed = sum(row["outcome"] == "passed" for row in rows)
    where = f"on {env['LITE_TEST_DEVICE']} in float32"
    if failed or done.returncode != 0 or not passed:
        reason = f"{len(failed)} of {len(rows)} tests failed {where}: {', '.join(failed[:5])}"
        return {"status": "failed", "reason": reason, "tables": {"tests": rows}}
    return {"status": "passed", "reason": f"{passed} tests passed {where}", "measured": {"tests": len(rows)},
            "tables": {"tests": rows}}  # fmt: skip


def workflow_config(device: str) -> tuple[dict, list[str]]:
    """The DAG's config (config.yaml on the GPU; on the CPU the CI config cut down) with the GPU settings,
    and what was changed, in words."""
    import yaml

    if device == "cuda":
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        changes = ["config.yaml", "train.bf16: true"]
        config["train"]["bf16"] = True
    else:
        config = yaml.safe_load((ROOT / "tests" / "workflow" / "config.ci.yaml").read_text())
        main = next(iter(config["models"]))
        config["models"] = {main: {**config["models"][main], "tunings": ["it", "lite"]}}
        first = next(iter(config["data"]["eval"]))
        config["data"]["eval"] = {first: config["data"]["eval"][first]}
        config["generation"]["decoders"] = ["final", "dynamic-paper"]
        config["report"]["dynamic_decoder"] = "dynamic-paper"
        config.pop("frontier", None)
        config.pop("pretrain")  # tuned from random weights: one torch job less on the longest path
        config["train"].update(max_steps=10, save_steps=10)
        changes = [
            f"tests/workflow/config.ci.yaml cut to {main}, tunings it + lite, eval set {first}, decoders "
            "final + dynamic-paper, no frontier, no pretraining, 10 tuning steps",
            "train.bf16 stays false (bf16 on a CPU is emulated, 10-50x slower)",
        ]
    agreement = 4 if device == "cuda" else 2
    config["generation"].update(device="auto", dtype="bfloat16", agreement_prompts=agreement)
    changes.append(
        f"generation.device: auto, generation.dtype: bfloat16, generation.agreement_prompts: {agreement}"
    )
    return config, changes


def workflow(args: argparse.Namespace) -> dict:
    import yaml

    device_of(args)
    workdir = args.out / "workflow"
    shutil.rmtree(workdir, ignore_errors=True)  # time per rule means every job runs
    workdir.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", workdir / "Snakefile")
    shutil.copytree(
        ROOT / "workflow", workdir / "workflow", ignore=shutil.ignore_patterns("lite", "__pycache__")
    )
    shutil.copytree(ROOT / "envs", workdir / "envs")  # rules name their conda env; Snakemake reads it
    config, changes = workflow_config(args.device)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = workflow_targets(config, changes)
    command = [sys.executable, "-m", "snakemake", "--cores", str(os.cpu_count()), *targets]
    log = workdir / "snakemake.log"
    # stopped short of the step's limit, so the jobs that finished are still reported
    deadline = args.limits["workflow"] - WORKFLOW_RESERVE
    start = time.perf_counter()
    with open(log, "w") as handle:
        # a session of its own: the jobs it runs are ended with it at the deadline
        snakemake = subprocess.Popen(
            command,
            cwd=workdir,
            env=child_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = snakemake.wait(timeout=max(deadline, 1))
        except subprocess.TimeoutExpired:
            os.killpg(snakemake.pid, signal.SIGKILL)  # on SIGTERM it would wait for its running jobs
            snakemake.wait()
            returncode = None
    wall = round(time.perf_counter() - start, 1)
    shown = " ".join(command[1:5] + (targets if targets == ["all"] else ["TARGETS"]))
    notes = [f"Settings: {'; '.join(changes)}. `{shown}` in {workdir}: {wall:.0f} s."]
    stages = rule_times(workdir / "results" / "benchmarks")
    tables = {"seconds per rule (sum over its jobs; jobs ran side by side)": stages}
    finished = sum(row["jobs"] for row in stages)
    if returncode is None:
        reason = f"snakemake stopped at {deadline:g} s, short of the step's limit; {finished} jobs done"
        return {"status": "failed", "reason": reason, "tables": tables, "notes": notes}
    if returncode != 0:
        reason = f"snakemake exited {returncode} after {wall:.0f} s: {failed_jobs(workdir, log)}"
        return {"status": "failed", "reason": reason, "tables": tables, "notes": notes}
    checks = workflow_agreement(workdir, config)
    tables.update(checks)
    headline = workdir / "results" / "tables" / "headline.md"
    notes.append(headline.read_text())
    cpu_run = ROOT / "results" / "tables" / "headline.csv"
    if args.device == "cuda" and cpu_run.is_file():
        tables["headline beside the CPU run's (results/tables/headline.csv)"] = side_by_side(
            headline.with_suffix(".csv"), cpu_run
        )
    agreement = {
        row["decoder"]: row["token_agreement"] for row in checks["bf16 tokens equal to a float32 run"]
    }
    measured = {"wall_s": wall, "jobs": finished, "bf16_vs_fp32_token_agreement": agreement}
    words = ", ".join(f"{name} {share:.3f}" for name, share in agreement.items())
    reason = f"{finished} jobs in {wall:.0f} s; bf16 tokens equal to float32: {words}"
    return {"status": "passed", "reason": reason, "measured": measured, "tables": tables, "notes": notes}


def workflow_targets(config: dict, changes: list[str]) -> list[str]:
    """``all``, or without table2 where spaCy or its pipeline is missing (docs/gpu.md leaves them out
    of the wheels to bring: 67 MiB)."""
    from lite.plan import Plan
    from lite.similarity import FALLBACKS

    pipeline = config["similarity"]["spacy_model"]
    packages = (pipeline, *FALLBACKS.get(pipeline, ()))
    if importlib.util.find_spec("spacy") and any(importlib.util.find_spec(p) for p in packages):
        return ["all"]
    changes.append(f"spaCy or its pipeline {pipeline} is not installed: every target of all but table2")
    return [target for target in Plan(config).all_targets() if target != "results/tables/table2.csv"]


def failed_jobs(workdir: Path, log: Path) -> str:
    """The rules Snakemake reports failed, each with the last line of its job's log (the error)."""
    found = []
    for rule, block in re.findall(r"Error in rule (\w+):\n((?:    .*\n)+)", log.read_text(errors="replace")):
        job_log = re.search(r"^\s+log: (\S+)", block, re.M)
        found.append(
            f"rule {rule} ({job_log[1]}: {last_line(workdir / job_log[1])})" if job_log else f"rule {rule}"
        )
    return "; ".join(found) or last_line(log)


def rule_times(benchmarks: Path) -> list[dict]:
    """Per rule, from the jobs' Snakemake benchmark files: jobs, seconds summed, the longest job."""
    import pandas as pd

    rows = []
    for path in sorted(benchmarks.rglob("*.tsv")):
        parts = path.relative_to(benchmarks).parts
        # results/benchmarks/{data|model}/RULE[/...].tsv; figures and tables under report/
        rule = "report" if parts[0] == "report" else Path(parts[1] if len(parts) > 1 else parts[0]).stem
        rows.append({"rule": rule, "s": float(pd.read_csv(path, sep="\t")["s"].iloc[-1])})
    if not rows:
        return []
    frame = pd.DataFrame(rows).groupby("rule", sort=False)["s"].agg(["size", "sum", "max"]).reset_index()
    frame.columns = ["rule", "jobs", "seconds", "longest_s"]
    return frame.sort_values("seconds", ascending=False).round(1).to_dict("records")


def workflow_agreement(workdir: Path, config: dict) -> dict[str, list[dict]]:
    """bf16 against its references (the workflow's own check, per decoder) and against float32: the
    main model's LITE ``final`` and headline decoder decoded again in float32 on every eval set."""
    from lite.decoders.agreement import agreement
    from lite.io import read_json, read_jsonl

    generations = workdir / "results" / next(iter(config["models"])) / "generations"
    checked: dict[str, list[dict]] = {}
    for path in sorted(generations.glob("*/*/*.jsonl.config.json")):
        found = read_json(path).get("agreement") or {}
        if found.get("prompts"):
            decoder = path.name.removesuffix(".jsonl.config.json")
            checked.setdefault(f"{path.parts[-3]}.{decoder}", []).append(found)
    references = [
        {
            "decoder": name,
            "reference": found[0]["reference"],
            "prompts": sum(f["prompts"] for f in found),
            "token_agreement": sum(f["token_agreement"] * f["tokens"] for f in found)
            / sum(f["tokens"] for f in found),
        }
        for name, found in checked.items()
    ]
    main = next(iter(config["models"]))
    checkpoints = ",".join(map(str, config["models"][main]["checkpoints"]))
    runs = {}  # decoder -> (its bf16 files, its float32 run); the runs go side by side
    for decoder in dict.fromkeys(["final", config["report"]["dynamic_decoder"]]):
        files = sorted((generations / "lite").glob(f"*/{decoder}.jsonl"))
        settings = read_json(files[0].with_name(files[0].name + ".config.json"))
        command = [sys.executable, "-m", "lite.cli", "generate", "--model", settings["model_dir"],
                   "--decoder", decoder, "--model-name", main, "--tuning", "lite",
                   "--checkpoints", checkpoints, "--max-new-tokens", str(settings["max_new_tokens"]),
                   "--batch-size", str(settings["batch_size"]), "--seed", str(settings["seed"]),
                   "--device", "auto", "--dtype", "float32", "--threads", "1"]  # fmt: skip
        if settings["kv_cache"]:
            command.append("--kv-cache")
        if settings["thresholds_source"] is not None:
            command += ["--thresholds", settings["thresholds_source"]]
        for path in files:
            evalset = path.parent.name
            command += ["--evalset", read_json(path.with_name(path.name + ".config.json"))["evalset_file"]]
            command += ["--evalset-name", evalset, "--out", f"float32/{evalset}/{decoder}.jsonl"]
        runs[decoder] = files, subprocess.Popen(command, cwd=workdir, env=child_env())
    against_fp32 = []
    for decoder, (files, process) in runs.items():
        if process.wait() != 0:
            raise RuntimeError(f"the float32 run of {decoder} exited {process.returncode}")
        bf16 = [r["token_ids"] for path in files for r in read_jsonl(path)]
        fp32 = [
            r["token_ids"]
            for path in files
            for r in read_jsonl(workdir / "float32" / path.parent.name / path.name)
        ]
        against_fp32.append({"decoder": f"lite.{decoder}", **agreement(bf16, fp32)})
    return {"bf16 agreement with the decoders' references (generation.agreement_prompts)": references,
            "bf16 tokens equal to a float32 run": against_fp32}  # fmt: skip


def side_by_side(run: Path, cpu_run: Path) -> list[dict]:
    """Two headline tables joined on their first column, with both runs' values of every column in
    which they differ (the paper's side is the same in both)."""
    import pandas as pd

    gpu, cpu = pd.read_csv(run), pd.read_csv(cpu_run)
    key = gpu.columns[0]
    joined = gpu.merge(cpu, on=key, how="left", suffixes=(" (GPU)", " (CPU)")).fillna("–")
    shown = [key]
    for column in gpu.columns[1:]:
        pair = [f"{column} (GPU)", f"{column} (CPU)"]
        if column in cpu.columns and not joined[pair[0]].equals(joined[pair[1]]):
            shown += pair
    if len(shown) == 1:  # the same table in both runs
        return gpu.assign(**{"CPU run": "the same"}).to_dict("records")
    return joined[shown].to_dict("records")


def random_llama(device, geometry: dict):
    """A seeded random LLaMA of the geometry's shape in bf16, built on the device (fast even at 7B)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    import lite.flops

    shape = geometry["shape"]
    shape = getattr(lite.flops, shape) if isinstance(shape, str) else lite.flops.ModelShape(**shape)
    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=max(geometry["seq"], geometry["decode_prompt"] + geometry["new_tokens"]),
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return model, shape


class PeakMemory:
    """Peak memory of a stretch of work: CUDA's allocator peak, or on the CPU the process's peak
    resident set (reset through /proc/self/clear_refs, as benchmarks/loss_memory.py measures it)."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        import torch
        from loss_memory import _reset_peak, _rss_kib

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated() / 2**20
        else:
            _reset_peak()
            self.before = _rss_kib("VmRSS") / 1024
        return self

    def __exit__(self, *exc):
        import torch
        from loss_memory import _rss_kib

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.peak = _rss_kib("VmHWM") / 1024
        return False


def training(args: argparse.Namespace) -> dict:
    import gc

    import torch

    from lite.architectures import exit_modules
    from lite.loss import IGNORE_INDEX, lite_loss, resolve_layer_weights

    device = device_of(args)
    geometry = GEOMETRY[args.device]
    model, shape = random_llama(device, geometry)
    model.train()
    norm, head = exit_modules(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    weights = {
        "lite": resolve_layer_weights("uniform", shape.layers, geometry["exits"]),
        "it": resolve_layer_weights("final_only", shape.layers, geometry["exits"]),
    }

    def batch_of(size: int):
        ids = torch.randint(3, shape.vocab, (size, geometry["seq"]), device=device)  # (batch, seq)
        labels = ids.clone()
        labels[:, : geometry["prompt"]] = IGNORE_INDEX  # the prompt, as in instruction tuning
        return ids, labels

    def step(ids, labels, tuning: str) -> float:
        # as LiteTrainer.compute_loss: one forward with every hidden state, the head only inside lite_loss
        out = model(input_ids=ids, output_hidden_states=True, use_cache=False, logits_to_keep=1)
        loss, _ = lite_loss(out.hidden_states, labels, norm, head, weights[tuning], HEAD_CHUNK, fused=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def measure(size: int, tuning: str) -> dict:
        ids, labels = batch_of(size)
        step(ids, labels, tuning)  # warm-up: kernels chosen, optimizer state allocated
        times = []
        with PeakMemory(device) as memory:
            for _ in range(geometry["timed_steps"]):
                start = time.perf_counter()
                loss = step(ids, labels, tuning)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        return {"tuning": tuning, "batch": size, "seq": geometry["seq"], "loss_layers": len(weights[tuning]),
                "step_s": round(statistics.median(times), 4), "peak_mib": round(memory.peak, 1),
                "step_mib": round(memory.peak - memory.before, 1), "loss": round(loss, 4)}  # fmt: skip

    rows, tried = [], []
    for size in geometry["batches"]:  # LITE needs more memory than IT: the largest batch LITE fits
        try:
            rows.append(measure(size, "lite"))
            break
        except torch.OutOfMemoryError:
            tried.append(size)
        optimizer.zero_grad(set_to_none=True)  # outside the except block: its traceback held the tensors
        gc.collect()
        torch.cuda.empty_cache()
    if not rows:
        return {"status": "failed", "reason": f"out of memory at every batch size tried: {tried}"}
    rows.append(measure(rows[0]["batch"], "it"))
    lite, it = rows
    time_ratio, memory_ratio = lite["step_s"] / it["step_s"], lite["peak_mib"] / it["peak_mib"]
    where = f"{shape.layers} layers x {shape.hidden}, batch {lite['batch']} x {geometry['seq']}, {device}"
    oom = f"; out of memory at batch {', '.join(map(str, tried))}" if tried else ""
    reason = f"{where}: LITE/IT time {time_ratio:.2f}x, peak memory {memory_ratio:.2f}x{oom}"
    notes = [
        "One step = forward with every hidden state, the fused head + CE of `lite.loss.lite_loss` on the "
        f"response positions (the last {geometry['seq'] - geometry['prompt']} of {geometry['seq']}), "
        "backward, "
        f"AdamW; bf16 weights and optimizer state, random weights and tokens. step_s: median of "
        f"{geometry['timed_steps']} steps after a warm-up step; peak_mib: the peak during them, step_mib: "
        f"that peak above what was held before them ({'CUDA allocator' if device.type == 'cuda' else 'RSS'})."
    ]
    measured = {"shape": shape.__dict__, "rows": rows, "oom_batches": tried}
    return {"status": "passed", "reason": reason, "measured": measured, "tables": {"training step": rows},
            "notes": notes}  # fmt: skip


def deepspeed(args: argparse.Namespace) -> dict:
    from lite.cli import main as lite_main
    from lite.io import read_jsonl, write_json

    if importlib.util.find_spec("deepspeed") is None:
        return {"status": "skipped", "reason": "deepspeed is not installed (docs/gpu.md: bring its sdist)"}
    device = device_of(args)
    work = args.out / "deepspeed"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    train, base, out = work / "train.jsonl", work / "base", work / "tuned"
    # the tiny model and data of tests/workflow/test_deepspeed.py: the check is that ZeRO-2 launches and steps
    lite_main(["prepare-train", "--source", "synthetic", "--n", "64", "--seed", "0", "--out", str(train),
               "--families", "count,capital,after,opposite"])  # fmt: skip
    lite_main(["init-model", "--kind", "tiny", "--train", str(train), "--out", str(base), "--layers", "4",
               "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "64",
               "--vocab", "300"])  # fmt: skip
    ds_config = ROOT / "configs" / "deepspeed" / "zero2_cpu.json"
    extra = []
    if device.type == "cuda":  # the same ZeRO-2 settings in bf16, as a GPU run tunes
        settings = json.loads(ds_config.read_text())
        settings["bf16"]["enabled"] = True
        ds_config = work / "zero2_bf16.json"
        write_json(ds_config, settings)
        extra = ["--bf16"]
    steps = 2
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"]
    command += ["-m", "lite.cli", "tune", "--base", str(base), "--train", str(train), "--out", str(out)]
    command += ["--scheme", "uniform", "--layers", "2", "--max-steps", str(steps), "--batch-size", "4"]
    command += ["--max-length", "160", "--lr", "1e-3", "--deepspeed", str(ds_config), "--threads", "1"]
    command += ["--logging-steps", "1", "--save-steps", "100", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, env={**child_env(), "OMP_NUM_THREADS": "1"}, check=False)
    seconds = round(time.perf_counter() - start, 1)
    log = out / "train_log.jsonl"
    losses = [r["loss"] for r in read_jsonl(log) if "loss" in r] if log.is_file() else []
    if done.returncode != 0 or len(losses) != steps:
        return {"status": "failed", "reason": f"torchrun exited {done.returncode} after {seconds:.0f} s, "
                f"{len(losses)} of {steps} steps logged"}  # fmt: skip
    reason = (
        f"ZeRO-2 ({ds_config.name}) on one {device.type} process: {steps} steps in {seconds:.0f} s "
        f"(launch included), losses {', '.join(f'{loss:.3f}' for loss in losses)}"
    )
    return {"status": "passed", "reason": reason, "measured": {"seconds": seconds, "losses": losses}}


def latency(args: argparse.Namespace) -> dict:
    import random

    import torch

    from lite.latency import LatencyConfig, measure, summarize

    device = device_of(args)
    geometry = GEOMETRY[args.device]
    torch.set_num_threads(1)  # the CPU mode shares 2 cores; no effect on GPU kernels
    model, shape = random_llama(device, geometry)
    model.eval()
    exits = geometry["exits"]
    middle = min(exits[:-1], key=lambda layer: abs(layer - shape.layers / 2))
    # Random weights give no meaningful confidences, so the thresholds fix the schedule: no exit
    # below the checkpoint at half the depth (> 1), every token out at it (0); the checkpoints
    # below still read their heads. Speculative decoding drafts from the same layer.
    thresholds = {layer: (0.0 if layer == middle else 1.01) for layer in exits[:-1]}
    rng = random.Random(0)
    prompts = [
        [rng.randrange(3, shape.vocab) for _ in range(geometry["decode_prompt"])]
        for _ in range(LATENCY_PROMPTS)
    ]
    config = LatencyConfig(
        prompts=LATENCY_PROMPTS,
        batch_sizes=(1, LATENCY_PROMPTS),
        max_new_tokens=geometry["new_tokens"],
        repeats=1,
        draft_layers=(middle,),
    )
    raw = measure(model, prompts, exits, thresholds, config, pad_id=0, label="random", eos_ids={2})
    table = summarize(raw, threads=1)
    columns = ["batch", "decoder", "tokens", "seconds", "tokens_per_s", "speedup_vs_hf", "flops_speedup",
               "efficiency", "same_tokens", "mean_exit_layer", "acceptance"]  # fmt: skip
    shown = table[[c for c in columns if c in table]].round(4)
    rows = shown.astype(object).where(shown.notna(), None).to_dict("records")
    notes = [
        f"Random weights (no meaningful confidences): thresholds {thresholds} send every token out at layer "
        f"{middle} of {shape.layers} (the fixed schedule of dynamic-*), and speculative-* drafts from it. "
        f"{LATENCY_PROMPTS} random prompts of {geometry['decode_prompt']} tokens, {geometry['new_tokens']} "
        "new tokens each (EOS forbidden), one timed run per decoder after an untimed counting run, bf16. "
        "flops_speedup: the speed-up over HF generate that the needed FLOPs imply (lite.flops); "
        "same_tokens: equal to the decoder's reference, which bf16 does not promise (near-ties of random "
        "logits flip between block shapes)."
    ]
    speed = {
        f"{row['decoder']}@{row['batch']}": round(row["tokens_per_s"], 1)
        for row in rows
        if row["decoder"] in ("hf-generate", "final")
    }
    measured = {"shape": shape.__dict__, "rows": rows, "decode_prompt": geometry["decode_prompt"],
                "new_tokens": geometry["new_tokens"], "prompts": LATENCY_PROMPTS}  # fmt: skip
    reason = f"{shape.layers} layers x {shape.hidden}, {device}: tokens/s " + ", ".join(
        f"{name} {value}" for name, value in speed.items()
    )
    return {
        "status": "passed",
        "reason": reason,
        "measured": measured,
        "tables": {"decoders": rows},
        "notes": notes,
    }


def plan_cost(args: argparse.Namespace) -> dict:
    import yaml

    from lite.commands import plan_cost as planner
    from lite.flops import ModelShape
    from lite.io import read_json

    found = {}
    for step in ("training", "latency"):
        path = args.out / "steps" / f"{step}.json"
        found[step] = read_json(path) if path.is_file() else {"status": "not run"}
    missing = [f"{step} {result['status']}" for step, result in found.items() if result["status"] != "passed"]
    if missing:
        return {"status": "skipped", "reason": f"nothing measured to compare with: {', '.join(missing)}"}
    parser = argparse.ArgumentParser()
    planner.add_arguments(parser)
    assumed = parser.parse_args(["--configfile", "-"])  # plan-cost's own defaults: the GPU it plans for
    gpu = planner.Gpu(
        flops=assumed.tflops * 1e12,
        bandwidth=assumed.bandwidth * 1e9,
        memory=assumed.gpu_memory * 1e9,
        layer_overhead=assumed.layer_overhead_ms / 1e3,
        load=0.0,
    )
    trained, decoded = found["training"]["measured"], found["latency"]["measured"]
    shape = ModelShape(**trained["shape"])
    config = yaml.safe_load((ROOT / "config.yaml").read_text())  # a whole config, its model replaced
    exits = GEOMETRY[args.device]["exits"]
    rows = []
    for measured in trained["rows"]:
        tuning = measured["tuning"]
        config["models"] = {
            "check": {
                "base": {"kind": "tiny", "layers": shape.layers, "hidden": shape.hidden, "heads": shape.heads,
                         "kv_heads": shape.kv_heads, "intermediate": shape.intermediate, "vocab": shape.vocab,
                         "seed": 0},
                "checkpoints": exits, "tunings": [tuning], "thresholds": {},
            }
        }  # fmt: skip
        config["train"].update(
            max_steps=1, batch_size=measured["batch"], grad_accum=1, max_length=measured["seq"]
        )
        config["resources"]["tune"]["gpus"] = 1
        stages = planner.estimate(config, gpu, assumed.prompt_tokens, measured["seq"])
        estimate = next(s for s in stages if s.name == "tune").longest
        what = f"{tuning} training step (batch {measured['batch']})"
        rows.append(compared(what, "step", measured["step_s"], estimate))
    new, count = decoded["new_tokens"], decoded["prompts"]
    for measured in decoded["rows"]:
        batch = measured["batch"]
        estimate = planner.decode_seconds(shape, gpu, count, batch, decoded["decode_prompt"], new)
        what, tokens = f"{measured['decoder']} decoding, batch {batch}", measured["tokens"]
        rows.append(compared(what, "token", measured["seconds"] / tokens, estimate / tokens))
    assumption = (
        f"plan-cost's GPU: {assumed.tflops:g} TFLOP/s, {assumed.bandwidth:g} GB/s, "
        f"{assumed.layer_overhead_ms:g} ms per layer and step (its defaults, no load time)"
    )
    notes = [
        f"{assumption}. measured/estimate above 1 means plan-cost is optimistic. Training: `estimate`'s "
        "tune stage for one step of the measured batch (3x the forward FLOPs, the head on every position). "
        "Decoding: `decode_seconds` for the prompts at the batch size, which counts every token at the "
        "final layer (an upper bound for early exits and drafts)."
    ]
    checked = [
        row for row in rows if row["what"].startswith(("lite training", "it training", "final decoding"))
    ]
    worst = max(checked, key=lambda row: row["measured_over_estimate"])
    status = "passed"
    if args.device == "cpu":
        reason = (
            f"compared for the record (a CPU against a GPU's model): worst {worst['what']} "
            f"{worst['measured_over_estimate']:.1f}x"
        )
    else:
        reason = f"worst {worst['what']}: measured {worst['measured_over_estimate']:.2f}x the estimate"
        if worst["measured_over_estimate"] > PLAN_MARGIN:
            status = "failed"
            reason += (
                f", beyond the {PLAN_MARGIN}x margin of plan-cost's 'ok' verdict: its runtime checks "
                "mislead here"
            )
    return {"status": status, "reason": reason, "tables": {"measured vs plan-cost": rows}, "notes": notes}


def compared(what: str, per: str, measured: float, estimate: float) -> dict:
    """A row of the plan-cost table: milliseconds per ``per`` (step, token), measured and estimated."""
    return {
        "what": what,
        "per": per,
        "measured_ms": round(measured * 1e3, 4),
        "estimate_ms": round(estimate * 1e3, 4),
        "measured_over_estimate": round(measured / estimate, 3),
    }


WORKERS = {
    "exactness": exactness,
    "workflow": workflow,
    "training": training,
    "deepspeed": deepspeed,
    "latency": latency,
    "plan_cost": plan_cost,
}


if __name__ == "__main__":
    sys.exit(main())
