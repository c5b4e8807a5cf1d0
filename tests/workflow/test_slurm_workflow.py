"""The real workflow DAG on the local SLURM cluster: every compute rule an sbatch job, and a tuning
job cancelled with `scancel` that resumes from its checkpoint when the workflow is rerun.

    sudo bash .ci/slurm/start.sh                        # once; leaves a one-node cluster running
    .venv/bin/pytest tests/workflow/test_slurm_workflow.py -q    # ~3-5 min on 2 cores

Marker `slurm`: skips without a cluster, fails instead when env CI is `true` (tests/support/slurm_cluster.py).
One module fixture does both runs in one temp copy of the workflow with configs/slurm-smoke.yaml,
as a user would:
  1. `snakemake ... results/tiny4/tuned/lite`; once the tune job has written a checkpoint it is
     cancelled with a plain `scancel <jobid>`, and Snakemake is then stopped like a user would (^C);
  2. `snakemake ... all`: the tune job resumes from the checkpoint its SIGTERM handler saved, and
     the rest of the DAG runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from slurm_cluster import REPO, TEST_PROFILE, SnakemakeRun, require_gpu_slurm, run_snakemake, sacct_jobs
from test_workflow import copy_workflow, planned_jobs, snakemake

# The cluster's smoke run, as docs/cluster.md gives it: one model, one tuning, one eval set of
# 4 prompts; tune, generate and trace ask for one (fake) GPU each, so they are submitted like GPU
# jobs (--gpus=1) while their commands run on the CPU. Its tuning runs long enough (400 steps of
# ~20 ms, a checkpoint every 10) to be cancelled mid-way.
SMOKE_CONFIG = REPO / "configs" / "slurm-smoke.yaml"
MODEL, TUNING = "tiny4", "lite"
TUNED = f"results/{MODEL}/tuned/{TUNING}"
CHECKPOINTS = f"results/{MODEL}/checkpoints/{TUNING}"
TUNE_LOG = f"logs/{MODEL}/tune/{TUNING}.log"
SMOKE = yaml.safe_load(SMOKE_CONFIG.read_text())
MAX_STEPS = SMOKE["train"]["max_steps"]
# `lite` must be on PATH in the jobs (sbatch --export=ALL passes this environment on)
ENV = {
    "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class CancelledTune:
    """What the first run left behind after its tune job was cancelled."""

    run: SnakemakeRun
    job_id: str  # the cancelled tune job
    log: str  # the tune command's log at the time
    checkpoint_step: int  # the newest checkpoint after the cancel
    snakemake_noticed: bool  # Snakemake ended by itself (else it was stopped with SIGINT)


def _newest_checkpoint_step(workdir: Path) -> int | None:
    steps = [
        int(path.parent.name.removeprefix("checkpoint-"))
        for path in (workdir / CHECKPOINTS).glob("checkpoint-*/trainer_state.json")
    ]
    return max(steps) if steps else None


def _wait_for(what: str, check, timeout_s: float, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if process is not None and process.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {process.returncode}) while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _running_job(run_id: str, rule: str) -> str | None:
    """The SLURM job ID of the running job of `rule` (the plugin's --comment names the rule)."""
    done = subprocess.run(
        ["squeue", "-h", "--name", run_id, "-t", "RUNNING", "-o", "%i|%k"],
        capture_output=True,
        text=True,
        check=False,
    )
    ids = [
        job
        for job, _, comment in (line.partition("|") for line in done.stdout.splitlines())
        if comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_")
    ]
    return ids[0] if ids else None


def _in_queue(job_id: str) -> bool:
    """Whether squeue still lists the job: pending, running or completing (processes being killed)."""
    done = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True, check=False
    )
    return job_id in done.stdout.split()


def _tune_processes(workdir: Path) -> list[int]:
    """PIDs of `lite tune` processes working in `workdir` (inside a SLURM job or not)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            is_tune = b"tune" in cmdline and b"--base" in cmdline and b"--checkpoint-dir" in cmdline
            if is_tune and (proc / "cwd").resolve() == workdir:
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue  # not a process, or gone meanwhile
    return pids


def _cancel_tune_midway(workdir: Path) -> CancelledTune:
    """Run the workflow up to the tuned model, `scancel` the tune job after its first checkpoint."""
    output = workdir / "run1.out"
    cmd = [sys.executable, "-m", "snakemake", "--executor", "slurm", "--profile", str(TEST_PROFILE)]
    cmd += ["--verbose", "--jobs", "2", TUNED]
    with open(output, "w") as sink:
        process = subprocess.Popen(
            cmd, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **ENV}
        )
    run_id = None
    try:
        run_id = _wait_for(
            "the SLURM run ID",
            lambda: (m := re.search(r"SLURM run ID: (\S+)", output.read_text())) and m.group(1),
            60,
            process,
        )
        # prepare_train, init_model and then tune run one after the other: allow a few minutes
        _wait_for("a tuning checkpoint", lambda: _newest_checkpoint_step(workdir), 300, process)
        job_id = _running_job(run_id, "tune")
        assert job_id is not None, "a checkpoint exists, but no running tune job"
        subprocess.run(["scancel", job_id], check=True, timeout=30)

        def cancelled() -> bool:
            states = {r["JobID"]: r["State"] for r in sacct_jobs(run_id)}
            return states.get(job_id, "").startswith("CANCELLED")

        _wait_for(f"job {job_id} CANCELLED in sacct", cancelled, 60)
        # The job step is gone once the trainer has exited (it is the step's direct child, `exec`).
        _wait_for("the job to leave the queue (COMPLETING included)", lambda: not _in_queue(job_id), 60)
        # ... and no trainer outlived its job (an orphan would still write checkpoints)
        assert _tune_processes(workdir) == [], "a lite tune process outlived its cancelled SLURM job"
        # Snakemake should now see the job fail. The plugin (2.8.0) compares sacct's state with
        # "CANCELLED", but sacct reports "CANCELLED by <uid>", so it keeps waiting: stop it as a user
        # would, with ^C (SIGINT: it cancels its jobs, none left here, and exits). Under load,
        # Snakemake 9.27 + plugin 2.8.0 sometimes hang instead (the status thread stops after
        # "Checking 1 active jobs", no "Terminating" line). What is under test is the checkpoint
        # and the resumption, not Snakemake's ^C, so after three ^C in 45 s it is killed as a user
        # would kill it (`finally` below) and the rerun goes on from there.
        try:
            process.wait(timeout=15)
            noticed = True
        except subprocess.TimeoutExpired:
            noticed = False
            for _ in range(3):
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=15)
                    break
                except subprocess.TimeoutExpired:
                    continue
    finally:
        if process.poll() is None:  # never leave Snakemake or its jobs behind
            process.kill()
            process.wait()
            if run_id is not None:
                subprocess.run(["scancel", "--name", run_id], check=False)
    subprocess.run([*cmd[:3], "--unlock", TUNED], cwd=workdir, capture_output=True, check=False, timeout=120)
    run = SnakemakeRun(workdir, process.returncode, output.read_text(), "", timed_out=False)
    return CancelledTune(
        run=run,
        job_id=job_id,
        log=(workdir / TUNE_LOG).read_text(),
        checkpoint_step=_newest_checkpoint_step(workdir),
        snakemake_noticed=noticed,  # recorded, not asserted: a later plugin may notice by itself
    )


@pytest.fixture(scope="module")
def cluster():
    return require_gpu_slurm()  # the GPU rule groups ask for --gpus=1


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """(the cancelled first run, the full second run) in one temp copy of the workflow."""
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm-dag"), SMOKE)
    first = _cancel_tune_midway(workdir)
    print(
        f"tune job {first.job_id} cancelled at step {first.checkpoint_step}; Snakemake noticed: "
        f"{first.snakemake_noticed}"
    )
    started = time.monotonic()
    second = run_snakemake(workdir, "--jobs", "2", "all", timeout_s=600, env=ENV)
    print(f"second run (whole DAG) took {time.monotonic() - started:.0f} s")
    assert second.returncode == 0, f"snakemake failed (rc {second.returncode}):\n{second.tail(8000)}"
    return first, second


@pytest.mark.slurm
def test_cancelled_tune_job_saved_a_checkpoint_on_sigterm(runs):
    first, _ = runs
    assert first.run.returncode != 0  # the workflow did not finish: its tune job was cancelled
    (record,) = [r for r in sacct_jobs(first.run.run_id) if r["JobID"] == first.job_id]
    assert record["State"].startswith("CANCELLED"), record

    # the trainer itself got SLURM's SIGTERM, finished its step, saved and exited (143)
    assert "SIGTERM received; saving a checkpoint after this step" in first.log, first.log[-3000:]
    stopped = re.search(r"stopped by SIGTERM at step (\d+)", first.log)
    assert stopped is not None, first.log[-3000:]
    step = int(stopped.group(1))
    assert 0 < step < MAX_STEPS
    # the checkpoint that SIGTERM wrote is the newest one (not only a periodic one from before)
    assert first.checkpoint_step == step


@pytest.mark.slurm
def test_rerun_resumes_the_cancelled_tuning_from_its_checkpoint(runs):
    first, second = runs
    workdir = second.workdir
    step = first.checkpoint_step
    log = (workdir / TUNE_LOG).read_text()
    assert f"(step {step})" in log and "resuming from" in log, log[-3000:]

    resolved = json.loads((workdir / TUNED / "resolved_config.json").read_text())
    assert resolved["resumed_from_step"] == step
    assert resolved["global_step"] == MAX_STEPS

    # the step count went on from the checkpoint, and the log (kept beside the checkpoints, where
    # the failed job's cleanup cannot reach it) holds both jobs' steps once each
    logs = [json.loads(line) for line in (workdir / TUNED / "train_log.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in logs if "loss" in r]
    assert logged == sorted(set(logged)) and logged[0] <= step < logged[-1]
    # and the final checkpoint's history spans both jobs, without restarting at step 0
    state = json.loads((workdir / CHECKPOINTS / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    history = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert history == sorted(set(history)) and history[0] <= step < history[-1]

    # a new SLURM job did it
    (tune_call,) = second.sbatch_calls("tune")
    records = {r["JobID"]: r for r in sacct_jobs(second.run_id)}
    (tune_job,) = [p.stem for p in second.slurm_logs("tune") if p.stem in records]
    assert tune_job != first.job_id and records[tune_job]["State"] == "COMPLETED"
    assert " --gpus=1" in tune_call


@pytest.mark.slurm
def test_whole_dag_ran_through_sbatch_and_sacct_recorded_every_job(runs):
    _, second = runs
    workdir = second.workdir
    for path in ("results/figures/fig1.pdf", "results/figures/fig6.pdf", "results/tables/table1.csv"):
        assert (workdir / path).stat().st_size > 0, path

    calls = second.sbatch_calls()
    records = sacct_jobs(second.run_id)
    by_rule = {}
    for call in calls:
        rule = re.search(r"--comment '?rule_([a-z_]+?)(?:_wildcards_\S*)?'? ", call).group(1)
        by_rule[rule] = by_rule.get(rule, 0) + 1
    # the tuning, all three decoders (final, fixed-L2, dynamic-paper) and the trace were sbatch jobs
    assert by_rule.get("tune") == 1 and by_rule.get("generate") == 3 and by_rule.get("trace") == 1, by_rule
    assert {"align", "similarity", "figure", "table"} <= set(by_rule), by_rule
    # local rules ran in the Snakemake process, never as SLURM jobs
    assert "judge" not in by_rule and "all" not in by_rule
    assert (workdir / f"results/{MODEL}/judgments/reference/vicuna").is_dir()

    # one sacct record per sbatch call, every one COMPLETED, each job with its plugin log
    assert len(records) == len(calls), (len(records), len(calls))
    assert all(r["State"] == "COMPLETED" and r["ExitCode"] == "0:0" for r in records), records
    for rule in ("tune", "generate", "trace"):
        jobs = {log.stem for log in second.slurm_logs(rule)} & {r["JobID"] for r in records}
        assert len(jobs) == by_rule[rule], (rule, jobs)
        for job in jobs:
            (record,) = [r for r in records if r["JobID"] == job]
            assert "gres/gpu=1" in record["AllocTRES"], record
    for call in second.sbatch_calls("generate"):
        assert " --gpus=1" in call and " --mem 1000 " in call and " -t 10 " in call, call


def _planned_resources(result: subprocess.CompletedProcess) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run lists, in its order."""
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = re.findall(
        r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", result.stdout + result.stderr, re.M
    )
    return [(rule, dict(item.split("=", 1) for item in listed.split(", "))) for rule, listed in jobs]


def test_smoke_config_plans_with_the_cluster_profile_and_retries_get_more_time(tmp_path):
    """docs/cluster.md's first run, `snakemake -n --profile slurm all --configfile
    configs/slurm-smoke.yaml`, plans from a copy of the workflow (no cluster needed): the GPU rules
    ask for one GPU, and every job's time limit is the config's. Snakemake passes a retried job's
    attempt to its resources (`--attempt` is how the SLURM plugin tells a job which one it is): on
    the second attempt each rule's limit is doubled, so a job stopped at its limit is not resubmitted
    to run out of time again."""
    workdir = copy_workflow(tmp_path)
    shutil.copytree(REPO / "slurm", workdir / "slurm")
    (workdir / "configs").mkdir()
    shutil.copy(SMOKE_CONFIG, workdir / "configs")
    command = ["-n", "--profile", "slurm", "all", "--configfile", "configs/slurm-smoke.yaml"]
    first = snakemake(workdir, *command, timeout=120)
    assert planned_jobs(first) == {
        "prepare_train": 1,
        "prepare_eval": 1,
        "init_model": 1,
        "tune": 1,
        "generate": 3,
        "trace": 1,
        "align": 1,
        "similarity": 1,
        "judge": 2,
        "figure": 6,
        "table": 3,
        "all": 1,
    }
    retried = _planned_resources(snakemake(workdir, *command, "--attempt", "2", timeout=120))
    # rule -> its group of the config's resources (workflow/rules/*.smk); the others are "cpu"
    groups = {"tune": "tune", "init_model": "generate", "generate": "generate", "trace": "generate"}
    gpu_rules = {"tune", "generate", "trace"}
    limits = SMOKE["resources"]
    for (rule, resources), (same_rule, retry) in zip(_planned_resources(first), retried, strict=True):
        assert same_rule == rule
        if rule == "all":  # no command: the profile's default, for a job that never reaches SLURM
            continue
        group = groups.get(rule, "cpu")
        assert int(resources["runtime"]) == limits[group]["runtime"], (rule, resources)
        assert int(retry["runtime"]) == 2 * limits[group]["runtime"], (rule, retry)
        assert resources.get("gpu") == retry.get("gpu") == ("1" if rule in gpu_rules else None), rule


def test_slurm_config_keeps_the_dag_small():
    """The smoke config plans the jobs the SLURM tests expect (checked without a cluster)."""
    import lite.plan

    plan = lite.plan.Plan(SMOKE)
    assert plan.decoders(MODEL, TUNING) == ["final", "fixed-L2", "dynamic-paper"]
    assert len(plan.all_targets()) <= 12
    assert os.path.basename(TUNED) == TUNING
