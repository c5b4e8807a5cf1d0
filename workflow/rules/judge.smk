# Judging: each pair of systems judged in both orders (offline reference judge or Claude).


# Claude needs the internet, which compute nodes often lack: judge on the submitting host.
localrules:
    judge,


rule judge:
    input:
        unpack(JOBS.judge_inputs),
    output:
        PLAN.judgment_file("{model}", "{judge}", "{evalset}", "{pair}"),
    log:
        "logs/{model}/judge/{judge}/{evalset}/{pair}.log",
    benchmark:
        "results/benchmarks/{model}/judge/{judge}/{evalset}/{pair}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        args=lite.judge.judge_cli_args(config),
    shell:
        "lite judge {params.args} --a {input.a} --b {input.b} --out {output} > {log} 2>&1"
