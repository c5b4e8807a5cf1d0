# Config validation, wildcard constraints and input functions. The logic lives in lite.plan
# (unit-tested); the functions here only adapt it to Snakemake's wildcards.

import json
import re

import lite.decoders.specs
import lite.download
import lite.human.settings
import lite.judge
import lite.judge.settings
import lite.judge.openai_compat
import lite.plan
import lite.shards
from lite.flags import flag_args
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")
lite.plan.check_config(config)
PLAN = lite.plan.Plan(config)

# Judge settings are checked while parsing (dry runs too); the API key and the endpoint only when
# a real run that judges with Claude starts, before its first job, so planning needs no secret
# and no GPU hour is spent on a run whose judging could not happen.
lite.judge.check_judge_config(config)


onstart:
    if any(job.rule.name == "judge" for job in workflow.dag.needrun_jobs()):
        lite.judge.check_claude_ready(config, probe=True)


# generation.shards > 1: each eval set's generations and traces run as that many jobs, each on
# every N-th prompt, merged on the submitting host (rules merge_generations, merge_traces).
SHARDS = config["generation"].get("shards", 1)


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=_alternatives(PLAN.all_models()),
    tuning=_alternatives(config["tunings"]),
    evalset=_alternatives([*PLAN.evalsets, lite.plan.CALIBRATION_SET]),
    decoder=lite.decoders.specs.WORKFLOW_DECODERS,
    judge=_alternatives(lite.judge.settings.WORKFLOW_JUDGES),
    source=_alternatives(lite.download.SOURCES),
    pair=r"[a-z_]+\.[A-Za-z0-9.-]+~[a-z_]+\.[A-Za-z0-9.-]+",
    artefact=_alternatives(lite.plan.ARTEFACTS),
    shard=r"\d+",
    nshards=str(SHARDS),
    calibrated_kind=_alternatives(PLAN.calibrated_kinds()),


def all_targets():
    return PLAN.all_targets()


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


def data_source(wildcards):
    """The config slice of one eval set (or the calibration set)."""
    if wildcards.evalset == lite.plan.CALIBRATION_SET:
        return config["data"]["calibration"]
    return config["data"]["eval"][wildcards.evalset]


def eval_source_file(wildcards):
    return source_file(data_source(wildcards))


def eval_source_args(wildcards):
    return source_args(data_source(wildcards))


def source_args(source):
    """Command-line flags of one data source (its file comes in as the rule's input)."""
    args = [f"--source {source['source']}"]
    if source.get("n") is not None:
        args.append(f"--n {source['n']}")
    if source.get("seed") is not None:
        args.append(f"--seed {source['seed']}")
    if source.get("verify") is False:
        args.append("--no-verify")
    if source["source"] == "synthetic" and config["data"].get("families"):
        args.append(f"--families {','.join(config['data']['families'])}")
    return " ".join(args)


def source_file(source):
    """The raw file a data source is read from: a local copy, or the pinned download."""
    if source["source"] == "synthetic":
        return []
    return source.get("path") or f"results/downloads/{source['source']}"


def path_arg(wildcards, input):
    return f"--path {input[0]}" if len(input) else ""


def corpus_args(wildcards):
    """Flags of ``data.corpus``, read only for a prepare_corpus job (configs without a corpus have none)."""
    return flag_args(config["data"]["corpus"])


def init_model_inputs(wildcards):
    """The train set (the tokenizer learns from it) and, for a pretrained tiny model, the corpus."""
    inputs = {"train": "results/data/train.jsonl"}
    if PLAN.pretrains(wildcards.model):
        inputs["corpus"] = lite.plan.Plan.CORPUS
    return inputs


def init_model_args(wildcards):
    base = PLAN.model_config(wildcards.model)["base"]
    return flag_args({key: value for key, value in base.items() if key != "n_layers"})


def checkpoints_arg(wildcards):
    return ",".join(map(str, PLAN.checkpoints(wildcards.model)))


def early_checkpoints_arg(wildcards):
    return ",".join(map(str, PLAN.early_checkpoints(wildcards.model)))


def calibration_target(wildcards):
    return PLAN.calibrated_kinds()[wildcards.calibrated_kind]


def decoded_sets(kind):
    """The eval sets one generate or trace job decodes: every configured eval set, or (kind
    "calibration trace") the calibration set alone."""
    if kind == "calibration trace":
        return [lite.plan.CALIBRATION_SET]
    return list(PLAN.evalsets)


def decoded_files(kind):
    """The output files of one generate ("generation") or trace job: one per eval set it decodes,
    or one shard of each with generation.shards > 1."""
    paths = []
    for evalset in decoded_sets(kind):
        if kind == "generation":
            path = PLAN.generation("{model}", "{tuning}", evalset, "{decoder}")
        else:
            path = PLAN.trace("{model}", "{tuning}", evalset)
        paths.append(
            path
            if SHARDS == 1
            else lite.shards.shard_file(path, "{shard}", "{nshards}")
        )
    return paths


def evalset_args(kind):
    """``--evalset FILE --evalset-name NAME --out OUT`` per eval set of the job, outputs in order."""
    names = decoded_sets(kind)

    def args(wildcards, output):
        return " ".join(
            f"--evalset {PLAN.eval_data(name)} --evalset-name {name} --out {out}"
            for name, out in zip(names, output, strict=True)
        )

    return args


def trace_inputs(kind):
    """The tuned model and the eval sets a trace job (``kind`` as in ``decoded_sets``) reads."""
    sets = decoded_sets(kind)

    def inputs(wildcards):
        return {
            "model": PLAN.tuned(wildcards.model, wildcards.tuning),
            "evalsets": [PLAN.eval_data(name) for name in sets],
        }

    return inputs


def decoder_inputs(wildcards):
    """The tuned model, every eval set, and the thresholds file of a calibrated decoder."""
    inputs = {
        "model": PLAN.tuned(wildcards.model, wildcards.tuning),
        "evalsets": [PLAN.eval_data(name) for name in decoded_sets("generation")],
    }
    threshold_set = lite.decoders.specs.decoder_name(wildcards.decoder).threshold_set
    if threshold_set in PLAN.calibrated_kinds():
        inputs["thresholds"] = PLAN.thresholds(wildcards.model, threshold_set)
    return inputs


def thresholds_arg(wildcards):
    """``--thresholds`` for dynamic decoders. A params entry of wildcards alone (Snakemake leaves
    params that read ``input`` out of its rerun check), so editing the configured values reruns
    that decoder and what follows, never tuning; calibrated ones rerun through their input file.
    """
    decoder = lite.decoders.specs.decoder_name(wildcards.decoder)
    if decoder.threshold_set is None:
        return ""
    if decoder.threshold_set in PLAN.calibrated_kinds():
        return f"--thresholds {PLAN.thresholds(wildcards.model, decoder.threshold_set)}"
    values = PLAN.model_config(wildcards.model)["thresholds"][decoder.threshold_set]
    if decoder.scale is not None:  # a sweep point
        values = lite.plan.scaled_thresholds(values, decoder.scale)
    return f"--thresholds '{json.dumps(values, sort_keys=True)}'"


def device_args():
    """``--device D --dtype T`` of generate, trace and latency (generation.device / generation.dtype)."""
    generation = config["generation"]
    return f"--device {generation.get('device', 'cpu')} --dtype {generation.get('dtype', 'float32')}"


def shard_args(wildcards):
    """``--shard I --num-shards N`` for one shard's job; nothing when generation is not sharded."""
    if not hasattr(wildcards, "shard"):
        return ""
    return f"--shard {wildcards.shard} --num-shards {wildcards.nshards}"


def generation_shards(wildcards):
    """The shard files merged into one generation file (generation.shards > 1)."""
    merged = PLAN.generation(
        wildcards.model, wildcards.tuning, wildcards.evalset, wildcards.decoder
    )
    return lite.shards.shard_files(merged, SHARDS)


def trace_shards(wildcards):
    """The shard files merged into one trace file (generation.shards > 1)."""
    merged = PLAN.trace(wildcards.model, wildcards.tuning, wildcards.evalset)
    return lite.shards.shard_files(merged, SHARDS)


def judge_inputs(wildcards):
    a, b = wildcards.pair.split("~")
    tuning_a, decoder_a = a.split(".", 1)
    tuning_b, decoder_b = b.split(".", 1)
    return {
        "a": PLAN.generation(wildcards.model, tuning_a, wildcards.evalset, decoder_a),
        "b": PLAN.generation(wildcards.model, tuning_b, wildcards.evalset, decoder_b),
    }


def artefact_inputs(wildcards):
    return PLAN.artefact_inputs(wildcards.artefact)


def artefact_args(wildcards):
    return PLAN.artefact_args(wildcards.artefact)


def artefact_labels(wildcards):
    return lite.plan.Plan.report_labels(wildcards.artefact)


def figure_category(wildcards):
    return lite.plan.Plan.report_category(wildcards.artefact, "figure")


def table_category(wildcards):
    return lite.plan.Plan.report_category(wildcards.artefact, "table")


def table_labels(file):
    """Report labels of a table's ``file`` ("table": the HTML view, "CSV": the download)."""

    def labels(wildcards):
        return {**lite.plan.Plan.report_labels(wildcards.artefact), "file": file}

    return labels


# ---- human ratings (workflow/rules/human.smk)


def second_judge_args(wildcards):
    return lite.judge.openai_compat.second_cli_args(config)


def table5_inputs(wildcards):
    return lite.human.settings.table5_rule_inputs(PLAN)


def table5_args(wildcards):
    return lite.human.settings.table5_rule_args(PLAN)


# ---- tuning (tune.smk) ----


def corpus_arg(wildcards, input):
    return f"--corpus {input.corpus}" if "corpus" in input.keys() else ""


def tuning_base(wildcards):
    return PLAN.tuning_base(wildcards.model)


def tuning_scheme(wildcards):
    return config["tunings"][wildcards.tuning]["scheme"]


def tuning_loss_args(wildcards):
    """The tuning's loss settings beside its scheme (final_weight, intermediate_ramp, exit_target)
    as flags."""
    entry = config["tunings"][wildcards.tuning]
    return flag_args(
        {k: v for k, v in entry.items() if k not in ("scheme", "max_steps")}
    )


def tuning_train_args(wildcards):
    """train's settings as flags but max_steps (it comes per tuning), with the model's seed (a
    seed replica's own)."""
    settings = {k: v for k, v in config["train"].items() if k != "max_steps"}
    if wildcards.model in PLAN.replica_seeds:
        settings["seed"] = PLAN.train_seed(wildcards.model)
    return flag_args(settings)


def generation_seed(wildcards):
    return PLAN.generation_seed(wildcards.model)


def seeds_inputs(wildcards):
    return PLAN.seeds_inputs()


def tuning_max_steps(wildcards):
    """The tuning's own max_steps, else the shared train.max_steps."""
    return config["tunings"][wildcards.tuning].get(
        "max_steps", config["train"]["max_steps"]
    )


# ---- latency benchmark (latency.smk) ----


def latency_inputs(wildcards):
    """The LITE model, the prompts and, for the acceptance table, the main model's other tunings."""
    main = PLAN.main
    inputs = {
        "model": PLAN.tuned(main, "lite"),
        "evalset": PLAN.eval_data(config["bench"]["evalset"]),
    }
    if config["bench"]["thresholds"] in PLAN.calibrated_kinds():
        inputs["thresholds"] = PLAN.thresholds(main, config["bench"]["thresholds"])
    for tuning in PLAN.tunings(main):
        if tuning != "lite":
            inputs[f"compare_{tuning}"] = PLAN.tuned(main, tuning)
    return inputs


def latency_compare_args(wildcards, input):
    """``--compare NAME=DIR`` for each of the main model's other tunings."""
    return " ".join(
        f"--compare {name.removeprefix('compare_')}={path}"
        for name, path in input.items()
        if name.startswith("compare_")
    )


def latency_thresholds_arg(wildcards):
    """``--thresholds``: the calibrated file, or the named configured set as quoted JSON."""
    name = config["bench"]["thresholds"]
    if name in PLAN.calibrated_kinds():
        return PLAN.thresholds(PLAN.main, name)
    values = config["models"][PLAN.main]["thresholds"][name]
    return f"'{json.dumps(values, sort_keys=True)}'"


def latency_checkpoints_arg(wildcards):
    return ",".join(map(str, PLAN.checkpoints(PLAN.main)))


def latency_category_arg(wildcards):
    """``--category C`` where bench.category names one; nothing decodes every category."""
    category = config["bench"].get("category")
    return f"--category {category}" if category else ""
