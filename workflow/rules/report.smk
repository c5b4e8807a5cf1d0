# Report: the paper's figures and tables, each drawn from exactly the records it needs.


rule figure:
    input:
        artefact_inputs,
    output:
        pdf=report(
            "results/figures/{artefact}.pdf",
            caption="../report/artefact.rst",
            category=figure_category,
            labels=artefact_labels,
        ),
        png="results/figures/{artefact}.png",
    log:
        "logs/report/{artefact}.log",
    benchmark:
        "results/benchmarks/report/{artefact}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=resource("cpu", "runtime"),
    params:
        args=artefact_args,
        caption=figure_caption,
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
            labels=artefact_labels,
        ),
        md="results/tables/{artefact}.md",
    log:
        "logs/report/{artefact}.log",
    benchmark:
        "results/benchmarks/report/{artefact}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=resource("cpu", "runtime"),
    params:
        args=artefact_args,
        caption=table_caption,
    shell:
        "lite table {wildcards.artefact} --out {output.csv} {params.args} {input} > {log} 2>&1"
