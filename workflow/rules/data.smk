# Data: the instruction-tuning set and the eval sets, in the common formats of docs/records.md.


rule prepare_train:
    output:
        "results/data/train.jsonl",
    log:
        "logs/data/prepare_train.log",
    benchmark:
        "results/benchmarks/data/prepare_train.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=resource("cpu", "runtime"),
    params:
        source=source_args(config["data"]["train"]),
    shell:
        "lite prepare-train {params.source} --out {output} > {log} 2>&1"


rule prepare_eval:
    output:
        "results/data/eval/{evalset}.jsonl",
    log:
        "logs/data/prepare_eval/{evalset}.log",
    benchmark:
        "results/benchmarks/data/prepare_eval/{evalset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=resource("cpu", "runtime"),
    params:
        source=lambda wildcards: source_args(data_source(wildcards)),
    shell:
        "lite prepare-eval {params.source} --name {wildcards.evalset} --out {output} > {log} 2>&1"
