# Generation: every decoder on every eval set, traces of every layer, calibrated thresholds.
# With generation.shards = N > 1, each generate/trace job runs every N-th prompt and writes under
# results/{model}/shards/; merge_generations and merge_traces join the N files at the usual paths.


# One generate job per decoder decodes every eval set, and one trace job per tuning traces them:
# the model is loaded, and torch and transformers imported, once per job rather than once per eval
# set (on a CPU the imports take longer than decoding a tiny model's set). Results stay one file
# per eval set, so everything after this reads, and reruns, per set and decoder.
rule generate:
    input:
        unpack(decoder_inputs),
    output:
        decoded_files("generation"),
    log:
        (
            "logs/{model}/generate/{tuning}/{decoder}.log"
            if SHARDS == 1
            else "logs/{model}/generate/{tuning}/{decoder}/{shard}-of-{nshards}.log"
        ),
    benchmark:
        (
            "results/benchmarks/{model}/generate/{tuning}/{decoder}.tsv"
            if SHARDS == 1
            else "results/benchmarks/{model}/generate/{tuning}/{decoder}/{shard}-of-{nshards}.tsv"
        )
    conda:
        "../../envs/model.yaml"
    threads: resource("generate", "cpus", 1)
    resources:
        mem_mb=resource("generate", "mem_mb"),
        runtime=runtime_per_attempt("generate"),
        gpu=resource("generate", "gpus", 0),
    params:
        evalsets=evalset_args("generation"),
        checkpoints=checkpoints_arg,
        thresholds=thresholds_arg,
        max_new_tokens=config["generation"]["max_new_tokens"],
        batch_size=config["generation"].get("batch_size", 8),
        seed=generation_seed,
        kv_cache="--kv-cache" if config["generation"].get("kv_cache") else "",
        shard=shard_args,
        device=device_args(),
        agreement=config["generation"].get("agreement_prompts", 0),
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
        unpack(trace_inputs("trace")),
    output:
        decoded_files("trace"),
    log:
        (
            "logs/{model}/trace/{tuning}.log"
            if SHARDS == 1
            else "logs/{model}/trace/{tuning}/{shard}-of-{nshards}.log"
        ),
    benchmark:
        (
            "results/benchmarks/{model}/trace/{tuning}.tsv"
            if SHARDS == 1
            else "results/benchmarks/{model}/trace/{tuning}/{shard}-of-{nshards}.tsv"
        )
    conda:
        "../../envs/model.yaml"
    threads: resource("generate", "cpus", 1)
    resources:
        mem_mb=resource("generate", "mem_mb"),
        runtime=runtime_per_attempt("generate"),
        gpu=resource("generate", "gpus", 0),
    params:
        evalsets=evalset_args("trace"),
        max_new_tokens=config["generation"]["max_new_tokens"],
        batch_size=config["generation"].get("batch_size", 8),
        shard=shard_args,
        device=device_args(),
    shell:
        "lite trace --model {input.model} {params.evalsets}"
        " --model-name {wildcards.model} --tuning {wildcards.tuning}"
        " --max-new-tokens {params.max_new_tokens} --batch-size {params.batch_size} {params.device}"
        " {params.shard} --threads {threads} > {log} 2>&1"


use rule trace as trace_calibration with:
    input:
        unpack(trace_inputs("calibration trace")),
    output:
        decoded_files("calibration trace"),
    log:
        (
            "logs/{model}/trace/{tuning}/calibration.log"
            if SHARDS == 1
            else "logs/{model}/trace/{tuning}/calibration/{shard}-of-{nshards}.log"
        ),
    benchmark:
        (
            "results/benchmarks/{model}/trace/{tuning}/calibration.tsv"
            if SHARDS == 1
            else "results/benchmarks/{model}/trace/{tuning}/calibration/{shard}-of-{nshards}.tsv"
        )
    params:
        evalsets=evalset_args("calibration trace"),


if SHARDS > 1:

    # Merging is a concatenation: not worth a cluster job per file.
    localrules:
        merge_generations,
        merge_traces,

    rule merge_generations:
        input:
            generation_shards,
        output:
            "results/{model}/generations/{tuning}/{evalset}/{decoder}.jsonl",
        log:
            "logs/{model}/merge_generations/{tuning}/{evalset}/{decoder}.log",
        conda:
            "../../envs/analysis.yaml"
        shell:
            "lite merge-shards --out {output} {input} > {log} 2>&1"

    rule merge_traces:
        input:
            trace_shards,
        output:
            "results/{model}/traces/{tuning}/{evalset}.jsonl",
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
        "results/{model}/traces/lite/calibration.jsonl",
    output:
        "results/{model}/thresholds/{calibrated_kind}.json",
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
        layers=early_checkpoints_arg,
        target=calibration_target,
        min_count=config["calibration"].get("min_count", 20),
        bin_width=config["calibration"].get("bin_width", 0.05),
    shell:
        "lite thresholds --traces {input} --layers {params.layers} --target {params.target}"
        " --min-count {params.min_count} --bin-width {params.bin_width} --out {output} > {log} 2>&1"
