# LITE: intermediate-layer decoding via instruction tuning, reproduced end to end.
#   snakemake --cores 2 all                      # the embedded default (config.yaml), CPU, offline
#   snakemake --profile slurm all                # on a SLURM cluster (slurm/config.yaml)
#   snakemake --cores 2 results/figures/fig5.pdf # one artefact and only what it needs
# Stages: data -> tune -> generate (+ traces) -> analyze -> judge -> report. See docs/records.md.

from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless --configfile names a set-up: that replaces it instead of being
# merged into it (a merge would add config.yaml's tiny models to the paper's).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/human.smk"


# The latency benchmark exists where the config has a `bench` section.
if "bench" in config:

    include: "workflow/rules/latency.smk"


rule all:
    input:
        PLAN.all_targets(),
