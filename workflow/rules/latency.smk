# Latency benchmark (rule `bench`, the config's `bench` section): every decoder side by side on
# the same prompts at each batch size, from the main model's LITE tuning (HF generate, no-cache and
# KV-cached dynamic exit, self-speculative with fixed and adaptive drafting), plus acceptance rates
# per draft layer for every tuning of the main model. Not part of the paper. Device and dtype are
# generation.device / generation.dtype, so the latencies are those of the configured generation.


rule bench:
    input:
        unpack(latency_inputs),
    output:
        csv=report(
            "results/tables/latency.csv",
            caption="../report/latency-table.rst",
            category="Tables",
        ),
        md="results/tables/latency.md",
        pdf=report(
            "results/figures/latency.pdf",
            caption="../report/latency-figure.rst",
            category="Figures",
        ),
        png="results/figures/latency.png",
        throughput=report(
            "results/figures/throughput.pdf",
            caption="../report/throughput-figure.rst",
            category="Figures",
        ),
        throughput_png="results/figures/throughput.png",
        acceptance="results/tables/acceptance.csv",
    log:
        "logs/bench.log",
    benchmark:
        "results/benchmarks/bench.tsv"
    conda:
        "../../envs/model.yaml"
    threads: resource("generate", "cpus", 1)
    resources:
        mem_mb=resource("generate", "mem_mb"),
        runtime=runtime_per_attempt("generate"),
        gpu=resource("generate", "gpus", 0),
    params:
        checkpoints=latency_checkpoints_arg,
        thresholds=latency_thresholds_arg,
        compare=latency_compare_args,
        prompts=config["bench"]["prompts"],
        batch_sizes=",".join(map(str, config["bench"].get("batch_sizes", [1]))),
        max_new_tokens=config["bench"]["max_new_tokens"],
        repeats=config["bench"]["repeats"],
        draft_layers=",".join(map(str, config["bench"]["draft_layers"])),
        draft_tokens=config["bench"]["draft_tokens"],
        widths=",".join(map(str, config["bench"]["widths"])),
        category=latency_category_arg,
        eos=config["bench"].get("eos", "forbid"),
        device=device_args(),
    shell:
        "lite latency --model {input.model} --evalset {input.evalset} --checkpoints {params.checkpoints}"
        " --thresholds {params.thresholds} --prompts {params.prompts} --batch-sizes {params.batch_sizes}"
        " --max-new-tokens {params.max_new_tokens} --repeats {params.repeats}"
        " --draft-layers {params.draft_layers} --draft-tokens {params.draft_tokens}"
        " --widths {params.widths} --threads {threads} {params.category} --eos {params.eos} {params.compare}"
        " {params.device}"
        " --out {output.csv} --figure {output.pdf} --throughput-figure {output.throughput}"
        " --acceptance-out {output.acceptance} > {log} 2>&1"
