# Analysis: alignment and calibration tables from traces; semantic similarity of responses.


rule align:
    input:
        PLAN.trace("{model}", "{tuning}", "{evalset}"),
    output:
        alignment=PLAN.alignment("{model}", "{tuning}", "{evalset}", "alignment"),
        calibration=PLAN.alignment("{model}", "{tuning}", "{evalset}", "calibration"),
    log:
        "logs/{model}/align/{tuning}/{evalset}.log",
    benchmark:
        "results/benchmarks/{model}/align/{tuning}/{evalset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    shell:
        "lite align --traces {input} --out-alignment {output.alignment}"
        " --out-calibration {output.calibration} > {log} 2>&1"


rule similarity:
    input:
        a=PLAN.generation("{model}", "lite", "{evalset}", "final"),
        b=PLAN.generation("{model}", "lite", "{evalset}", "{decoder}"),
    output:
        PLAN.similarity("{model}", "{evalset}", "{decoder}"),
    log:
        "logs/{model}/similarity/{evalset}/{decoder}.log",
    benchmark:
        "results/benchmarks/{model}/similarity/{evalset}/{decoder}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        spacy_model=config["similarity"]["spacy_model"],
    shell:
        "lite similarity --a {input.a} --b {input.b} --spacy-model {params.spacy_model}"
        " --out {output} > {log} 2>&1"
