"""SLURM execution: the profiles, and real runs through sbatch on the local cluster.

    sudo bash .ci/slurm/start.sh                         # once; leaves a one-node cluster running
    .venv/bin/pytest tests/workflow/test_slurm.py -x -q  # ~1 min; `-m "not slurm"`: the profile checks only

Tests marked `slurm` skip when no cluster answers, and fail instead when env CI is `true`.
The workflows here are small Snakefiles written into tmp dirs; the end-to-end run of the real DAG
on SLURM lives with the workflow's own tests and uses the same helpers (tests/support/slurm_cluster.py).
"""

from __future__ import annotations

import os
import re
import textwrap
import time
from pathlib import Path

import pytest
from slurm_cluster import (
    REPO,
    SlurmCluster,
    probe_slurm,
    require_gpu_slurm,
    require_slurm,
    run_snakemake,
    sacct_jobs,
)
from snakemake.profiles import ProfileConfigFileParser

# Three jobs: a two-rule chain, and a rule asking for one GPU. Each output records the SLURM job
# that wrote it ($SLURM_JOB_ID exists only inside a SLURM job), and the GPU job what SLURM gave it.
SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input:
            "words.txt",
            "gpu.txt",

    rule make_text:
        output:
            "text.txt",
        shell:
            "echo \\"slurm_job_id=$SLURM_JOB_ID\\" > {output}"

    rule count_words:
        input:
            "text.txt",
        output:
            "words.txt",
        shell:
            "cat {input} > {output}; echo \\"slurm_job_id=$SLURM_JOB_ID\\" >> {output}"

    rule gpu_probe:
        output:
            "gpu.txt",
        resources:
            gpu=1,
        shell:
            "echo \\"slurm_job_id=$SLURM_JOB_ID\\" > {output}; "
            "echo \\"cuda_visible_devices=${{CUDA_VISIBLE_DEVICES:-unset}}\\" >> {output}"
    """
)

RULES = ("make_text", "count_words", "gpu_probe")
# the account .ci/slurm/start.sh created, as tests/support/slurm-profile reads it
ACCOUNT = os.environ.get("CI_SLURM_ACCOUNT") or "lite"


def _fields(path: Path) -> dict[str, list[str]]:
    """`key=value` lines of an output file, values per key in file order."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


def _parse_profile(path: Path) -> dict:
    """The profile as Snakemake reads it: YTE rendered, mappings turned into CLI strings."""
    with open(path) as stream:
        return dict(ProfileConfigFileParser().parse(stream))


# ---------------------------------------------------------------- profiles (no cluster needed)


_CLUSTER_VARS = (
    "LITE_SLURM_ACCOUNT",
    "LITE_SLURM_PARTITION",
    "LITE_SLURM_GPU_PARTITION",
    "LITE_SLURM_GPU_MODEL",
    "LITE_SLURM_GPU_CONSTRAINT",
    "LITE_SLURM_QOS",
)


def test_cluster_profile_leaves_unset_cluster_options_out(monkeypatch):
    for name in _CLUSTER_VARS:
        monkeypatch.delenv(name, raising=False)
    profile = _parse_profile(REPO / "slurm" / "config.yaml")

    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "sacct"
    assert profile["slurm-requeue"] == "True"
    assert "slurm-qos" not in profile and "set-resources" not in profile
    defaults = profile["default-resources"]
    assert not [item for item in defaults if item.startswith(("slurm_account=", "slurm_partition="))]
    assert {"mem_mb=8000", "runtime=120", "cpus_per_task=threads"} <= set(defaults)


def test_cluster_profile_takes_cluster_options_from_the_environment(monkeypatch):
    for name in _CLUSTER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LITE_SLURM_ACCOUNT", "proj42")
    monkeypatch.setenv("LITE_SLURM_PARTITION", "cpu")
    monkeypatch.setenv("LITE_SLURM_QOS", "long")
    profile = _parse_profile(REPO / "slurm" / "config.yaml")

    assert profile["slurm-qos"] == "long"
    assert {"slurm_account=proj42", "slurm_partition=cpu"} <= set(profile["default-resources"])
    # without a GPU partition of their own, GPU rules use the CPU partition (the default resource)
    assert "set-resources" not in profile

    monkeypatch.setenv("LITE_SLURM_GPU_PARTITION", "gpu")
    monkeypatch.setenv("LITE_SLURM_GPU_MODEL", "a100")
    monkeypatch.setenv("LITE_SLURM_GPU_CONSTRAINT", "a100_80g")
    gpu_rules = set(_parse_profile(REPO / "slurm" / "config.yaml")["set-resources"])
    for rule in ("tune", "generate", "trace", "trace_calibration"):
        assert {
            f"{rule}:slurm_partition=gpu",
            f"{rule}:gpu_model=a100",
            f"{rule}:constraint=a100_80g",
        } <= gpu_rules
    # sizes (gpu, mem_mb, runtime, threads) come from the workflow config, never from the profile
    assert not [item for item in gpu_rules if re.search(r":(gpu|mem_mb|runtime|cpus_per_task)=", item)]


def test_test_profile_polls_fast_and_keeps_logs():
    profile = _parse_profile(REPO / "tests" / "support" / "slurm-profile" / "config.yaml")
    assert profile["slurm-init-seconds-before-status-checks"] == "1"
    assert profile["seconds-between-status-checks"] == "1"
    assert profile["slurm-keep-successful-logs"] == "True"


def test_missing_cluster_skips_locally_and_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo, sbatch, ... on PATH
    assert "not on PATH" in probe_slurm()

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"\.ci/slurm/start\.sh"):
        require_slurm()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"\.ci/slurm/start\.sh"):
        require_slurm()


# ---------------------------------------------------------------- runs on the cluster


@pytest.fixture(scope="module")
def cluster() -> SlurmCluster:
    return require_gpu_slurm()


@pytest.fixture(scope="module")
def workflow_run(cluster, tmp_path_factory):
    """The three-job workflow, run once through sbatch for all tests below."""
    workdir = tmp_path_factory.mktemp("slurm-workflow")
    (workdir / "Snakefile").write_text(SNAKEFILE)
    run = run_snakemake(workdir, "all", timeout_s=240)
    assert run.returncode == 0, f"snakemake failed (rc {run.returncode}):\n{run.tail()}"
    return run


@pytest.mark.slurm
def test_rules_run_as_sbatch_jobs_recorded_by_sacct(cluster, workflow_run):
    run = workflow_run
    assert run.run_id is not None, run.tail()

    # every rule was submitted exactly once, under the run's job name and the test account
    for rule in RULES:
        calls = run.sbatch_calls(rule)
        assert len(calls) == 1, f"{rule}: {calls}"
        assert f"--job-name {run.run_id} " in calls[0]
        assert f" -A {ACCOUNT} " in calls[0]

    # the job IDs the jobs saw, the IDs in the plugin's log file names and sacct's records agree
    seen = {
        "make_text": _fields(run.workdir / "text.txt")["slurm_job_id"],
        "count_words": _fields(run.workdir / "words.txt")["slurm_job_id"][1:],
        "gpu_probe": _fields(run.workdir / "gpu.txt")["slurm_job_id"],
    }
    job_ids = {}
    for rule in RULES:
        assert len(seen[rule]) == 1 and seen[rule][0].isdigit(), f"{rule} did not run in a SLURM job: {seen}"
        job_ids[rule] = seen[rule][0]
        assert [log.stem for log in run.slurm_logs(rule)] == [job_ids[rule]]
    assert len(set(job_ids.values())) == 3, f"each rule needs its own job: {job_ids}"
    # the chain ran in order: make_text's output, copied by count_words, names make_text's job
    assert _fields(run.workdir / "words.txt")["slurm_job_id"][0] == job_ids["make_text"]

    records = {record["JobID"]: record for record in sacct_jobs(run.run_id)}
    assert set(records) == set(job_ids.values())
    for record in records.values():
        assert record["State"] == "COMPLETED" and record["ExitCode"] == "0:0", record
        assert record["Account"] == ACCOUNT and record["Partition"] == cluster.partition, record


@pytest.mark.slurm
def test_gpu_resource_becomes_gpus_option_and_job_sees_a_device(cluster, workflow_run):
    run = workflow_run
    (gpu_call,) = run.sbatch_calls("gpu_probe")
    assert " --gpus=1" in gpu_call
    # no GPU option, and one task, for the CPU rules
    for rule in ("make_text", "count_words"):
        (call,) = run.sbatch_calls(rule)
        assert "--gpus" not in call and "--gres" not in call
        assert "--ntasks=1" in call

    probe = _fields(run.workdir / "gpu.txt")
    (devices,) = probe["cuda_visible_devices"]
    assert devices != "unset", "the GPU job got no CUDA_VISIBLE_DEVICES"
    assert devices.isdigit() and int(devices) < cluster.gpus, f"expected one device index, got {devices!r}"

    (record,) = [r for r in sacct_jobs(run.run_id) if r["JobID"] == probe["slurm_job_id"][0]]
    assert "gres/gpu=1" in record["AllocTRES"], record


@pytest.mark.slurm
def test_cluster_profile_runs_a_gpu_rule_on_the_gpu_partition(cluster, tmp_path):
    """slurm/config.yaml itself: a `generate` rule with its own sizes, placed by the profile."""
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            rule generate:
                output:
                    "out.txt",
                resources:
                    gpu=1,
                    mem_mb=300,
                    runtime=3,
                shell:
                    "echo \\"slurm_job_id=$SLURM_JOB_ID\\" > {output}"
            """
        )
    )
    env = {"LITE_SLURM_ACCOUNT": ACCOUNT, "LITE_SLURM_GPU_PARTITION": cluster.partition}
    fast = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1"]
    run = run_snakemake(tmp_path, "out.txt", *fast, profile=REPO / "slurm", timeout_s=180, env=env)
    assert run.returncode == 0, run.tail()

    (call,) = run.sbatch_calls("generate")
    # placement from the profile; sizes from the rule, untouched by the profile's set-resources
    for option in (
        f" -A {ACCOUNT} ",
        f" -p {cluster.partition} ",
        " --gpus=1",
        " --mem 300 ",
        " -t 3 ",
        " --requeue",
    ):
        assert option in call, f"{option!r} missing from {call}"
    assert call.startswith(f"sbatch --parsable --job-name {run.run_id} ") and run.run_id.startswith("lite_")
    (record,) = sacct_jobs(run.run_id)
    assert record["JobID"] == _fields(tmp_path / "out.txt")["slurm_job_id"][0]
    assert record["State"] == "COMPLETED" and "gres/gpu=1" in record["AllocTRES"], record


@pytest.mark.slurm
def test_killed_run_is_unlocked_and_its_jobs_cancelled(cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(
        'rule slow:\n    output: "slow.txt"\n    shell: "sleep 600; touch {output}"\n'
    )
    run = run_snakemake(tmp_path, "slow.txt", timeout_s=10)

    assert run.timed_out, f"expected a timeout, got rc {run.returncode}:\n{run.tail()}"
    assert not list((tmp_path / ".snakemake" / "locks").glob("*")), "the workflow is still locked"
    assert run.run_id is not None, run.tail()
    for _ in range(20):  # the accounting database learns of the cancel a moment later
        states = {record["State"].split()[0] for record in sacct_jobs(run.run_id)}
        if states and states <= {"CANCELLED"}:
            break
        time.sleep(0.5)
    assert states and states <= {"CANCELLED"}, states
