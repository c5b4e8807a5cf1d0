"""Settings declared once: the flags a rule writes from the config are read back by the command
into the same settings, for tuning, both API judges, generation, calibration and the latency
benchmark; and each of those config sections is its dataclass."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

import pytest
import yaml

from lite.analysis import ThresholdConfig
from lite.commands import generate as generate_command
from lite.commands import judge as judge_command
from lite.commands import latency as latency_command
from lite.commands import thresholds as thresholds_command
from lite.commands import tune as tune_command
from lite.flags import flag_args, settings_from_args
from lite.jobs import Jobs
from lite.judge import ClaudeSettings, judge_cli_args
from lite.judge.openai_compat import OpenAISettings, second_cli_args
from lite.plan import Plan
from lite.sections import GenerationSettings, LatencyConfig
from lite.tune import TuneConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]


def parse(command, flags: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(flags)


def test_flag_args_writes_values_in_order_then_switches():
    section = {"lr": 1e-05, "bf16": True, "chunk_size": None, "name": "a b", "fused_head": False, "seed": 0}
    assert flag_args(section) == "--lr 1e-05 --name 'a b' --seed 0 --bf16"
    assert flag_args({"skip_long_prompts": True, "bf16": True}) == "--bf16 --skip-long-prompts"
    with pytest.raises(TypeError, match="layers: a flag takes a single value"):
        flag_args({"layers": [2, 4]})


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_the_tune_rule_flags_give_the_configured_settings(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # deepspeed config paths are relative to the workflow
    train = yaml.safe_load(path.read_text())["train"]
    # what workflow/rules/tune.smk writes for one tuning
    rule = "--scheme linear --layers 2,4 --max-steps 7 " + flag_args(
        {key: value for key, value in train.items() if key != "max_steps"}
    )
    args = parse(tune_command, ["--base", "b", "--train", "t", "--out", "o", *shlex.split(rule)])
    expected = TuneConfig(**{**train, "scheme": "linear", "layers": (2, 4), "max_steps": 7})
    assert settings_from_args(TuneConfig, args) == expected


def test_tune_options_are_checked_when_parsed():
    base = ["--base", "b", "--train", "t", "--out", "o"]
    assert settings_from_args(
        TuneConfig, parse(tune_command, [*base, "--scheme", "uniform", "--epochs", "2"])
    ) == (TuneConfig(scheme="uniform", epochs=2.0))
    for bad in (
        ["--epochs", "2"],  # neither a scheme nor layer weights
        ["--scheme", "uniform", "--layer-weights", "4:1", "--epochs", "2"],
        ["--scheme", "uniform"],  # neither max steps nor epochs
        ["--scheme", "uniform", "--layers", "2,x", "--epochs", "2"],
        ["--scheme", "cubic", "--epochs", "2"],
    ):
        with pytest.raises(SystemExit):
            parse(tune_command, [*base, *bad])


def judge_settings(cls, flags: str):
    return settings_from_args(
        cls, parse(judge_command, [*shlex.split(flags), "--a", "a", "--b", "b", "--out", "o"])
    )


def test_the_judge_rules_flags_give_the_configured_settings():
    claude = {"model": "claude-haiku-4-5", "concurrency": 8, "batches": True, "api_version": "2023-06-01",
              "sampling": "temperature0", "timeout_s": 30.0, "cache_dir": "my cache"}  # fmt: skip
    flags = judge_cli_args({"judge": {"name": "claude", "claude": claude}})
    assert flags.startswith("--judge claude ") and flags.endswith(" --batches")
    assert judge_settings(ClaudeSettings, flags) == ClaudeSettings(**claude)
    second = {"base_url": "http://127.0.0.1:8000/v1", "model": "m", "temperature": 0.5, "max_retries": 0,
              "api_key_env": "MY_KEY", "max_tokens_field": "max_completion_tokens"}  # fmt: skip
    flags = second_cli_args({"judge": {"second": second}})
    assert flags.startswith("--judge openai ")
    assert judge_settings(OpenAISettings, flags) == OpenAISettings(**second)


# Each config section whose settings are a command's options, with the keys on one side only:
# the section's own (which decoders, shards, which prompts and thresholds the rule passes) and the
# command's own (what the rule sets otherwise, or never).
SECTIONS = {
    "generation": (GenerationSettings, {"shards", "decoders"}, set()),
    "calibration": (ThresholdConfig, {"aggressive_target"}, {"layers"}),
    "bench": (LatencyConfig, {"evalset", "category", "thresholds"}, {"draft_threshold", "threads", "seed"}),
}


@pytest.mark.parametrize("section", SECTIONS)
def test_each_config_section_is_its_settings_dataclass(section):
    """Every key of the section in the schema is a field of its dataclass, and every field a key,
    but the ones named above: a default can then live in the dataclass alone."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    cls, workflow_only, command_only = SECTIONS[section]
    keys = set(schema["properties"][section]["properties"])
    fields = {field.name for field in dataclasses.fields(cls)}
    assert keys - workflow_only == fields - command_only
    assert workflow_only <= keys and not command_only & keys


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_the_generate_and_bench_rule_flags_give_the_configured_settings(path):
    """The settings a rule passes, read back by the command, equal the config's, with the
    dataclass's defaults where the config leaves a setting out."""
    config = yaml.safe_load(path.read_text())
    plan = Plan(config)
    generation, jobs = plan.generation_settings, Jobs(plan)
    flags = (
        f"--max-new-tokens {generation['max_new_tokens']} --batch-size {generation['batch_size']}"
        f" --seed {plan.generation_seed(plan.main)} {jobs.device_args()}"
        f" --agreement-prompts {generation['agreement_prompts']}"
        + (" --kv-cache" if generation["kv_cache"] else "")
    )
    common = "--model m --evalset e --out o --model-name n --tuning t --evalset-name v --decoder final"
    args = parse(generate_command, shlex.split(f"{common} --checkpoints 2 {flags}"))
    configured = {k: v for k, v in config["generation"].items() if k not in SECTIONS["generation"][1]}
    assert settings_from_args(GenerationSettings, args) == GenerationSettings(**configured)
    if "bench" in config:
        bench = plan.bench_settings
        flags = (
            f"--prompts {bench['prompts']} --batch-sizes {jobs.latency_list('batch_sizes')}"
            f" --max-new-tokens {bench['max_new_tokens']} --repeats {bench['repeats']}"
            f" --draft-layers {jobs.latency_list('draft_layers')} --draft-tokens {bench['draft_tokens']}"
            f" --widths {jobs.latency_list('widths')} --eos {bench['eos']} {jobs.latency_exit_args(None)}"
        )
        common = "--model m --evalset e --checkpoints 2 --thresholds {} --out o --figure f"
        read = settings_from_args(LatencyConfig, parse(latency_command, shlex.split(f"{common} {flags}")))
        configured = {k: v for k, v in config["bench"].items() if k not in SECTIONS["bench"][1]}
        assert read == LatencyConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in configured.items()}
        )


def test_calibration_defaults_are_the_thresholds_commands():
    plan = Plan({**yaml.safe_load(CONFIGS[0].read_text()), "calibration": {}})
    args = parse(thresholds_command, ["--traces", "t", "--layers", "2,4", "--out", "o"])
    default = settings_from_args(ThresholdConfig, args)
    assert default == ThresholdConfig((2, 4))
    assert {k: plan.calibration_settings[k] for k in ("target", "min_count", "bin_width")} == {
        "target": default.target,
        "min_count": default.min_count,
        "bin_width": default.bin_width,
    }
    assert plan.calibrated_kinds() == {"calibrated": default.target}
