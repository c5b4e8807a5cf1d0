"""What the workflow builds for a config: result paths, judge pairs, artefact inputs.

The Snakefile's input functions are thin calls into ``Plan``; the logic lives here so it is unit
tested (tests/unit/test_plan.py). Nothing here imports torch.

    python -c "import yaml, lite.plan as p; print(p.Plan(yaml.safe_load(open('config.yaml'))).all_targets())"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lite.analysis import ThresholdConfig
from lite.decoders.names import BASELINE_NAMES, decoder_name
from lite.flags import with_defaults
from lite.sections import GenerationSettings, LatencyConfig, ProbeSettings

CALIBRATION_SET = "calibration"
NO_REFERENCE_SOURCES = ("vicuna", "koala", "wizardlm", "selfinstruct")


def scaled_thresholds(thresholds: dict, scale: float) -> dict[int, float]:
    """``thresholds`` moved away from 1 by ``scale``: ``1 - scale * (1 - t)``, never below 0.

    Scale 1 gives the thresholds themselves, smaller scales are more cautious (closer to 1),
    larger ones more aggressive: one knob from "never exit" to "always exit" with the shape kept.
    """
    return {int(layer): round(max(0.0, 1.0 - scale * (1.0 - float(t))), 6) for layer, t in thresholds.items()}


def replica_name(model: str, seed: int) -> str:
    """The model name under which ``model`` is tuned again with ``seed`` (``snakemake seeds``)."""
    return f"{model}-seed{seed}"


def sweep_decoder(scale: float) -> str:
    return f"dynamic-x{scale:g}"


class ConfigError(ValueError):
    """A config that passes the schema but cannot describe an experiment; names the key."""


def _layer_keys(mapping: dict) -> dict[int, float]:
    return {int(layer): float(value) for layer, value in mapping.items()}


def model_depth(model_cfg: dict) -> int | None:
    """Decoder layer count when the config states it (tiny: ``layers``; others: ``n_layers``)."""
    base = model_cfg["base"]
    return base.get("layers") if base["kind"] == "tiny" else base.get("n_layers")


def check_config(config: dict) -> None:
    """Checks the schema cannot express; raises ``ConfigError`` naming the offending key."""
    if "pretrain" in config and "corpus" not in config["data"]:
        raise ConfigError(
            "data.corpus: required by the pretrain section (the corpus tiny models pretrain on)"
        )
    if CALIBRATION_SET in config["data"]["eval"]:
        raise ConfigError(f"data.eval.{CALIBRATION_SET}: this name is reserved for data.calibration")
    for name, model in config["models"].items():
        key = f"models.{name}"
        checkpoints = model["checkpoints"]
        if checkpoints != sorted(set(checkpoints)):
            raise ConfigError(f"{key}.checkpoints: must be strictly ascending, got {checkpoints}")
        depth = model_depth(model)
        if depth is not None and checkpoints[-1] != depth:
            raise ConfigError(
                f"{key}.checkpoints: the last checkpoint must be the final layer {depth}, "
                f"got {checkpoints[-1]} (a layer beyond the model's depth, or the final layer missing)"
            )
        if "lite" not in model["tunings"]:
            raise ConfigError(f"{key}.tunings: every base model needs lite (fig1 reports it)")
        for tuning in model["tunings"]:
            if tuning not in config["tunings"]:
                raise ConfigError(f"{key}.tunings: {tuning!r} has no entry under tunings")
        for kind, thresholds in model["thresholds"].items():
            for layer in _layer_keys(thresholds):
                if layer not in checkpoints[:-1]:
                    raise ConfigError(
                        f"{key}.thresholds.{kind}.{layer}: not an early checkpoint of {name} "
                        f"(early checkpoints: {checkpoints[:-1]})"
                    )
    main = next(iter(config["models"].values()))
    for decoder in map(decoder_name, config["generation"]["decoders"]):
        if decoder.family == "fixed" and decoder.layer not in main["checkpoints"]:
            raise ConfigError(
                f"generation.decoders: {decoder.name} is not a checkpoint of the main model "
                f"(checkpoints: {main['checkpoints']})"
            )
    plan = Plan(config)
    for replica, seed in plan.replica_seeds.items():
        if replica in config["models"]:
            raise ConfigError(
                f"seeds.replicas: {seed} makes the replica {replica!r}, which is a configured model"
            )
        if seed == plan.train_seed(plan.main):
            raise ConfigError(f"seeds.replicas: {seed} is train.seed, the main run itself")
    for name, model in config["models"].items():
        for tuning in model["tunings"]:
            for decoder in plan.decoders(name, tuning):
                needed = decoder_name(decoder).threshold_set
                if (
                    needed is not None
                    and needed not in plan.calibrated_kinds()
                    and needed not in model["thresholds"]
                ):
                    raise ConfigError(f"models.{name}.thresholds.{needed}: required by the decoder {decoder}")
    if config["judge"]["name"] == "reference":
        for name, source in config["data"]["eval"].items():
            if source["source"] in NO_REFERENCE_SOURCES:
                raise ConfigError(
                    f"data.eval.{name}: {source['source']} has no gold answers for the reference judge; "
                    "use judge.name: claude, or an eval source with references (synthetic, alpaca)"
                )
    if config["judge"]["name"] == "claude" and "claude" not in config["judge"]:
        raise ConfigError("judge.claude: settings are required when judge.name is claude")


@dataclass(frozen=True)
class Pair:
    """Two systems of one model judged against each other; ``a`` is the reference side."""

    a: str  # "{tuning}.{decoder}"
    b: str

    @property
    def name(self) -> str:
        return f"{self.a}~{self.b}"


class Plan:
    """Every path the workflow makes for one config, grouped by the artefact that needs it."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.models = list(config["models"])
        self.main = self.models[0]
        self.second = self.models[1] if len(self.models) > 1 else None
        self.evalsets = list(config["data"]["eval"])
        self.dynamic = config["report"]["dynamic_decoder"]
        self.judge = config["judge"]["name"]
        # The sections whose settings are commands' options, each setting left out at the default
        # its command declares (GenerationSettings, ThresholdConfig, LatencyConfig).
        self.generation_settings = with_defaults(GenerationSettings, config["generation"])
        self.calibration_settings = with_defaults(ThresholdConfig, config["calibration"])
        self.bench_settings = with_defaults(LatencyConfig, config["bench"]) if "bench" in config else None
        self.probe_settings = with_defaults(ProbeSettings, config.get("probes", {}))
        # generation.shards > 1: each eval set's generations and traces run as that many jobs,
        # each on every N-th prompt, merged on the submitting host (merge_generations, merge_traces).
        self.shards = self.generation_settings.get("shards", 1)
        # `snakemake seeds`: the main model tuned, decoded and judged again with other seeds. Each
        # replica is a model of its own name (its results under results/{replica}/) that shares
        # the main model's base weights and settings.
        self.replica_seeds = {
            replica_name(self.main, seed): seed for seed in (config.get("seeds") or {}).get("replicas", [])
        }

    # ---- per-model facts
    def model_config(self, model: str) -> dict[str, Any]:
        """A model's config entry; a seed replica's is the main model's with IT and LITE only
        (what the headline findings read)."""
        if model in self.replica_seeds:
            main = self.config["models"][self.main]
            return {**main, "tunings": [t for t in main["tunings"] if t in ("it", "lite")]}
        return self.config["models"][model]

    def all_models(self) -> list[str]:
        """The configured models and the seed replicas: what the model wildcard may be."""
        return [*self.models, *self.replica_seeds]

    def is_main(self, model: str) -> bool:
        return model == self.main or model in self.replica_seeds

    def train_seed(self, model: str) -> int:
        return self.replica_seeds.get(model, self.config["train"].get("seed", 0))

    def generation_seed(self, model: str) -> int:
        return self.replica_seeds.get(model, self.generation_settings["seed"])

    def checkpoints(self, model: str) -> list[int]:
        return list(self.model_config(model)["checkpoints"])

    def tunings(self, model: str) -> list[str]:
        return list(self.model_config(model)["tunings"])

    def early_checkpoints(self, model: str) -> list[int]:
        """The checkpoints below the final layer: where a token can exit early."""
        return self.checkpoints(model)[:-1]

    def fixed_decoders(self, model: str) -> list[str]:
        return [f"fixed-L{k}" for k in self.early_checkpoints(model)]

    def decoders(self, model: str, tuning: str) -> list[str]:
        """Decoders generated for (model, tuning): the main model gets the full set, a seed
        replica what the headline findings read."""
        if not self.is_main(model):
            return ["final", self.dynamic] if tuning == "lite" else []
        if tuning == "it":
            return ["final", *self.fixed_decoders(model)]
        if tuning == "lite":
            configured = [
                d for d in self.config["generation"]["decoders"] if decoder_name(d).family != "fixed"
            ]
            if model in self.replica_seeds:  # and the sweep's options: the KV-cache finding
                wanted = {self.dynamic, "dynamic-aggressive", *BASELINE_NAMES}
                options = [d for d in self.sweep() if decoder_name(d).option is not None]
                return _unique(["final", self.dynamic, *[d for d in configured if d in wanted], *options])
            return _unique(["final", *self.fixed_decoders(model), self.dynamic, *configured, *self.sweep()])
        return []

    def sweep(self) -> list[str]:
        """The threshold sweep's decoders (main model only): one per ``frontier.scales`` entry,
        and again with each of ``frontier.options`` (``dynamic-x{k}-{option}``)."""
        frontier = self.config.get("frontier", {})
        plain = [sweep_decoder(scale) for scale in frontier.get("scales", [])]
        return plain + [f"{name}-{option}" for option in frontier.get("options", []) for name in plain]

    # ---- paths, each pattern written once: the rules call these with wildcard names ("{model}")
    # for their output patterns, the input functions with a job's values.
    TRAIN = "results/data/train.jsonl"
    CORPUS = "results/data/corpus.jsonl"

    @staticmethod
    def download(source: str) -> str:
        return f"results/downloads/{source}"

    @staticmethod
    def eval_data(evalset: str) -> str:
        return f"results/data/eval/{evalset}.jsonl"

    @staticmethod
    def base_weights(model: str) -> str:
        """A model's initial weights (``lite init-model``): tiny ones random, others downloaded."""
        return f"results/{model}/base"

    @staticmethod
    def pretrained(model: str) -> str:
        """A tiny model's weights after pretraining on the corpus."""
        return f"results/{model}/pretrained"

    def pretrains(self, model: str) -> bool:
        """Tiny base models are pretrained on the corpus when the config has a ``pretrain`` section."""
        return "pretrain" in self.config and self.model_config(model)["base"]["kind"] == "tiny"

    def tuning_base(self, model: str) -> str:
        """The weights every tuning of ``model`` starts from (the same for IT and LITE; a seed
        replica's are the main model's)."""
        if model in self.replica_seeds:
            model = self.main
        return self.pretrained(model) if self.pretrains(model) else self.base_weights(model)

    @staticmethod
    def tuned(model: str, tuning: str) -> str:
        return f"results/{model}/tuned/{tuning}"

    @staticmethod
    def generation(model: str, tuning: str, evalset: str, decoder: str) -> str:
        return f"results/{model}/generations/{tuning}/{evalset}/{decoder}.jsonl"

    @staticmethod
    def trace(model: str, tuning: str, evalset: str) -> str:
        return f"results/{model}/traces/{tuning}/{evalset}.jsonl"

    @staticmethod
    def alignment(model: str, tuning: str, evalset: str, table: str = "alignment") -> str:
        return f"results/{model}/analysis/{tuning}/{evalset}/{table}.csv"

    @staticmethod
    def thresholds(model: str, kind: str = "calibrated") -> str:
        return f"results/{model}/thresholds/{kind}.json"

    @staticmethod
    def exit_gates(model: str, tuning: str) -> str:
        """The exit gates (probes, saturation cut-offs) fitted on a tuning's calibration traces."""
        return f"results/{model}/probes/{tuning}.json"

    def calibrated_kinds(self) -> dict[str, float]:
        """Threshold sets chosen on the calibration traces, name -> target alignment: always
        ``calibrated``; ``aggressive`` too when ``calibration.aggressive_target`` is set (then the
        aggressive decoder uses it instead of configured values)."""
        kinds = {"calibrated": self.calibration_settings["target"]}
        if self.calibration_settings.get("aggressive_target") is not None:
            kinds["aggressive"] = self.calibration_settings["aggressive_target"]
        return kinds

    @staticmethod
    def judgment_file(model: str, judge: str, evalset: str, pair: str) -> str:
        """One judge's judgments of the pair named ``pair`` (``Pair.name``)."""
        return f"results/{model}/judgments/{judge}/{evalset}/{pair}.jsonl"

    def judgment(self, model: str, evalset: str, pair: Pair) -> str:
        """The workflow judge's judgments of ``pair``."""
        return self.judgment_file(model, self.judge, evalset, pair.name)

    @staticmethod
    def similarity(model: str, evalset: str, decoder: str) -> str:
        return f"results/{model}/similarity/{evalset}/final~{decoder}.csv"

    @staticmethod
    def figure(name: str, suffix: str = "pdf") -> str:
        """A figure (``pdf``) or one of its twins (``png``, ``caption.rst``)."""
        return f"results/figures/{name}.{suffix}"

    @staticmethod
    def table(name: str, suffix: str = "csv") -> str:
        """A table (``csv``) or one of its twins (``md``, ``html``, ``caption.rst``)."""
        return f"results/tables/{name}.{suffix}"

    # ---- judge pairs
    def pairs(self, model: str) -> list[Pair]:
        """Every pair judged for a model: each LITE decoder and IT fixed exit against its final."""
        pairs = []
        for tuning in ("it", "lite"):
            if tuning in self.tunings(model):
                pairs += [Pair(f"{tuning}.final", f"{tuning}.{d}") for d in self.decoders(model, tuning)[1:]]
        if self.is_main(model) and {"it", "lite"} <= set(self.tunings(model)):
            pairs.append(Pair("it.final", "lite.final"))
        return pairs

    def judgments(self, model: str, pairs: list[Pair] | None = None) -> list[str]:
        pairs = self.pairs(model) if pairs is None else pairs
        return [self.judgment(model, e, p) for e in self.evalsets for p in pairs]

    def generations(self, model: str, tuning: str, decoders: list[str]) -> list[str]:
        return [self.generation(model, tuning, e, d) for e in self.evalsets for d in decoders]

    def alignments(self, tunings: list[str], table: str = "alignment", model: str | None = None) -> list[str]:
        model = model or self.main
        present = [t for t in tunings if t in self.tunings(model)]
        return [self.alignment(model, t, e, table) for t in present for e in self.evalsets]

    # ---- artefacts (ARTEFACT_SPECS holds each one's facts)
    def artefact_inputs(self, name: str) -> list[str]:
        """The files one figure or table is drawn from (see lite.report for what each shows)."""
        spec = artefact_spec(name)
        return spec.inputs(self, spec)

    def judged_against_final(self, model: str, systems: list[str]) -> list[str]:
        """The judgments of LITE ``systems`` against LITE's final layer, then their generations."""
        pairs = [Pair("lite.final", f"lite.{s}") for s in systems]
        return self.judgments(model, pairs) + self.generations(model, "lite", ["final", *systems])

    def headline_inputs(self, model: str) -> list[str]:
        """What the headline findings of one model (the main one or a seed replica) read."""
        dyn = self.dynamic
        decoders = self.decoders(model, "lite")
        # the KV-cache finding reads every dynamic decoder and option judged
        dynamic = [d for d in decoders if decoder_name(d).thresholded]
        systems = [dyn, "dynamic-aggressive", *BASELINE_NAMES, *dynamic]
        systems = [s for s in _unique(systems) if s in decoders]
        pairs = [Pair("lite.final", f"lite.{s}") for s in systems] + [Pair("it.final", "lite.final")]
        pairs += [Pair("it.final", f"it.{d}") for d in self.fixed_decoders(model)]
        return (
            self.alignments(["it", "lite"], model=model)
            + self.alignments(["it", "lite"], "calibration", model=model)
            + self.judgments(model, pairs)
            + self.generations(model, "lite", ["final", *systems])
        )

    def seeds_inputs(self) -> list[str]:
        """``snakemake seeds``: the headline inputs of the main model (its configured seeds) and of
        every seed replica."""
        if not self.replica_seeds:
            raise ConfigError("seeds.replicas: `snakemake seeds` needs at least one replica seed")
        return [path for model in (self.main, *self.replica_seeds) for path in self.headline_inputs(model)]

    def seed_models_arg(self) -> str:
        """``lite seeds --models``: the main model and every replica, each with its seed."""
        models = {self.main: self.train_seed(self.main), **self.replica_seeds}
        return ",".join(f"{model}={seed}" for model, seed in models.items())

    def artefact_args(self, name: str) -> str:
        """``lite figure``/``lite table`` options of one artefact (its spec's ``options``)."""
        spec = artefact_spec(name)
        return " ".join(f"--{option} {self.artefact_option(spec, option)}" for option in spec.options)

    def artefact_option(self, spec: ArtefactSpec, option: str) -> str:
        """The value of one option the workflow passes: the reported dynamic decoder, the eval set
        of a per-category figure, the checkpoint layers an alignment or calibration figure marks
        and its verdict reads."""
        if option == "dynamic":
            return self.dynamic
        if option == "evalset":
            return self.category_evalset(spec)
        if option == "layers":
            return ",".join(map(str, self.early_checkpoints(self.main)))
        raise ValueError(f"{option!r}: not an option the workflow passes")

    def category_evalset(self, spec: ArtefactSpec) -> str:
        """The eval set a per-category figure shows: its ``category_evalset`` index, the first
        when there are fewer sets."""
        index = spec.category_evalset if spec.category_evalset < len(self.evalsets) else 0
        return self.evalsets[index]

    def artefacts(self) -> list[str]:
        """Artefacts this config can draw (each needs its tunings and decoders to be configured)."""
        main_tunings = set(self.tunings(self.main))
        decoders = set(self.decoders(self.main, "lite"))
        return [
            name
            for name, spec in ARTEFACT_SPECS.items()
            if set(spec.tunings) <= main_tunings and set(spec.decoders) <= decoders and spec.available(self)
        ]

    def all_targets(self) -> list[str]:
        """Every artefact, plus every judged pair (some decoders appear in no figure)."""
        artefacts = self.artefacts()
        figures = [self.figure(a) for a in artefacts if a in FIGURES]
        tables = [self.table(a) for a in artefacts if a in TABLES]
        judgments = [path for model in self.models for path in self.judgments(model)]
        # Table 5 needs people's ratings, so it joins `all` only once the config names raters.
        table5 = [TABLE5] if (self.config.get("human") or {}).get("raters") else []
        return figures + tables + _unique(judgments) + table5

    # ---- the Snakemake report
    @staticmethod
    def report_category(name: str, kind: str) -> str:
        """The report section of a figure or table; the headline numbers open the report."""
        if name == "headline":
            return "1. Headline numbers"
        return "2. Figures" if kind == "figure" else "3. Tables"

    @staticmethod
    def report_labels(name: str) -> dict[str, str]:
        """Report labels: a number that sorts the artefacts in the paper's order, then the name."""
        return {"#": f"{ARTEFACTS.index(name) + 1:02d}", "artefact": name}

    # ---- human ratings (Table 5; workflow/rules/human.smk, lite.human)
    def table5_inputs(self) -> dict[str, Any]:
        """The ratings database, the workflow judge's judgments of the rated pair and, with a
        ``judge.second`` section, the second judge's; plus the resolved ``human`` settings."""
        from lite.human.settings import HumanSettings
        from lite.judge.openai_compat import NAME as SECOND_JUDGE

        human = HumanSettings.from_config(self.config)
        pair = Pair(*human.systems)
        inputs = {
            "human": human,
            "db": human.database,
            "judgments": self.judgment(human.model, human.evalset, pair),
        }
        if self.config["judge"].get("second") is not None:
            inputs["second"] = self.judgment_file(human.model, SECOND_JUDGE, human.evalset, pair.name)
        return inputs


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---- the figures and tables: one entry each


def _always(plan: Plan) -> bool:
    return True


@dataclass(frozen=True)
class ArtefactSpec:
    """What the workflow knows of one figure or table: what it is drawn from, what it needs
    configured, the options its rule passes. lite.report holds, under the same name, the function
    that draws it, whose docstring is its caption."""

    kinds: tuple[str, ...]  # "figure", "table", or both
    inputs: Callable[[Plan, ArtefactSpec], list[str]]  # the files it is drawn from
    tunings: tuple[str, ...] = ()  # the main model's tunings it reads: not drawn without all of them
    decoders: tuple[str, ...] = ()  # optional LITE decoders of the main model it reads: likewise
    available: Callable[[Plan], bool] = _always  # any other condition for it to be drawn
    options: tuple[str, ...] = ()  # `lite figure`/`lite table` options passed (Plan.artefact_option)
    category_evalset: int = 0  # per-category figures: the index of the eval set shown


def _alignment_tables(table: str) -> Callable[[Plan, ArtefactSpec], list[str]]:
    """An alignment or calibration figure's inputs: its tunings' tables on every eval set."""
    return lambda plan, spec: plan.alignments(list(spec.tunings), table)


def _final_and_dynamic(plan: Plan, spec: ArtefactSpec) -> list[str]:
    """The main model's LITE generations of the final layer and the reported dynamic decoder."""
    return plan.generations(plan.main, "lite", ["final", plan.dynamic])


def _dynamic_options(plan: Plan) -> list[str]:
    """The main model's LITE decoders that are options of the reported dynamic decoder."""
    return [
        d
        for d in plan.decoders(plan.main, "lite")
        if decoder_name(d).option is not None and decoder_name(d).base == plan.dynamic
    ]


def _final_dynamic_and_options(plan: Plan, spec: ArtefactSpec) -> list[str]:
    """``_final_and_dynamic`` and the generations of the reported decoder's options (table1)."""
    return plan.generations(plan.main, "lite", ["final", plan.dynamic, *_dynamic_options(plan)])


def _per_category(plan: Plan, spec: ArtefactSpec) -> list[str]:
    """The headline pair's judgments and generations on the figure's eval set."""
    m, evalset = plan.main, plan.category_evalset(spec)
    return [plan.judgment(m, evalset, Pair("lite.final", f"lite.{plan.dynamic}"))] + [
        plan.generation(m, "lite", evalset, d) for d in ("final", plan.dynamic)
    ]


def _sweep_systems(plan: Plan) -> list[str]:
    """The main model's LITE decoders that choose their exit: dynamic ones, baselines, the sweep."""
    return [d for d in plan.decoders(plan.main, "lite") if decoder_name(d).family not in ("final", "fixed")]


FIGURE, TABLE = ("figure",), ("table",)
ARTEFACT_SPECS: dict[str, ArtefactSpec] = {
    "fig1": ArtefactSpec(
        FIGURE,
        lambda plan, spec: [
            path for model in plan.models for path in plan.judged_against_final(model, [plan.dynamic])
        ],
        tunings=("lite",),
        options=("dynamic",),
    ),
    "fig3": ArtefactSpec(
        FIGURE,
        lambda plan, spec: plan.judgments(
            plan.main, [Pair("it.final", f"it.{d}") for d in plan.fixed_decoders(plan.main)]
        ),
        tunings=("it",),
    ),
    "fig4": ArtefactSpec(
        FIGURE,
        lambda plan, spec: plan.judgments(plan.main, [Pair("it.final", "lite.final")]),
        tunings=("it", "lite"),
    ),
    "fig5": ArtefactSpec(FIGURE, _alignment_tables("alignment"), tunings=("it", "lite"), options=("layers",)),
    "fig6": ArtefactSpec(FIGURE, _alignment_tables("calibration"), tunings=("lite",), options=("layers",)),
    "fig7": ArtefactSpec(FIGURE, _final_and_dynamic, tunings=("lite",), options=("dynamic",)),
    "fig8": ArtefactSpec(
        FIGURE,
        lambda plan, spec: plan.generations(plan.main, "lite", [plan.dynamic]),
        tunings=("lite",),
        options=("dynamic",),
    ),
    # fig9 shows the first eval set's categories (Vicuna's role), fig10 the third's (WizardLM's).
    "fig9": ArtefactSpec(FIGURE, _per_category, tunings=("lite",), options=("dynamic", "evalset")),
    "fig10": ArtefactSpec(
        FIGURE, _per_category, tunings=("lite",), options=("dynamic", "evalset"), category_evalset=2
    ),
    "fig11": ArtefactSpec(FIGURE, _alignment_tables("calibration"), tunings=("it",), options=("layers",)),
    "fig12": ArtefactSpec(
        FIGURE,
        lambda plan, spec: plan.judged_against_final(plan.main, ["dynamic-aggressive"]),
        tunings=("lite",),
        decoders=("dynamic-aggressive",),
    ),
    "fig13": ArtefactSpec(
        FIGURE, _alignment_tables("alignment"), tunings=("it", "lite_weighted"), options=("layers",)
    ),
    "fig14": ArtefactSpec(
        FIGURE, _alignment_tables("alignment"), tunings=("lite", "lite_weighted"), options=("layers",)
    ),
    "fig15": ArtefactSpec(
        FIGURE, _alignment_tables("calibration"), tunings=("lite_weighted",), options=("layers",)
    ),
    # Beyond the paper: the quality/cost frontier of a threshold sweep, drawn as a figure and a table.
    "frontier": ArtefactSpec(
        FIGURE + TABLE,
        lambda plan, spec: plan.judged_against_final(plan.main, _sweep_systems(plan)),
        tunings=("lite",),
        available=lambda plan: bool(plan.sweep()),
    ),
    "table1": ArtefactSpec(TABLE, _final_dynamic_and_options, tunings=("lite",), options=("dynamic",)),
    "table2": ArtefactSpec(
        TABLE,
        lambda plan, spec: [plan.similarity(plan.main, e, plan.dynamic) for e in plan.evalsets],
        tunings=("lite",),
    ),
    "table3": ArtefactSpec(
        TABLE,
        lambda plan, spec: (
            plan.generations(plan.second, "lite", ["final", plan.dynamic]) if plan.second else []
        ),
        available=lambda plan: plan.second is not None,
        options=("dynamic",),
    ),
    # Final-layer generations only for their prompt truncations (any system of the model cuts alike).
    "table4": ArtefactSpec(
        TABLE,
        lambda plan, spec: (
            [plan.eval_data(e) for e in plan.evalsets] + plan.generations(plan.main, "lite", ["final"])
        ),
        tunings=("lite",),
    ),
    "table6": ArtefactSpec(
        TABLE,
        lambda plan, spec: plan.judged_against_final(
            plan.main, [plan.dynamic, *_dynamic_options(plan), *BASELINE_NAMES]
        ),
        tunings=("lite",),
        decoders=BASELINE_NAMES,
    ),
    # The run's headline numbers beside the paper's: the report's first page.
    "headline": ArtefactSpec(
        TABLE,
        lambda plan, spec: plan.headline_inputs(plan.main),
        tunings=("it", "lite"),
        options=("dynamic",),
    ),
}
# Every figure and table name (``frontier`` is both), in the report's order.
ARTEFACTS = list(ARTEFACT_SPECS)
FIGURES = [name for name, spec in ARTEFACT_SPECS.items() if "figure" in spec.kinds]
TABLES = [name for name, spec in ARTEFACT_SPECS.items() if "table" in spec.kinds]
TABLE5 = Plan.table("table5")  # human ratings: built by workflow/rules/human.smk, not by `table`


def artefact_spec(name: str) -> ArtefactSpec:
    if name not in ARTEFACT_SPECS:
        raise ConfigError(f"unknown artefact {name!r}; known: {', '.join(ARTEFACTS)}")
    return ARTEFACT_SPECS[name]
