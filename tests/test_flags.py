"""Settings declared once: the flags a rule writes from the config are read back by the command
into the same settings, for tuning and both API judges."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest
import yaml

from lite.commands import judge as judge_command
from lite.commands import tune as tune_command
from lite.flags import flag_args, settings_from_args
from lite.judge import ClaudeSettings, judge_cli_args
from lite.judge.openai_compat import OpenAISettings, second_cli_args
from lite.tune import TuneConfig

ROOT = Path(__file__).resolve().parents[1]
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
