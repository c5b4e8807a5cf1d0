# Generation: every decoder on every eval set, traces of every layer, calibrated thresholds.
# With generation.shards = N > 1, each generate/trace job runs every N-th prompt and writes under
# results/{model}/shards/; merge_generations and merge_traces join the N files at the usual paths.


# One generate job per decoder decodes every eval set, and one trace job per tuning traces them:
# the model is loaded, and torch and transformers imported, once per job rather than once per eval
# set (on a CPU the imports take longer than decoding a tiny model's set). Results stay one file
# per eval set, so everything after this reads, and reruns, per set and decoder.
rule generate:
    input:
        unpack(JOBS.decoder_inputs),
    output:
        JOBS.decoded_files("generation"),
    log:
        JOBS.per_shard("logs/{model}/generate/{tuning}/{decoder}.log"),
    benchmark:
        JOBS.per_shard("results/benchmarks/{model}/generate/{tuning}/{decoder}.tsv")
    conda:
        "../../envs/model.yaml"
    threads: resource("generate", "cpus", 1)
    resources:
        mem_mb=resource("generate", "mem_mb"),
        runtime=runtime_per_attempt("generate"),
        gpu=resource("generate", "gpus", 0),
    params:
        evalsets=JOBS.evalset_args("generation"),
        checkpoints=JOBS.checkpoints_arg,
        thresholds=JOBS.thresholds_arg,
        max_new_tokens=PLAN.generation_settings["max_new_tokens"],
        batch_size=PLAN.generation_settings["batch_size"],
        seed=JOBS.generation_seed,
        kv_cache="--kv-cache" if PLAN.generation_settings["kv_cache"] else "",
        shard=JOBS.shard_args,
        device=JOBS.device_args(),
        agreement=PLAN.generation_settings["agreement_prompts"],
    shell:
        "lite generate --model {input.model} {params.evalsets} --decoder {wildcards.decoder}"
        " --model-name {wildcards.model} --tuning {wildcards.tuning}"
        " --checkpoints {params.checkpoints} {params.thresholds} {params.kv_cache}"
        " --max-new-tokens {params.max_new_tokens} --batch-size {params.batch_size} --seed {params.seed}"
        " {params.device} --agreement-prompts {params.agreement}"
        " {params.shard} --threads {threads} > {log} 2>&1"


# The eval sets' traces of one tuning in one job; the calibration set's (LITE only) in its own, as
# the calibrated thresholds wait for it alone.
rule trace:
    input:
        unpack(JOBS.trace_inputs("trace")),
    output:
        JOBS.decoded_files("trace"),
    log:
        JOBS.per_shard("logs/{model}/trace/{tuning}.log"),
    benchmark:
        JOBS.per_shard("results/benchmarks/{model}/trace/{tuning}.tsv")
    conda:
        "../../envs/model.yaml"
    threads: resource("generate", "cpus", 1)
    resources:
        mem_mb=resource("generate", "mem_mb"),
        runtime=runtime_per_attempt("generate"),
        gpu=resource("generate", "gpus", 0),
    params:
        evalsets=JOBS.evalset_args("trace"),
        max_new_tokens=PLAN.generation_settings["max_new_tokens"],
        batch_size=PLAN.generation_settings["batch_size"],
        shard=JOBS.shard_args,
        device=JOBS.device_args(),
    shell:
        "lite trace --model {input.model} {params.evalsets}"
        " --model-name {wildcards.model} --tuning {wildcards.tuning}"
        " --max-new-tokens {params.max_new_tokens} --batch-size {params.batch_size} {params.device}"
        " {params.shard} --threads {threads} > {log} 2>&1"


use rule trace as trace_calibration with:
    input:
        unpack(JOBS.trace_inputs("calibration trace")),
    output:
        JOBS.decoded_files("calibration trace"),
    log:
        JOBS.per_shard("logs/{model}/trace/{tuning}/calibration.log"),
    benchmark:
        JOBS.per_shard("results/benchmarks/{model}/trace/{tuning}/calibration.tsv")
    params:
        evalsets=JOBS.evalset_args("calibration trace"),


if SHARDS > 1:

    # Merging is a concatenation: not worth a cluster job per file.
    localrules:
        merge_generations,
        merge_traces,

    rule merge_generations:
        input:
            JOBS.generation_shards,
        output:
            PLAN.generation("{model}", "{tuning}", "{evalset}", "{decoder}"),
        log:
            "logs/{model}/merge_generations/{tuning}/{evalset}/{decoder}.log",
        conda:
            "../../envs/analysis.yaml"
        shell:
            "lite merge-shards --out {output} {input} > {log} 2>&1"

    rule merge_traces:
        input:
            JOBS.trace_shards,
        output:
            PLAN.trace("{model}", "{tuning}", "{evalset}"),
        log:
            "logs/{model}/merge_traces/{tuning}/{evalset}.log",
        conda:
            "../../envs/analysis.yaml"
        shell:
            "lite merge-shards --out {output} {input} > {log} 2>&1"


# calibrated: the headline rule at calibration.target; aggressive (with calibration.aggressive_target):
# the same rule at a lower target, so its thresholds are never above the calibrated ones.
rule calibrated_thresholds:
    input:
        PLAN.trace("{model}", "lite", lite.plan.CALIBRATION_SET),
    output:
        PLAN.thresholds("{model}", "{calibrated_kind}"),
    log:
        "logs/{model}/thresholds/{calibrated_kind}.log",
    benchmark:
        "results/benchmarks/{model}/thresholds/{calibrated_kind}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        layers=JOBS.early_checkpoints_arg,
        target=JOBS.calibration_target,
        min_count=PLAN.calibration_settings["min_count"],
        bin_width=PLAN.calibration_settings["bin_width"],
    shell:
        "lite thresholds --traces {input} --layers {params.layers} --target {params.target}"
        " --min-count {params.min_count} --bin-width {params.bin_width} --out {output} > {log} 2>&1"


# Exit gates of the options -probe and -saturation (lite.decoders.gates): per early checkpoint, a
# logistic probe on the normed state of whether the layer's head gives the final layer's token, and
# CALM's saturation cut-off, fitted on the tuning's calibration traces so that each passes
# `probes.recall` of the positions where it does (read off a held-out third of the sequences); a
# probe's cut-off never falls below the agreement at which a head check pays for itself.
rule exit_probes:
    input:
        unpack(JOBS.exit_gates_inputs),
    output:
        PLAN.exit_gates("{model}", "{tuning}"),
    log:
        "logs/{model}/probes/{tuning}.log",
    benchmark:
        "results/benchmarks/{model}/probes/{tuning}.tsv"
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=resource("generate", "mem_mb"),
        runtime=runtime_per_attempt("generate"),
    params:
        layers=JOBS.early_checkpoints_arg,
        recall=PLAN.probe_settings["recall"],
        max_new_tokens=PLAN.generation_settings["max_new_tokens"],
    shell:
        "lite probes --model {input.model} --eval {input.evalset} --traces {input.traces}"
        " --layers {params.layers} --recall {params.recall} --max-new-tokens {params.max_new_tokens}"
        " --threads {threads} --out {output} > {log} 2>&1"
