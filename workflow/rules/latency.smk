# Latency benchmark (rule `bench`, the config's `bench` section): every decoder side by side on
# the same prompts at each batch size, from the main model's LITE tuning (HF generate, no-cache and
# KV-cached dynamic exit, self-speculative with fixed and adaptive drafting, and HF's own LayerSkip
# self-speculation from each draft layer, at batch size 1 only: HF's assisted generation takes no
# batches), plus acceptance rates per draft layer for every tuning of the main model. Not part of
# the paper. Device and dtype are generation.device / generation.dtype, so the latencies are those
# of the configured generation.


rule bench:
    input:
        unpack(JOBS.latency_inputs),
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
        checkpoints=JOBS.latency_checkpoints_arg,
        thresholds=JOBS.latency_thresholds_arg,
        compare=JOBS.latency_compare_args,
        prompts=PLAN.bench_settings["prompts"],
        batch_sizes=JOBS.latency_list("batch_sizes"),
        max_new_tokens=PLAN.bench_settings["max_new_tokens"],
        repeats=PLAN.bench_settings["repeats"],
        draft_layers=JOBS.latency_list("draft_layers"),
        draft_tokens=PLAN.bench_settings["draft_tokens"],
        widths=JOBS.latency_list("widths"),
        exits=JOBS.latency_exit_args,
        category=JOBS.latency_category_arg,
        eos=PLAN.bench_settings["eos"],
        device=JOBS.device_args(),
    shell:
        "lite latency --model {input.model} --evalset {input.evalset} --checkpoints {params.checkpoints}"
        " --thresholds {params.thresholds} --prompts {params.prompts} --batch-sizes {params.batch_sizes}"
        " --max-new-tokens {params.max_new_tokens} --repeats {params.repeats}"
        " --draft-layers {params.draft_layers} --draft-tokens {params.draft_tokens}"
        " --widths {params.widths} --threads {threads} {params.category} --eos {params.eos} {params.compare}"
        " {params.exits}"
        " {params.device}"
        " --out {output.csv} --figure {output.pdf} --throughput-figure {output.throughput}"
        " --acceptance-out {output.acceptance} > {log} 2>&1"
