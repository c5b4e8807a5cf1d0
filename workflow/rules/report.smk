# Report: the paper's figures and tables, each drawn from exactly the records it needs. In the
# Snakemake report every figure opens as its PNG and every table as its HTML twin (the CSV beside
# it to download); each caption is the one the job wrote from the run (artefact.rst includes it).


rule figure:
    input:
        artefact_inputs,
    output:
        pdf="results/figures/{artefact}.pdf",
        png=report(
            "results/figures/{artefact}.png",
            caption="../report/artefact.rst",
            category=figure_category,
            labels=artefact_labels,
        ),
        caption="results/figures/{artefact}.caption.rst",
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
        args=artefact_args,
    shell:
        "lite figure {wildcards.artefact} --out {output.pdf} {params.args} {input} > {log} 2>&1"


rule table:
    input:
        artefact_inputs,
    output:
        csv=report(
            "results/tables/{artefact}.csv",
            caption="../report/artefact.rst",
            category=table_category,
            labels=table_labels("CSV"),
        ),
        md="results/tables/{artefact}.md",
        html=report(
            "results/tables/{artefact}.html",
            caption="../report/artefact.rst",
            category=table_category,
            labels=table_labels("table"),
        ),
        caption="results/tables/{artefact}.caption.rst",
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
        args=artefact_args,
    shell:
        "lite table {wildcards.artefact} --out {output.csv} {params.args} {input} > {log} 2>&1"
