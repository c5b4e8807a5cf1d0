# Report: the paper's figures and tables, each drawn from exactly the records it needs. In the
# Snakemake report every figure opens as its PNG and every table as its HTML twin (the CSV beside
# it to download); each caption is the one the job wrote from the run (artefact.rst includes it).


rule figure:
    input:
        JOBS.artefact_inputs,
    output:
        pdf=PLAN.figure("{artefact}"),
        png=report(
            PLAN.figure("{artefact}", "png"),
            caption="../report/artefact.rst",
            category=JOBS.report_category("figure"),
            labels=JOBS.artefact_labels,
        ),
        caption=PLAN.figure("{artefact}", "caption.rst"),
    log:
        "logs/report/{artefact}.log",
    benchmark:
        "results/benchmarks/report/{artefact}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        args=JOBS.artefact_args,
    shell:
        "lite figure {wildcards.artefact} --out {output.pdf} {params.args} {input} > {log} 2>&1"


rule table:
    input:
        JOBS.artefact_inputs,
    output:
        csv=report(
            PLAN.table("{artefact}"),
            caption="../report/artefact.rst",
            category=JOBS.report_category("table"),
            labels=JOBS.table_labels("CSV"),
        ),
        md=PLAN.table("{artefact}", "md"),
        html=report(
            PLAN.table("{artefact}", "html"),
            caption="../report/artefact.rst",
            category=JOBS.report_category("table"),
            labels=JOBS.table_labels("table"),
        ),
        caption=PLAN.table("{artefact}", "caption.rst"),
    log:
        "logs/report/{artefact}.log",
    benchmark:
        "results/benchmarks/report/{artefact}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        args=JOBS.artefact_args,
    shell:
        "lite table {wildcards.artefact} --out {output.csv} {params.args} {input} > {log} 2>&1"


# `snakemake --cores 2 seeds` (not part of `all`): the main model tuned, decoded and judged again
# with each of seeds.replicas (results/{main}-seed{K}/, base weights shared), and the headline
# findings of every seed side by side, each tested against its target.
rule seeds:
    input:
        lambda wildcards: PLAN.seeds_inputs(),
    output:
        csv=PLAN.table("seeds"),
        md=PLAN.table("seeds", "md"),
        html=PLAN.table("seeds", "html"),
    log:
        "logs/report/seeds.log",
    benchmark:
        "results/benchmarks/report/seeds.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        models=lambda wildcards: PLAN.seed_models_arg(),
        dynamic=PLAN.dynamic,
    shell:
        "lite seeds --out {output.csv} --models {params.models} --dynamic {params.dynamic} {input} > {log} 2>&1"
