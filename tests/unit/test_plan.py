"""lite.plan: what the workflow builds for a config, and the config checks the schema can't make."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from lite.plan import ARTEFACTS, ConfigError, Pair, Plan, check_config, scaled_thresholds
from lite.sections import LatencyConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_config_passes(config):
    check_config(config)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["models"]["tiny12"].update(checkpoints=[3, 6, 9, 11]), "models.tiny12.checkpoints"),
        (lambda c: c["models"]["tiny12"].update(checkpoints=[6, 3, 12]), "strictly ascending"),
        (lambda c: c["models"]["tiny12"]["thresholds"]["paper"].update({7: 0.9}), "thresholds.paper.7"),
        (lambda c: c["models"]["tiny12"]["thresholds"]["paper"].update({12: 0.9}), "thresholds.paper.12"),
        (lambda c: c["generation"]["decoders"].append("fixed-L4"), "fixed-L4"),
        (lambda c: c["models"]["tiny15"].update(tunings=["it"]), "models.tiny15.tunings"),
        (lambda c: c["data"]["eval"].update(calibration={"source": "synthetic"}), "data.eval.calibration"),
        (
            lambda c: c["calibration"].pop("aggressive_target"),
            "models.tiny12.thresholds.aggressive",
        ),
        (lambda c: c["data"]["eval"]["koala"].update(source="koala"), "data.eval.koala: koala has no gold"),
        (lambda c: c["data"].pop("corpus"), "data.corpus: required by the pretrain section"),
        (lambda c: c["seeds"].update(replicas=[0, 1]), "seeds.replicas: 0 is train.seed"),
        (lambda c: c["models"].update({"tiny12-seed1": c["models"]["tiny15"]}), "seeds.replicas: 1 makes"),
    ],
)
def test_bad_config_names_the_key(config, edit, message):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        check_config(bad)


def test_main_model_decoders_and_pairs(config):
    plan = Plan(config)
    assert plan.main == "tiny12" and plan.second == "tiny15"
    assert plan.decoders("tiny12", "it") == ["final", "fixed-L2", "fixed-L5", "fixed-L8"]
    lite_decoders = plan.decoders("tiny12", "lite")
    assert lite_decoders[0] == "final" and "dynamic-calibrated" in lite_decoders
    assert len(lite_decoders) == len(set(lite_decoders))
    # the second model only generates what fig1 and table3 need
    assert plan.decoders("tiny15", "lite") == ["final", "dynamic-calibrated"]
    assert plan.decoders("tiny12", "lite_weighted") == []
    pairs = plan.pairs("tiny12")
    assert Pair("it.final", "lite.final") in pairs
    assert Pair("it.final", "it.fixed-L2") in pairs
    assert all(p.a.endswith(".final") for p in pairs)


def test_fig5_needs_traces_only(config):
    plan = Plan(config)
    inputs = plan.artefact_inputs("fig5")
    assert inputs and all("/analysis/" in path and path.endswith("alignment.csv") for path in inputs)
    assert {path.split("/")[3] for path in inputs} == {"it", "lite"}


def test_artefacts_follow_the_configured_tunings(config):
    config["models"]["tiny12"]["tunings"] = ["lite"]
    del config["models"]["tiny15"]
    plan = Plan(config)
    artefacts = plan.artefacts()
    for needs_it in ("fig3", "fig4", "fig5", "fig11", "fig13", "table3"):
        assert needs_it not in artefacts
    assert "fig1" in artefacts and "table1" in artefacts
    with pytest.raises(ConfigError, match="unknown artefact"):
        plan.artefact_inputs("fig2")


def test_tiny_models_tune_from_their_pretrained_base(config):
    plan = Plan(config)
    assert plan.tuning_base("tiny12") == "results/tiny12/pretrained"
    config["models"]["tiny15"]["base"] = {"kind": "hf", "source": "some/model", "n_layers": 15}
    assert Plan(config).tuning_base("tiny15") == "results/tiny15/base"  # hf models come pretrained
    del config["pretrain"]
    assert Plan(config).tuning_base("tiny12") == "results/tiny12/base"


def test_the_threshold_sweep_is_planned_judged_and_drawn(config):
    config["frontier"] = {"scales": [0.5, 2]}
    plan = Plan(config)
    assert plan.sweep() == ["dynamic-x0.5", "dynamic-x2"]
    assert {"dynamic-x0.5", "dynamic-x2"} <= set(plan.decoders("tiny12", "lite"))
    assert "dynamic-x2" not in plan.decoders("tiny15", "lite")  # the main model's sweep only
    assert Pair("lite.final", "lite.dynamic-x2") in plan.pairs("tiny12")
    inputs = plan.artefact_inputs("frontier")
    assert "results/tiny12/judgments/reference/koala/lite.final~lite.dynamic-x0.5.jsonl" in inputs
    assert "results/tiny12/generations/lite/koala/random-half.jsonl" in inputs
    targets = plan.all_targets()
    assert "results/figures/frontier.pdf" in targets and "results/tables/frontier.csv" in targets
    del config["frontier"]
    assert "frontier" not in Plan(config).artefacts()


def test_scaled_thresholds_keep_the_shape():
    paper = {2: 0.95, 4: 0.9, 6: 0.8}
    assert scaled_thresholds(paper, 1) == paper
    assert scaled_thresholds(paper, 2) == {2: 0.9, 4: 0.8, 6: 0.6}
    assert scaled_thresholds(paper, 0.5) == {2: 0.975, 4: 0.95, 6: 0.9}
    assert scaled_thresholds(paper, 6) == {2: 0.7, 4: 0.4, 6: 0.0}  # never below 0


def test_headline_reads_alignment_judgments_and_generations(config):
    inputs = Plan(config).artefact_inputs("headline")
    assert any(p.endswith("/analysis/it/vicuna/alignment.csv") for p in inputs)
    assert "results/tiny12/judgments/reference/vicuna/it.final~lite.final.jsonl" in inputs
    assert "results/tiny12/generations/lite/vicuna/dynamic-calibrated.jsonl" in inputs
    # its verdicts on confidence (fig6, fig11) and on IT's fixed exits (fig3)
    assert "results/tiny12/analysis/it/vicuna/calibration.csv" in inputs
    assert "results/tiny12/judgments/reference/vicuna/it.final~it.fixed-L2.jsonl" in inputs


def test_aggressive_thresholds_are_calibrated_at_a_lower_target(config):
    plan = Plan(config)
    assert plan.calibrated_kinds() == {"calibrated": 0.95, "aggressive": 0.85}
    assert plan.thresholds("tiny12", "aggressive") == "results/tiny12/thresholds/aggressive.json"
    # without the target, the configured values are used (and required)
    config["calibration"]["aggressive_target"] = None
    config["models"]["tiny12"]["thresholds"]["aggressive"] = {2: 0.85, 5: 0.8, 8: 0.7}
    config["models"]["tiny15"]["thresholds"]["aggressive"] = {3: 0.85, 6: 0.8, 9: 0.7, 12: 0.6}
    check_config(config)
    assert Plan(config).calibrated_kinds() == {"calibrated": 0.95}


def test_artefact_args_name_the_reported_decoder_eval_set_and_layers(config):
    plan = Plan(config)
    assert plan.artefact_args("fig1") == "--dynamic dynamic-calibrated"
    assert plan.artefact_args("fig9") == "--dynamic dynamic-calibrated --evalset vicuna"
    assert plan.artefact_args("fig10") == "--dynamic dynamic-calibrated --evalset wizardlm"
    assert plan.artefact_args("fig6") == "--layers 2,5,8"  # the main model's early checkpoints
    assert plan.artefact_args("fig5") == "--layers 2,5,8"  # marked, and read by the caption's verdict
    assert plan.early_checkpoints("tiny15") == [3, 6, 9, 12]
    # fig12 keeps its own default (the aggressive thresholds), as do the options-free artefacts
    assert plan.artefact_args("fig12") == "" and plan.artefact_args("table2") == ""


def test_report_sections_and_labels_follow_the_paper():
    assert ARTEFACTS[0] == "fig1" and ARTEFACTS.count("frontier") == 1
    assert Plan.report_category("headline", "table") == "1. Headline numbers"
    assert Plan.report_category("frontier", "figure") == "2. Figures"
    assert Plan.report_category("frontier", "table") == "3. Tables"
    assert Plan.report_labels("fig1") == {"#": "01", "artefact": "fig1"}
    labels = [Plan.report_labels(name)["#"] for name in ARTEFACTS]
    assert labels == sorted(labels) and len(set(labels)) == len(ARTEFACTS)


def test_seed_replicas_retune_the_main_model_from_its_shared_base(config):
    plan = Plan(config)
    assert plan.replica_seeds == {"tiny12-seed1": 1, "tiny12-seed2": 2}
    replica = "tiny12-seed1"
    # the same base weights, its own seeds, IT and LITE only
    assert plan.tuning_base(replica) == plan.tuning_base("tiny12") == "results/tiny12/pretrained"
    assert (plan.train_seed(replica), plan.generation_seed(replica)) == (1, 1)
    assert (plan.train_seed("tiny12"), plan.generation_seed("tiny12")) == (0, 0)
    assert plan.tunings(replica) == ["it", "lite"]
    assert plan.checkpoints(replica) == plan.checkpoints("tiny12")
    # what the headline reads: of the threshold sweep only its options (the KV-cache finding)
    options = {
        f"dynamic-x{k:g}-{o}" for k in config["frontier"]["scales"] for o in config["frontier"]["options"]
    }
    assert options and set(plan.decoders(replica, "lite")) == {
        "final",
        "dynamic-calibrated",
        "dynamic-aggressive",
        "random-half",
        "random-k",
        "sequential",
        *options,
    }
    assert plan.decoders(replica, "it") == plan.decoders("tiny12", "it")
    # replicas stay out of `all` and the figures
    assert not any(replica in path for path in plan.all_targets())
    inputs = plan.seeds_inputs()
    assert {p.split("/")[1] for p in inputs} == {"tiny12", "tiny12-seed1", "tiny12-seed2"}
    assert plan.headline_inputs("tiny12") == plan.artefact_inputs("headline")
    assert plan.seed_models_arg() == "tiny12=0,tiny12-seed1=1,tiny12-seed2=2"


def test_seeds_need_a_replica(config):
    config.pop("seeds")
    plan = Plan(config)
    assert plan.all_models() == ["tiny12", "tiny15"]
    with pytest.raises(ConfigError, match="seeds.replicas"):
        plan.seeds_inputs()


@pytest.mark.parametrize(
    "overlay", sorted((ROOT / "configs" / "overlays").glob("*.yaml")), ids=lambda path: path.name
)
def test_overlays_merged_over_the_default_pass(config, overlay):
    """Each partial config under configs/overlays/, merged as ``--configfile config.yaml OVERLAY`` does."""
    from snakemake.utils import update_config

    update_config(config, yaml.safe_load(overlay.read_text()))
    check_config(config)
    fields = {field.name for field in dataclasses.fields(LatencyConfig)}
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in config["bench"].items() if k in fields}
    LatencyConfig(**settings)  # what `lite latency` checks when the rule runs
