# Data: the instruction-tuning set and the eval sets, in the common formats of docs/records.md.


# Downloads need the internet, which compute nodes often lack: fetch on the submitting host.
localrules:
    download,


rule download:
    output:
        PLAN.download("{source}"),
    log:
        "logs/data/download/{source}.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "lite download --source {wildcards.source} --out {output} > {log} 2>&1"


rule prepare_train:
    input:
        JOBS.source_file(config["data"]["train"]),
    output:
        PLAN.TRAIN,
    log:
        "logs/data/prepare_train.log",
    benchmark:
        "results/benchmarks/data/prepare_train.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        source=JOBS.source_args(config["data"]["train"]),
        path=JOBS.path_arg,
    shell:
        "lite prepare-train {params.source} {params.path} --out {output} > {log} 2>&1"


rule prepare_corpus:
    output:
        PLAN.CORPUS,
    log:
        "logs/data/prepare_corpus.log",
    benchmark:
        "results/benchmarks/data/prepare_corpus.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        args=JOBS.corpus_args,
    shell:
        "lite prepare-corpus {params.args} --out {output} > {log} 2>&1"


rule prepare_eval:
    input:
        JOBS.eval_source_file,
    output:
        PLAN.eval_data("{evalset}"),
    log:
        "logs/data/prepare_eval/{evalset}.log",
    benchmark:
        "results/benchmarks/data/prepare_eval/{evalset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        source=JOBS.eval_source_args,
        path=JOBS.path_arg,
    shell:
        "lite prepare-eval {params.source} {params.path} --name {wildcards.evalset}"
        " --out {output} > {log} 2>&1"
