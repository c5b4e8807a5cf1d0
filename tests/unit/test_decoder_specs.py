"""lite.decoders.names.decoder_name: what a decoder's name says (family, layer, sweep scale, threshold
set, reference, meters), the one place outside the decoders that parses a name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lite.decoders.names import BASELINE_NAMES, FAMILIES, WORKFLOW_DECODERS, DecoderName, decoder_name
from lite.decoders.specs import decoder_from_name
from lite.io import InputError
from lite.plan import Plan, sweep_decoder

# name -> (family, layer, scale, threshold set, label)
FACTS = {
    "final": ("final", None, None, None, "final"),
    "fixed-L3": ("fixed", 3, None, None, "fixed"),
    "fixed-L12": ("fixed", 12, None, None, "fixed"),
    "dynamic": ("dynamic", None, None, None, "dynamic"),
    "dynamic-paper": ("dynamic", None, None, "paper", "paper"),
    "dynamic-aggressive": ("dynamic", None, None, "aggressive", "aggressive"),
    "dynamic-calibrated": ("dynamic", None, None, "calibrated", "calibrated"),
    "dynamic-x0.5": ("sweep", None, 0.5, "paper", "sweep"),
    "dynamic-x2": ("sweep", None, 2.0, "paper", "sweep"),
    "random-half": ("baseline", None, None, None, "baseline"),
    "random-k": ("baseline", None, None, None, "baseline"),
    "sequential": ("baseline", None, None, None, "baseline"),
    "speculative-L2": ("speculative", 2, None, None, "speculative"),
    "speculative-adaptive": ("speculative", None, None, None, "speculative"),
}


@pytest.mark.parametrize(("name", "facts"), FACTS.items())
def test_a_name_says_its_family_layer_scale_and_threshold_set(name, facts):
    decoder = decoder_name(name)
    assert decoder.name == name
    assert (decoder.family, decoder.layer, decoder.scale, decoder.threshold_set, decoder.label) == facts


def test_every_family_has_a_name():
    assert {decoder_name(name).family for name in FACTS} == set(FAMILIES)
    assert all(decoder_name(name).family == "baseline" for name in BASELINE_NAMES)


# name -> (thresholded, early exit)
POLICIES = {
    "final": (False, False),
    "fixed-L3": (False, False),
    "dynamic-paper": (True, True),
    "dynamic-x0.5": (True, True),
    "random-k": (False, True),
    "speculative-L2": (False, False),
}


@pytest.mark.parametrize(("name", "expected"), POLICIES.items())
def test_which_decoders_exit_by_a_policy(name, expected):
    decoder = decoder_name(name)
    assert (decoder.thresholded, decoder.early_exit) == expected


# (name, kv_cache) -> (decodes with a KV cache, counts its work in a Meter, the decoder it reproduces)
RUNS = {
    ("final", False): (True, False, "hf-generate"),
    ("final", True): (True, False, "hf-generate"),
    ("fixed-L3", False): (True, False, None),
    ("fixed-L3", True): (True, False, None),
    ("dynamic-calibrated", False): (False, False, None),
    ("dynamic-calibrated", True): (True, True, "nocache"),
    ("dynamic-x2", True): (True, True, "nocache"),
    ("sequential", False): (False, False, None),
    ("random-half", True): (True, True, "nocache"),
    ("speculative-L2", False): (True, True, "hf-generate"),
    ("speculative-adaptive", True): (True, True, "hf-generate"),
}


@pytest.mark.parametrize(("run", "expected"), RUNS.items(), ids=[f"{n}-kv{int(kv)}" for n, kv in RUNS])
def test_how_a_decoder_runs_and_what_it_must_reproduce(run, expected):
    name, kv_cache = run
    decoder = decoder_name(name)
    assert (decoder.cached(kv_cache), decoder.meters(kv_cache), decoder.reference(kv_cache)) == expected


@pytest.mark.parametrize(
    "name", ["beam", "fixed-L", "fixed-Lx", "dynamic-", "dynamic-x", "dynamic-xx", "dynamic-foo", "random"]
)
def test_unknown_names_raise_listing_the_valid_ones(name):
    with pytest.raises(
        InputError, match=rf"unknown decoder '{re.escape(name)}'; valid: final, fixed-L\{{k\}}"
    ):
        decoder_name(name)


def test_a_layer_is_read_not_checked():
    """Bounds are the model's: ``decoder_from_name`` checks them, a name alone does not."""
    assert decoder_name("fixed-L0").layer == 0
    with pytest.raises(InputError, match="layer 0 is outside"):
        decoder_from_name("fixed-L0", [2])


def test_the_workflow_generates_every_name_but_bare_dynamic_and_speculative_decoding():
    for name in FACTS:
        generated = name != "dynamic" and decoder_name(name).family != "speculative"
        assert bool(re.fullmatch(WORKFLOW_DECODERS, name)) == generated, name


def test_the_names_the_plan_builds_parse_back():
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config.yaml").read_text())
    config["frontier"] = {"scales": [0.25, 1, 2.5]}
    plan = Plan(config)
    fixed = [decoder_name(d) for d in plan.fixed_decoders(plan.main)]
    assert [(d.family, d.layer) for d in fixed] == [("fixed", k) for k in plan.early_checkpoints(plan.main)]
    assert [decoder_name(d).scale for d in plan.sweep()] == [0.25, 1.0, 2.5]
    assert decoder_name(sweep_decoder(0.25)) == DecoderName(
        "dynamic-x0.25", "sweep", scale=0.25, threshold_set="paper"
    )


def test_a_spec_names_itself():
    """``DecoderSpec.kind`` is how it runs (a sweep point as dynamic, a baseline by its policy);
    ``named`` is what its name says."""
    sweep = decoder_from_name("dynamic-x0.5", [2], {2: 0.9}, n_layers=4)
    assert (sweep.kind, sweep.named.family, sweep.named.scale) == ("dynamic", "sweep", 0.5)
    baseline = decoder_from_name("random-half", [2], n_layers=4)
    assert (baseline.kind, baseline.named.family) == ("random-half", "baseline")
    assert decoder_from_name("speculative-L2", [2], n_layers=4).named.reference(False) == "hf-generate"


def test_a_family_outside_the_known_ones_is_refused():
    with pytest.raises(ValueError, match="DecoderName.family must be one of"):
        DecoderName("beam", "beam")
