# Human ratings (the paper's Table 5) and the optional second LLM judge (its GPT-4 row). Ratings
# are collected outside the DAG, in a browser served by `lite annotate` (docs/human.md); table5
# joins `all` once human.raters names the raters.

import lite.human.settings
import lite.judge.openai_compat

# Checked while parsing, like the first judge's settings; the second judge's key (when it needs
# one) is checked by its job before its first call.
lite.human.settings.HumanSettings.from_config(config)
lite.judge.openai_compat.second_settings(config)
SECOND_JUDGE = lite.judge.openai_compat.NAME


# The endpoint may be on the internet, which compute nodes often lack: judge on the submitting host.
localrules:
    judge_second,


rule judge_second:
    input:
        unpack(JOBS.judge_inputs),
    output:
        PLAN.judgment_file("{model}", SECOND_JUDGE, "{evalset}", "{pair}"),
    log:
        f"logs/{{model}}/judge/{SECOND_JUDGE}/{{evalset}}/{{pair}}.log",
    benchmark:
        f"results/benchmarks/{{model}}/judge/{SECOND_JUDGE}/{{evalset}}/{{pair}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        args=lambda wildcards: lite.judge.openai_compat.second_cli_args(config),
    shell:
        "lite judge {params.args} --a {input.a} --b {input.b} --out {output} > {log} 2>&1"


rule table5:
    input:
        unpack(lambda wildcards: lite.human.settings.table5_rule_inputs(PLAN)),
    output:
        csv=lite.plan.TABLE5,
        md=PLAN.table("table5", "md"),
    log:
        "logs/report/table5.log",
    benchmark:
        "results/benchmarks/report/table5.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=resource("cpu", "mem_mb"),
        runtime=runtime_per_attempt("cpu"),
    params:
        args=lambda wildcards: lite.human.settings.table5_rule_args(PLAN),
    shell:
        "lite table5 --db {input.db} --judgments {input.judgments} {params.args} "
        "--out {output.csv} > {log} 2>&1"
