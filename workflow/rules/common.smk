# Config validation, wildcard constraints and input functions. The logic lives in lite.plan
# (unit-tested); the functions here only adapt it to Snakemake's wildcards.

import json
import re

import lite.plan
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")
lite.plan.check_config(config)
PLAN = lite.plan.Plan(config)

if config["judge"]["name"] == "claude":
    # Fail before any GPU work when the judge could not run at the end.
    import lite.judge

    lite.judge.check_claude_ready(config["judge"]["claude"])


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=_alternatives(PLAN.models),
    tuning="it|lite|lite_weighted",
    evalset=_alternatives([*PLAN.evalsets, lite.plan.CALIBRATION_SET]),
    decoder=r"final|fixed-L\d+|dynamic-(paper|aggressive|calibrated)|random-half|random-k|sequential",
    judge="reference|claude",
    pair=r"[a-z_]+\.[A-Za-z0-9-]+~[a-z_]+\.[A-Za-z0-9-]+",
    artefact=_alternatives([*lite.plan.FIGURES, *lite.plan.TABLES]),


def all_targets():
    return PLAN.all_targets()


def resource(group, key, default=None):
    """A per-rule-group resource from config (the only machine-specific config section)."""
    return config["resources"].get(group, {}).get(key, default)


def data_source(wildcards):
    """The config slice of one eval set (or the calibration set)."""
    if wildcards.evalset == lite.plan.CALIBRATION_SET:
        return config["data"]["calibration"]
    return config["data"]["eval"][wildcards.evalset]


def source_args(source):
    args = f"--source {source['source']}"
    if source.get("n") is not None:
        args += f" --n {source['n']}"
    if source.get("seed") is not None:
        args += f" --seed {source['seed']}"
    if source.get("path") is not None:
        args += f" --path {source['path']}"
    return args


def checkpoints_arg(wildcards):
    return ",".join(map(str, PLAN.checkpoints(wildcards.model)))


def decoder_inputs(wildcards):
    inputs = {
        "model": PLAN.tuned(wildcards.model, wildcards.tuning),
        "evalset": PLAN.eval_data(wildcards.evalset),
    }
    if wildcards.decoder == "dynamic-calibrated":
        inputs["thresholds"] = PLAN.thresholds(wildcards.model)
    return inputs


def thresholds_arg(wildcards, input):
    """``--thresholds`` for dynamic decoders. As a params entry it carries the configured values,
    so editing them reruns that decoder and what follows, never tuning."""
    if wildcards.decoder == "dynamic-calibrated":
        return f"--thresholds {input.thresholds}"
    if wildcards.decoder.startswith("dynamic-"):
        kind = wildcards.decoder.removeprefix("dynamic-")
        values = config["models"][wildcards.model]["thresholds"][kind]
        return f"--thresholds '{json.dumps(values, sort_keys=True)}'"
    return ""


def judge_inputs(wildcards):
    a, b = wildcards.pair.split("~")
    tuning_a, decoder_a = a.split(".", 1)
    tuning_b, decoder_b = b.split(".", 1)
    return {
        "a": PLAN.generation(wildcards.model, tuning_a, wildcards.evalset, decoder_a),
        "b": PLAN.generation(wildcards.model, tuning_b, wildcards.evalset, decoder_b),
    }


def judge_args():
    settings = config["judge"]
    if settings["name"] != "claude":
        return "--judge reference"
    claude = settings["claude"]
    args = [
        "--judge claude",
        f"--model {claude['model']}",
        f"--max-tokens {claude['max_tokens']}",
        f"--prompt {claude['prompt']}",
        f"--sampling {claude['sampling']}",
        f"--concurrency {claude['concurrency']}",
        "--cache-dir results/judge_cache",
        "--cost-table results/judge_cost.csv",
    ]
    if claude.get("batches"):
        args.append("--batches")
    return " ".join(args)


def artefact_inputs(wildcards):
    return PLAN.artefact_inputs(wildcards.artefact)


def artefact_args(wildcards):
    if wildcards.artefact in ("fig9", "fig10"):
        return f"--evalset {PLAN.category_evalset(wildcards.artefact)}"
    return ""
