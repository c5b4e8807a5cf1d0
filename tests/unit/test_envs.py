"""The rules' conda environments (envs/*.yaml), checked without conda: every ``conda:`` directive
names an env file; each env file pins exactly the versions pyproject.toml pins for what it
installs; a rule whose command can import the model stack (torch, transformers, ...) uses the
model env and every other rule the light one; and Snakemake accepts the envs in a ``--sdm conda``
dry run, with a stand-in ``conda`` that answers only the queries such a run makes."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from test_workflow import BIN, CI_CONFIG, copy_workflow, snakemake

import lite
from lite.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LIGHT_ENV = "envs/analysis.yaml"
MODEL_ENV = "envs/model.yaml"
# a command that can import one of these (pyproject's model extra) needs the model env
MODEL_STACK = {Requirement(r).name for r in PYPROJECT["project"]["optional-dependencies"]["model"]}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_pins(extras: set[str]) -> dict[str, str]:
    """name -> pinned version of everything pyproject installs with ``extras``; every pin ``==``."""
    project = PYPROJECT["project"]
    pending = [*project["dependencies"], *(r for e in extras for r in project["optional-dependencies"][e])]
    pins: dict[str, str] = {}
    while pending:
        requirement = Requirement(pending.pop())
        if requirement.name == project["name"]:  # an extra that names others: lite-workflow[model]
            pending += [r for e in requirement.extras for r in project["optional-dependencies"][e]]
            continue
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"pyproject: {requirement} unpinned"
        pins[_normalized(requirement.name)] = specifiers[0].version
    return pins


def _env_file(path: str) -> tuple[list[str], dict[str, str], set[str]]:
    """An env file's conda dependencies, its pip pins (name -> version) and the extras with which
    it installs this repository (its ``--editable ..[extras]`` line)."""
    env = yaml.safe_load((ROOT / path).read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"], path
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    pins, extras = {}, None
    for line in pip:
        editable = re.fullmatch(r"--editable \.\.(?:\[([\w,]+)\])?", line)
        if editable:
            extras = set(editable[1].split(",")) if editable[1] else set()
            continue
        pin = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s=<>!~,;]+)", line)
        assert pin, f"{path}: {line!r} is not pinned with =="
        assert _normalized(pin[1]) not in pins, f"{path}: {pin[1]} pinned twice"
        pins[_normalized(pin[1])] = pin[2]
    assert extras is not None, f"{path}: does not install this repository (--editable ..)"
    return conda, pins, extras


def _env_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "envs").glob("*.yaml"))


@pytest.mark.parametrize("path", _env_files())
def test_env_pins_are_pyprojects(path):
    conda, pins, extras = _env_file(path)
    minimum = re.fullmatch(r">=(\d+\.\d+)", PYPROJECT["project"]["requires-python"])[1]
    assert conda == [f"python={minimum}", "pip"], f"{path}: conda installs only the Python and pip"
    # the repository's install pulls pyproject's pins; the env lists each one, at the same version
    expected = _project_pins(extras)
    assert pins == expected, f"{path} vs pyproject: {sorted(set(pins.items()) ^ set(expected.items()))}"


def test_the_light_env_has_no_model_stack():
    _, pins, extras = _env_file(LIGHT_ENV)
    assert not extras and not MODEL_STACK & set(pins)
    _, pins, _ = _env_file(MODEL_ENV)
    assert MODEL_STACK <= set(pins)


# The parsed rules (shards > 1 adds the merge rules); the API has no public accessor for them.
RULES_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[Path("config.yaml")]),
        snakefile=Path("Snakefile"),
        workdir=Path("."),
    )
    rules = {
        rule.name: {
            "conda": rule.conda_env and str((Path(rule.snakefile).parent / rule.conda_env).resolve()),
            "shell": rule.shellcmd,
        }
        for rule in workflow._workflow.rules
    }
print(json.dumps(rules))
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> dict[str, dict]:
    """Rule name -> its env file (relative to the workflow) and its shell command."""
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["generation"]["shards"] = 2
    workdir = copy_workflow(tmp_path_factory.mktemp("rules"), config).resolve()
    result = subprocess.run(
        [sys.executable, "-c", RULES_SCRIPT], cwd=workdir, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = json.loads(result.stdout.strip().splitlines()[-1])
    for rule in rules.values():
        if rule["conda"]:
            rule["conda"] = str(Path(rule["conda"]).relative_to(workdir))
    return rules


def test_every_conda_directive_names_an_env_file(rules):
    named = {name: rule["conda"] for name, rule in rules.items() if rule["shell"]}
    assert named and all(named.values()), f"rules without an env: {[n for n, e in named.items() if not e]}"
    assert {"merge_generations", "table5", "judge_second"} <= set(named)
    for name, env in named.items():
        assert env in _env_files(), f"rule {name}: {env} is not an env file"


def _module_file(module: str) -> Path | None:
    """The source file of a lite module, found without importing it (None: not a lite module)."""
    package = Path(lite.__file__).parent
    path = package.joinpath(*module.split(".")[1:])
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def reachable_imports(module: str) -> tuple[set[str], set[str]]:
    """The lite modules that running ``module`` can load and the top-level names of the other
    modules they import: every import statement counts, in a function or not, so this is what the
    code could import, never less than what one run does."""
    seen, outside, pending = set(), set(), [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        for node in ast.walk(ast.parse(_module_file(name).read_text())):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                # ``from lite.x import y``: y may be a module of its own
                imported = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in imported:
                if target.split(".")[0] == "lite":
                    pending += [target] if _module_file(target) else []
                elif target.split(".")[0] not in (*sys.stdlib_module_names, "__future__"):
                    outside.add(target.split(".")[0])
    return seen, outside


def _command(shell: str) -> str:
    """The ``lite`` command a rule's shell runs (``{params.launcher}`` is lite or torchrun of lite.cli)."""
    found = re.search(r"(?:^|exec )(?:lite|\{params\.launcher\}) ([a-z0-9-]+)", shell)
    assert found, f"no lite command in {shell!r}"
    return found[1]


def test_rules_that_can_import_the_model_stack_use_the_model_env(rules):
    distributions = {
        k: [_normalized(d) for d in v] for k, v in importlib.metadata.packages_distributions().items()
    }
    for name, rule in rules.items():
        if not rule["shell"]:
            continue
        command = _command(rule["shell"])
        _, outside = reachable_imports(f"lite.commands.{COMMANDS[command][0]}")
        needs = {d for top in outside for d in distributions.get(top, [top])}
        expected = MODEL_ENV if needs & MODEL_STACK else LIGHT_ENV
        assert rule["conda"] == expected, (
            f"rule {name} (lite {command}, imports {sorted(needs)}): use {expected}"
        )
        _, pins, _ = _env_file(rule["conda"])
        assert needs <= set(pins), f"rule {name}: {rule['conda']} lacks {sorted(needs - set(pins))}"


STAND_IN_CONDA = """#!/bin/sh
# What a --sdm conda dry run asks of conda; anything else (creating an env) fails.
case "$*" in
  "info --json") echo '{"conda_prefix": "PREFIX", "platform": "linux-64"}' ;;
  "--version") echo "conda 24.11.3" ;;
  "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}}' ;;
  *) echo "stand-in conda: '$*' is not answered" >&2; exit 1 ;;
esac
"""


def test_conda_dry_run_accepts_the_envs(tmp_path):
    stand_in = tmp_path / "bin" / "conda"
    stand_in.parent.mkdir()
    stand_in.write_text(STAND_IN_CONDA.replace("PREFIX", str(tmp_path / "prefix")))
    stand_in.chmod(0o755)
    workdir = copy_workflow(tmp_path / "workflow")
    path = f"{stand_in.parent}:{BIN}:/usr/bin:/bin"
    result = snakemake(workdir, "--sdm", "conda", "-n", "all", timeout=300, env={"PATH": path})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for env in (LIGHT_ENV, MODEL_ENV):
        assert f"Conda environment {env} will be created" in output
