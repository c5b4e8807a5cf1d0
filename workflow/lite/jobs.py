"""The inputs and flags of the workflow's jobs, from a job's wildcards (tests/unit/test_jobs.py).

workflow/rules/*.smk hand these methods to Snakemake as input and params functions; they take
the wildcards object Snakemake passes (anything with the wildcards as attributes), and
``input``/``output`` where a flag names a file. A params function that reads ``input`` or
``output`` is left out of Snakemake's rerun check, so each keeps the signature it needs and no
more. Nothing here imports torch.
"""

from __future__ import annotations

import json
from typing import Any

from lite.decoders.names import decoder_name
from lite.flags import flag_args
from lite.plan import CALIBRATION_SET, Plan, scaled_thresholds
from lite.shards import shard_file, shard_files


class Jobs:
    """Input and params functions of the rules, for one config's ``Plan``."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.config = plan.config

    def per_shard(self, path: str) -> str:
        """A generate or trace job's log or benchmark file: ``path``, or with generation.shards > 1
        one file per shard in a folder named like it (``a/b.log`` -> ``a/b/{shard}-of-{nshards}.log``)."""
        if self.plan.shards == 1:
            return path
        stem, suffix = path.rsplit(".", 1)
        return f"{stem}/{{shard}}-of-{{nshards}}.{suffix}"

    # ---- data (data.smk)
    def data_source(self, wildcards) -> dict[str, Any]:
        """The config slice of one eval set (or the calibration set)."""
        if wildcards.evalset == CALIBRATION_SET:
            return self.config["data"]["calibration"]
        return self.config["data"]["eval"][wildcards.evalset]

    def eval_source_file(self, wildcards) -> str | list:
        return self.source_file(self.data_source(wildcards))

    def eval_source_args(self, wildcards) -> str:
        return self.source_args(self.data_source(wildcards))

    def source_args(self, source: dict[str, Any]) -> str:
        """Command-line flags of one data source (its file comes in as the rule's input)."""
        args = [f"--source {source['source']}"]
        if source.get("n") is not None:
            args.append(f"--n {source['n']}")
        if source.get("seed") is not None:
            args.append(f"--seed {source['seed']}")
        if source.get("verify") is False:
            args.append("--no-verify")
        if source["source"] == "synthetic" and self.config["data"].get("families"):
            args.append(f"--families {','.join(self.config['data']['families'])}")
        return " ".join(args)

    @staticmethod
    def source_file(source: dict[str, Any]) -> str | list:
        """The raw file a data source is read from: a local copy, or the pinned download; none
        (an empty input) for synthetic data."""
        if source["source"] == "synthetic":
            return []
        return source.get("path") or Plan.download(source["source"])

    @staticmethod
    def path_arg(wildcards, input) -> str:
        return f"--path {input[0]}" if len(input) else ""

    def corpus_args(self, wildcards) -> str:
        """Flags of ``data.corpus``, read only for a prepare_corpus job (configs without a corpus
        have none)."""
        return flag_args(self.config["data"]["corpus"])

    # ---- tuning (tune.smk)
    def init_model_inputs(self, wildcards) -> dict[str, str]:
        """The train set (the tokenizer learns from it) and, for a pretrained tiny model, the corpus."""
        inputs = {"train": Plan.TRAIN}
        if self.plan.pretrains(wildcards.model):
            inputs["corpus"] = Plan.CORPUS
        return inputs

    def init_model_args(self, wildcards) -> str:
        base = self.plan.model_config(wildcards.model)["base"]
        return flag_args({key: value for key, value in base.items() if key != "n_layers"})

    @staticmethod
    def corpus_arg(wildcards, input) -> str:
        return f"--corpus {input.corpus}" if "corpus" in input.keys() else ""

    def tuning_base(self, wildcards) -> str:
        return self.plan.tuning_base(wildcards.model)

    def tuning_scheme(self, wildcards) -> str:
        return self.config["tunings"][wildcards.tuning]["scheme"]

    def tuning_loss_args(self, wildcards) -> str:
        """The tuning's loss settings beside its scheme (final_weight, intermediate_ramp,
        exit_target) as flags."""
        entry = self.config["tunings"][wildcards.tuning]
        return flag_args({k: v for k, v in entry.items() if k not in ("scheme", "max_steps")})

    def tuning_max_steps(self, wildcards) -> int:
        """The tuning's own max_steps, else the shared train.max_steps."""
        return self.config["tunings"][wildcards.tuning].get("max_steps", self.config["train"]["max_steps"])

    def tuning_train_args(self, wildcards) -> str:
        """train's settings as flags but max_steps (it comes per tuning), with the model's seed (a
        seed replica's own)."""
        settings = {k: v for k, v in self.config["train"].items() if k != "max_steps"}
        if wildcards.model in self.plan.replica_seeds:
            settings["seed"] = self.plan.train_seed(wildcards.model)
        return flag_args(settings)

    def checkpoints_arg(self, wildcards) -> str:
        return ",".join(map(str, self.plan.checkpoints(wildcards.model)))

    # ---- generation, traces, thresholds (generate.smk)
    def decoded_sets(self, kind: str) -> list[str]:
        """The eval sets one generate or trace job decodes: every configured eval set, or (kind
        "calibration trace") the calibration set alone."""
        if kind == "calibration trace":
            return [CALIBRATION_SET]
        return list(self.plan.evalsets)

    def decoded_files(self, kind: str) -> list[str]:
        """The output files of one generate ("generation") or trace job: one per eval set it
        decodes, or one shard of each with generation.shards > 1."""
        paths = []
        for evalset in self.decoded_sets(kind):
            if kind == "generation":
                path = Plan.generation("{model}", "{tuning}", evalset, "{decoder}")
            else:
                path = Plan.trace("{model}", "{tuning}", evalset)
            paths.append(path if self.plan.shards == 1 else shard_file(path, "{shard}", "{nshards}"))
        return paths

    def evalset_args(self, kind: str):
        """``--evalset FILE --evalset-name NAME --out OUT`` per eval set of the job, outputs in order."""
        names = self.decoded_sets(kind)

        def args(wildcards, output) -> str:
            return " ".join(
                f"--evalset {Plan.eval_data(name)} --evalset-name {name} --out {out}"
                for name, out in zip(names, output, strict=True)
            )

        return args

    def trace_inputs(self, kind: str):
        """The tuned model and the eval sets a trace job (``kind`` as in ``decoded_sets``) reads."""
        sets = self.decoded_sets(kind)

        def inputs(wildcards) -> dict[str, Any]:
            return {
                "model": Plan.tuned(wildcards.model, wildcards.tuning),
                "evalsets": [Plan.eval_data(name) for name in sets],
            }

        return inputs

    def decoder_inputs(self, wildcards) -> dict[str, Any]:
        """The tuned model, every eval set, and the thresholds file of a calibrated decoder."""
        inputs = {
            "model": Plan.tuned(wildcards.model, wildcards.tuning),
            "evalsets": [Plan.eval_data(name) for name in self.decoded_sets("generation")],
        }
        decoder = decoder_name(wildcards.decoder)
        if decoder.threshold_set in self.plan.calibrated_kinds():
            inputs["thresholds"] = Plan.thresholds(wildcards.model, decoder.threshold_set)
        if decoder.gate != "head":
            inputs["gates"] = Plan.exit_gates(wildcards.model, wildcards.tuning)
        return inputs

    def exit_gates_inputs(self, wildcards) -> dict[str, str]:
        """A tuning's model, the calibration set and its calibration traces (``lite probes``)."""
        return {
            "model": Plan.tuned(wildcards.model, wildcards.tuning),
            "evalset": Plan.eval_data(CALIBRATION_SET),
            "traces": Plan.trace(wildcards.model, wildcards.tuning, CALIBRATION_SET),
        }

    def thresholds_arg(self, wildcards) -> str:
        """``--thresholds`` (and ``--gates``) for dynamic decoders. A params entry of wildcards
        alone (Snakemake leaves params that read ``input`` out of its rerun check), so editing the
        configured values reruns that decoder and what follows, never tuning; calibrated ones rerun
        through their input file.
        """
        source = self.thresholds_source(wildcards.model, wildcards.decoder)
        if source is None:
            return ""
        # a gated decoder's exit gates ride in the same entry: a params entry of their own would
        # change every finished generate job's params and rerun it
        if decoder_name(wildcards.decoder).gate != "head":
            return f"--thresholds {source} --gates {Plan.exit_gates(wildcards.model, wildcards.tuning)}"
        return f"--thresholds {source}"

    def thresholds_source(self, model: str, decoder: str) -> str | None:
        """A dynamic decoder's thresholds as ``--thresholds`` takes them: the calibrated file, or the
        configured set (a sweep point's scaled) as shell-quoted JSON; None for other decoders."""
        named = decoder_name(decoder)
        if named.threshold_set is None:
            return None
        if named.threshold_set in self.plan.calibrated_kinds():
            return Plan.thresholds(model, named.threshold_set)
        values = self.plan.model_config(model)["thresholds"][named.threshold_set]
        if named.scale is not None:  # a sweep point
            values = scaled_thresholds(values, named.scale)
        return f"'{json.dumps(values, sort_keys=True)}'"

    def generation_seed(self, wildcards) -> int:
        return self.plan.generation_seed(wildcards.model)

    def device_args(self) -> str:
        """``--device D --dtype T`` of generate, trace and latency (generation.device / generation.dtype)."""
        generation = self.plan.generation_settings
        return f"--device {generation['device']} --dtype {generation['dtype']}"

    @staticmethod
    def shard_args(wildcards) -> str:
        """``--shard I --num-shards N`` for one shard's job; nothing when generation is not sharded."""
        if not hasattr(wildcards, "shard"):
            return ""
        return f"--shard {wildcards.shard} --num-shards {wildcards.nshards}"

    def generation_shards(self, wildcards) -> list[str]:
        """The shard files merged into one generation file (generation.shards > 1)."""
        merged = Plan.generation(wildcards.model, wildcards.tuning, wildcards.evalset, wildcards.decoder)
        return shard_files(merged, self.plan.shards)

    def trace_shards(self, wildcards) -> list[str]:
        """The shard files merged into one trace file (generation.shards > 1)."""
        merged = Plan.trace(wildcards.model, wildcards.tuning, wildcards.evalset)
        return shard_files(merged, self.plan.shards)

    def calibration_target(self, wildcards) -> float:
        return self.plan.calibrated_kinds()[wildcards.calibrated_kind]

    def early_checkpoints_arg(self, wildcards) -> str:
        return ",".join(map(str, self.plan.early_checkpoints(wildcards.model)))

    # ---- judging and the report (judge.smk, human.smk, report.smk)
    def judge_inputs(self, wildcards) -> dict[str, str]:
        """The two generation files of a judged pair (``{tuning}.{decoder}~{tuning}.{decoder}``)."""
        a, b = wildcards.pair.split("~")
        tuning_a, decoder_a = a.split(".", 1)
        tuning_b, decoder_b = b.split(".", 1)
        return {
            "a": Plan.generation(wildcards.model, tuning_a, wildcards.evalset, decoder_a),
            "b": Plan.generation(wildcards.model, tuning_b, wildcards.evalset, decoder_b),
        }

    def artefact_inputs(self, wildcards) -> list[str]:
        return self.plan.artefact_inputs(wildcards.artefact)

    def artefact_args(self, wildcards) -> str:
        return self.plan.artefact_args(wildcards.artefact)

    @staticmethod
    def artefact_labels(wildcards) -> dict[str, str]:
        return Plan.report_labels(wildcards.artefact)

    @staticmethod
    def report_category(kind: str):
        """The report section of each figure (``kind`` "figure") or table ("table")."""
        return lambda wildcards: Plan.report_category(wildcards.artefact, kind)

    @staticmethod
    def table_labels(file: str):
        """Report labels of a table's ``file`` ("table": the HTML view, "CSV": the download)."""
        return lambda wildcards: {**Plan.report_labels(wildcards.artefact), "file": file}

    # ---- latency benchmark (latency.smk)
    def latency_inputs(self, wildcards) -> dict[str, str]:
        """The LITE model, the prompts and, for the acceptance table, the main model's other tunings."""
        plan, bench = self.plan, self.plan.bench_settings
        inputs = {
            "model": Plan.tuned(plan.main, "lite"),
            "evalset": Plan.eval_data(bench["evalset"]),
        }
        if bench["thresholds"] in plan.calibrated_kinds():
            inputs["thresholds"] = Plan.thresholds(plan.main, bench["thresholds"])
        exits = [decoder_name(d) for d in bench.get("exits", [])]
        for kind in sorted({d.threshold_set for d in exits} & set(plan.calibrated_kinds())):
            inputs[f"thresholds_{kind}"] = Plan.thresholds(plan.main, kind)
        if any(d.gate != "head" for d in exits):
            inputs["gates"] = Plan.exit_gates(plan.main, "lite")
        for tuning in plan.tunings(plan.main):
            if tuning != "lite":
                inputs[f"compare_{tuning}"] = Plan.tuned(plan.main, tuning)
        return inputs

    @staticmethod
    def latency_compare_args(wildcards, input) -> str:
        """``--compare NAME=DIR`` for each of the main model's other tunings."""
        return " ".join(
            f"--compare {name.removeprefix('compare_')}={path}"
            for name, path in input.items()
            if name.startswith("compare_")
        )

    def latency_thresholds_arg(self, wildcards) -> str:
        """``--thresholds``: the calibrated file, or the named configured set as quoted JSON."""
        name = self.plan.bench_settings["thresholds"]
        if name in self.plan.calibrated_kinds():
            return Plan.thresholds(self.plan.main, name)
        values = self.config["models"][self.plan.main]["thresholds"][name]
        return f"'{json.dumps(values, sort_keys=True)}'"

    def latency_exit_args(self, wildcards) -> str:
        """``--exits`` with ``--exit-thresholds NAME=THRESHOLDS`` for each of ``bench.exits`` and
        ``--gates FILE`` where one of them is gated: the workflow's dynamic decoders and their
        options, timed beside the rest."""
        exits = self.plan.bench_settings.get("exits", [])
        if not exits:
            return ""
        args = [f"--exits {','.join(exits)}"]
        args += [f"--exit-thresholds {name}={self.thresholds_source(self.plan.main, name)}" for name in exits]
        if any(decoder_name(name).gate != "head" for name in exits):
            args.append(f"--gates {Plan.exit_gates(self.plan.main, 'lite')}")
        return " ".join(args)

    def latency_checkpoints_arg(self, wildcards) -> str:
        return ",".join(map(str, self.plan.checkpoints(self.plan.main)))

    def latency_category_arg(self, wildcards) -> str:
        """``--category C`` where bench.category names one; nothing decodes every category."""
        category = self.plan.bench_settings.get("category")
        return f"--category {category}" if category else ""

    def latency_list(self, key: str) -> str:
        """A list setting of the bench section (defaults from ``LatencyConfig``) as a flag value: 1,4,16."""
        return ",".join(map(str, self.plan.bench_settings[key]))
