"""Helpers for tests that run Snakemake on the local SLURM cluster of `.ci/slurm/start.sh`.

    from slurm_cluster import require_slurm, run_snakemake, sacct_jobs

    cluster = require_slurm()              # skips, or fails when CI=true, if SLURM is not up
    run = run_snakemake(workdir, "all")    # snakemake --executor slurm --profile tests/support/slurm-profile
    assert run.returncode == 0, run.tail()
    jobs = sacct_jobs(run.run_id)          # what SLURM's accounting recorded for this run

The module imports nothing beyond the standard library and pytest, so tests of any stage can use
it. Snakemake runs as a subprocess under `timeout --kill-after`: when the executor loses track of
a job it can loop forever and ignore SIGTERM, and a test must never hang a CI machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_PROFILE = REPO / "tests" / "support" / "slurm-profile"
START_HINT = "start it with `sudo bash .ci/slurm/start.sh` (stop it with `.ci/slurm/stop.sh`)"

# sacct fields read by sacct_jobs; AllocTRES shows GPUs as gres/gpu=N (the cluster tracks them).
_SACCT_FIELDS = ("JobID", "JobName", "State", "Account", "Partition", "AllocTRES", "ExitCode")


@dataclass(frozen=True)
class SlurmCluster:
    """What the local cluster offers, as sinfo reports it."""

    partition: str  # the default partition
    node: str
    cpus: int
    gpus: int  # GRES gpu count on the node (0 without GPUs)


def _run(cmd: list[str], timeout_s: float = 20, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd, check=False)


def probe_slurm() -> SlurmCluster | str:
    """The cluster if slurmctld answers, a node is usable and sacct works; else why not."""
    for tool in ("sinfo", "scontrol", "sbatch", "sacct"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH: SLURM is not installed"
    try:
        ping = _run(["scontrol", "ping"])
        if ping.returncode != 0 or "UP" not in ping.stdout:
            return f"slurmctld does not answer `scontrol ping`: {(ping.stdout + ping.stderr).strip()}"
        # e.g. "debug*|idle|2|gpu:2|vm" (the * marks the default partition)
        info = _run(["sinfo", "-h", "-o", "%P|%T|%c|%G|%N"])
        # sacct fails ("accounting storage is disabled") without slurmdbd; the profiles poll with it
        acct = _run(["sacct", "-n", "-X", "-j", "1"])
    except subprocess.TimeoutExpired as err:
        return f"`{' '.join(err.cmd)}` timed out"
    if acct.returncode != 0:
        return f"`sacct` does not work (no slurmdbd?): {acct.stderr.strip()}"
    rows = [line.split("|") for line in info.stdout.splitlines() if line.count("|") == 4]
    usable = [row for row in rows if row[1].rstrip("*~#") in ("idle", "mixed", "allocated")]
    if not usable:
        return f"no usable node (sinfo: {info.stdout.strip() or info.stderr.strip()})"
    default = next((row for row in usable if row[0].endswith("*")), usable[0])
    partition, _, cpus, gres, node = default
    gpu_match = re.search(r"gpu(?::[^:(,]+)?:(\d+)", gres)
    return SlurmCluster(
        partition=partition.rstrip("*"),
        node=node,
        cpus=int(cpus),
        gpus=int(gpu_match.group(1)) if gpu_match else 0,
    )


def require_slurm() -> SlurmCluster:
    """The local cluster; without one, skip the test, or fail it when env CI is `true`.

    CI is expected to have started the cluster (`.ci/run` calls `.ci/slurm/start.sh`), so a
    missing cluster there is a broken CI set-up, never a silently skipped check.
    """
    found = probe_slurm()
    if isinstance(found, SlurmCluster):
        return found
    _unavailable(f"SLURM is not reachable ({found}); {START_HINT}")


def require_gpu_slurm() -> SlurmCluster:
    """``require_slurm``, for tests whose rules ask for ``--gpus=1``: the node needs GPU GRES."""
    found = require_slurm()
    if found.gpus < 1:
        _unavailable("the SLURM node has no GPU GRES; restart .ci/slurm/start.sh with CI_SLURM_GPUS=2")
    return found


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass
class SnakemakeRun:
    """One finished (or killed) Snakemake run."""

    workdir: Path
    returncode: int
    output: str  # stdout + stderr
    log: str  # the run's .snakemake/log/*.snakemake.log ("" if none was written)
    timed_out: bool

    @property
    def run_id(self) -> str | None:
        """The plugin's run ID; it is the SLURM job name of every job of this run."""
        match = re.search(r"SLURM run ID: (\S+)", self.output)
        return None if match is None else match.group(1)

    def sbatch_calls(self, rule: str | None = None) -> list[str]:
        """The sbatch command lines the plugin ran (needs --verbose), optionally of one rule."""
        calls = re.findall(r"^sbatch call: (sbatch .*)$", self.log, flags=re.MULTILINE)
        if rule is None:
            return calls
        return [call for call in calls if re.search(rf"--comment '?rule_{rule}(?:_wildcards_\S*)?'? ", call)]

    def slurm_logs(self, rule: str) -> list[Path]:
        """The plugin's per-job logs of one rule, `.snakemake/slurm_logs/rule_<rule>/.../<jobid>.log`."""
        return sorted((self.workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob("*.log"))

    def tail(self, n_chars: int = 4000) -> str:
        """The end of the output, for assertion messages."""
        return self.output[-n_chars:]


def _latest_log(workdir: Path) -> str:
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text() if logs else ""


def run_snakemake(
    workdir: Path,
    *args: str,
    profile: Path = TEST_PROFILE,
    timeout_s: int = 300,
    env: dict[str, str] | None = None,
) -> SnakemakeRun:
    """Run `snakemake --executor slurm --profile <profile> --verbose <args>` in `workdir`.

    Killed after `timeout_s` (SIGKILL 30 s after SIGTERM). After a killed run the workflow is
    unlocked and the run's SLURM jobs are cancelled, so the next run starts clean.
    """
    snakemake = [sys.executable, "-m", "snakemake"]
    # SIGINT, not timeout's default SIGTERM: on SIGTERM Snakemake waits for its running jobs to
    # finish, on SIGINT it cancels them (scancel) and exits.
    cmd = ["timeout", "--signal=INT", "--kill-after=30", str(timeout_s), *snakemake]
    cmd += ["--executor", "slurm", "--profile", str(profile), "--verbose", *args]
    done = subprocess.run(
        cmd,
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    run = SnakemakeRun(
        workdir=workdir,
        returncode=done.returncode,
        output=done.stdout + done.stderr,
        log=_latest_log(workdir),
        # 124: timeout sent SIGTERM and Snakemake exited; 137 (-9 via subprocess): SIGKILL
        timed_out=done.returncode in (124, 137, -9),
    )
    if run.timed_out:
        if run.run_id is not None:
            _run(["scancel", "--name", run.run_id])
        _run([*snakemake, "--unlock", *args], timeout_s=120, cwd=workdir)
    return run


def sacct_jobs(job_name: str) -> list[dict[str, str]]:
    """Accounting records (one per job, steps left out) of all jobs with this job name."""
    cmd = ["sacct", "-X", "-n", "-P", "-S", "now-7days", "--name", job_name]
    done = _run([*cmd, "-o", ",".join(_SACCT_FIELDS)])
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return [
        dict(zip(_SACCT_FIELDS, line.split("|"), strict=True)) for line in done.stdout.splitlines() if line
    ]
