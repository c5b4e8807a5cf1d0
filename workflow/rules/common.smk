# Config validation, wildcard constraints and resources. The rules' input and params functions
# are lite.jobs.Jobs methods (unit-tested), the paths lite.plan.Plan's.

import re

import lite.decoders.names
import lite.download
import lite.jobs
import lite.judge
import lite.judge.settings
import lite.plan
from lite.flags import flag_args
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")
lite.plan.check_config(config)
PLAN = lite.plan.Plan(config)
JOBS = lite.jobs.Jobs(PLAN)
SHARDS = PLAN.shards  # generation.shards (lite.plan.Plan.shards)

# Judge settings are checked while parsing (dry runs too); the API key and the endpoint only when
# a real run that judges with Claude starts, before its first job, so planning needs no secret
# and no GPU hour is spent on a run whose judging could not happen.
lite.judge.check_judge_config(config)


onstart:
    if any(job.rule.name == "judge" for job in workflow.dag.needrun_jobs()):
        lite.judge.check_claude_ready(config, probe=True)


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=_alternatives(PLAN.all_models()),
    tuning=_alternatives(config["tunings"]),
    evalset=_alternatives([*PLAN.evalsets, lite.plan.CALIBRATION_SET]),
    decoder=lite.decoders.names.WORKFLOW_DECODERS,
    judge=_alternatives(lite.judge.settings.WORKFLOW_JUDGES),
    source=_alternatives(lite.download.SOURCES),
    pair=r"[a-z_]+\.[A-Za-z0-9.-]+~[a-z_]+\.[A-Za-z0-9.-]+",
    artefact=_alternatives(lite.plan.ARTEFACTS),
    shard=r"\d+",
    nshards=str(SHARDS),
    calibrated_kind=_alternatives(PLAN.calibrated_kinds()),


def resource(group, key, default=None):
    """A per-rule-group resource from config (the only machine-specific config section)."""
    return config["resources"].get(group, {}).get(key, default)


def runtime_per_attempt(group):
    """The group's ``runtime`` (minutes) times Snakemake's attempt: a job resubmitted after hitting its
    time limit (SLURM's TIMEOUT, then the profile's ``retries``) gets more time, not the same limit
    to run out of again. None (no limit in the config) stays None."""
    minutes = resource(group, "runtime")

    def scaled(wildcards, attempt):
        return None if minutes is None else minutes * attempt

    return scaled
