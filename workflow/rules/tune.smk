# Tuning: build the base model (tiny ones are then pretrained on the corpus), then standard IT,
# LITE and weighted LITE from those same weights with the same recipe.


rule init_model:
    input:
        unpack(JOBS.init_model_inputs),
    output:
        directory(PLAN.base_weights("{model}")),
    log:
        "logs/{model}/init_model.log",
    benchmark:
        "results/benchmarks/{model}/init_model.tsv"
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=resource("generate", "mem_mb"),
        runtime=runtime_per_attempt("generate"),
    params:
        args=JOBS.init_model_args,
        corpus=JOBS.corpus_arg,
    shell:
        "lite init-model {params.args} --train {input.train} {params.corpus} --out {output} > {log} 2>&1"


# The stand-in for LLaMA-2's pretraining: the ordinary LM loss on every token of the corpus, through
# the tuning code (same trainer, checkpoints and resume).
rule pretrain:
    input:
        base=PLAN.base_weights("{model}"),
        corpus=PLAN.CORPUS,
    output:
        directory(PLAN.pretrained("{model}")),
    log:
        "logs/{model}/pretrain.log",
    benchmark:
        "results/benchmarks/{model}/pretrain.tsv"
    conda:
        "../../envs/model.yaml"
    threads: resource("tune", "cpus", 1)
    resources:
        mem_mb=resource("tune", "mem_mb"),
        runtime=runtime_per_attempt("tune"),
        gpu=resource("tune", "gpus", 0),
    params:
        args=flag_args(config.get("pretrain", {})),
    shell:
        "exec lite tune --base {input.base} --train {input.corpus} --out {output}"
        " --checkpoint-dir results/{wildcards.model}/checkpoints/pretrain"
        " --data-format text --scheme final_only {params.args} --threads {threads} > {log} 2>&1"


rule tune:
    input:
        base=JOBS.tuning_base,
        train=PLAN.TRAIN,
    output:
        directory(PLAN.tuned("{model}", "{tuning}")),
    log:
        "logs/{model}/tune/{tuning}.log",
    benchmark:
        "results/benchmarks/{model}/tune/{tuning}.tsv"
    conda:
        "../../envs/model.yaml"
    threads: resource("tune", "cpus", 1)
    resources:
        mem_mb=resource("tune", "mem_mb"),
        runtime=runtime_per_attempt("tune"),
        gpu=resource("tune", "gpus", 0),
    params:
        scheme=JOBS.tuning_scheme,
        loss=JOBS.tuning_loss_args,
        max_steps=JOBS.tuning_max_steps,
        checkpoints=JOBS.checkpoints_arg,
        args=JOBS.tuning_train_args,
        launcher=(
            f"torchrun --standalone --nproc-per-node {resource('tune', 'gpus')} -m lite.cli"
            if resource("tune", "gpus", 0) > 1
            else "lite"
        ),
    # `exec`: the tuning process replaces the job's shell. Without it, a SIGTERM (scancel,
    # preemption, --signal) kills the shell first, the SLURM job step ends with it, and the
    # orphaned trainer saves its checkpoint outside the job, racing the rerun (docs/cluster.md).
    shell:
        "exec {params.launcher} tune --base {input.base} --train {input.train} --out {output}"
        " --checkpoint-dir results/{wildcards.model}/checkpoints/{wildcards.tuning}"
        " --scheme {params.scheme} {params.loss} --layers {params.checkpoints} --max-steps {params.max_steps}"
        " {params.args}"
        " --threads {threads} > {log} 2>&1"
