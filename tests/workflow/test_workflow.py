"""The Snakemake workflow itself: lint, format, config errors, what a dry run schedules, and one
real end-to-end run of the whole DAG on the CI config (tests/workflow/config.ci.yaml)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_annotate_browser import browser_paths, open_browser  # noqa: F401 (fixtures)

from lite.plan import Plan

ROOT = Path(__file__).resolve().parents[2]
CI_CONFIG = ROOT / "tests" / "workflow" / "config.ci.yaml"
BIN = Path(sys.executable).parent


def snakemake(
    workdir: Path, *args: str, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Snakemake in a clean environment (plus ``env``), killed after ``timeout`` seconds."""
    base = {"PATH": f"{BIN}:/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        ["timeout", "--kill-after=30", str(timeout), str(BIN / "snakemake"), *args],
        cwd=workdir,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
    )


def copy_workflow(dest: Path, config: dict | None = None) -> Path:
    """A copy of the workflow (Snakefile, rules, schema, report) with its own config.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    shutil.copytree(
        ROOT / "workflow", dest / "workflow", ignore=shutil.ignore_patterns("lite", "__pycache__")
    )
    shutil.copytree(ROOT / "envs", dest / "envs")  # rules name their conda env; Snakemake reads it
    config = yaml.safe_load(CI_CONFIG.read_text()) if config is None else config
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's "Job stats" table."""
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M) if m[1] != "total"}


def test_lint_is_clean():
    result = snakemake(ROOT, "--lint", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c.update(surprise=1), "surprise"),
        (lambda c: c["train"].update(max_steps="many"), "max_steps"),
        (lambda c: c["models"]["tiny4"].update(checkpoints=[2, 6]), "models.tiny4.checkpoints"),
        (lambda c: c["models"]["tiny4"]["thresholds"]["paper"].update({2: 1.5}), "1.5"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(tmp_path, edit, key):
    config = yaml.safe_load(CI_CONFIG.read_text())
    edit(config)
    result = snakemake(copy_workflow(tmp_path, config), "-n", "all", timeout=120)
    assert result.returncode != 0
    assert key in result.stdout + result.stderr


def test_fig5_schedules_no_judging_and_no_dynamic_exit(tmp_path):
    jobs = planned_jobs(snakemake(copy_workflow(tmp_path), "-n", "results/figures/fig5.pdf", timeout=120))
    assert jobs["tune"] == 2 and jobs["trace"] >= 1
    assert "judge" not in jobs and "generate" not in jobs and "calibrated_thresholds" not in jobs


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The whole DAG, for real, on the CI config."""
    workdir = copy_workflow(tmp_path_factory.mktemp("dag"))
    result = snakemake(workdir, "--cores", "2", "all", timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    return workdir


@pytest.mark.slow
def test_whole_dag_writes_every_artefact(finished_run):
    targets = Plan(yaml.safe_load(CI_CONFIG.read_text())).all_targets()
    assert targets and all((finished_run / target).stat().st_size > 0 for target in targets)
    for name in [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]:
        for suffix in ("pdf", "png"):
            path = finished_run / "results" / "figures" / f"fig{name}.{suffix}"
            assert path.stat().st_size > 1000, path
    for name in [1, 2, 3, 4, 6]:
        for suffix in ("csv", "md", "html", "caption.rst"):
            assert (finished_run / "results" / "tables" / f"table{name}.{suffix}").stat().st_size > 0
    # every rule wrote its log, and results carry the config that made them
    assert list((finished_run / "logs").rglob("*.log"))
    assert (finished_run / "results/tiny4/generations/lite/vicuna/final.jsonl.config.json").exists()


@pytest.mark.slow
def test_nothing_left_to_do_after_the_run(finished_run):
    assert planned_jobs(snakemake(finished_run, "-n", "all", timeout=120)) == {}


@pytest.mark.slow
def test_seeds_retune_the_main_model_and_test_every_finding_on_every_seed(finished_run):
    planned = snakemake(finished_run, "-n", "-p", "seeds", timeout=120)
    jobs = planned_jobs(planned)
    # the replica's IT and LITE from the shared pretrained weights, with its own seed; nothing of
    # the main run is redone
    assert jobs["tune"] == 2 and not {"pretrain", "init_model", "prepare_train"} & set(jobs)
    tunes = [line for line in planned.stdout.splitlines() if " tune --base results/tiny4/pretrained" in line]
    assert len(tunes) == 2 and all(
        "results/tiny4-seed1/tuned/" in line and "--seed 1" in line for line in tunes
    )
    result = snakemake(finished_run, "--cores", "2", "seeds", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    table = pd.read_csv(finished_run / "results/tables/seeds.csv")
    assert {"seed 0", "seed 1", "mean", "sd", "min", "max", "target", "every seed"} <= set(table.columns)
    assert set(table["finding"]) >= {"fig5", "fig4", "table6"}
    # the same numbers as each run's own headline: seed 0's fig4 scores are the main run's
    headline = pd.read_csv(finished_run / "results/tables/headline.csv")
    fig4 = headline[headline["finding (where shown)"].str.endswith("(fig4)")]["this run"].iloc[0]
    scores = table[(table["finding"] == "fig4") & table["measure"].str.endswith(" score")]["seed 0"]
    assert [f"{v:.2f}" in fig4 for v in scores] == [True, True]
    assert planned_jobs(snakemake(finished_run, "-n", "all", timeout=120)) == {}


def _edited(workdir: Path, edit, env: dict[str, str] | None = None) -> dict[str, int]:
    original = (workdir / "config.yaml").read_text()
    config = yaml.safe_load(original)
    edit(config)
    try:
        (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return planned_jobs(snakemake(workdir, "-n", "all", timeout=120, env=env))
    finally:
        (workdir / "config.yaml").write_text(original)


@pytest.mark.slow
def test_editing_thresholds_reruns_dynamic_exit_but_never_tuning(finished_run):
    jobs = _edited(finished_run, lambda c: c["models"]["tiny4"]["thresholds"]["paper"].update({2: 0.5}))
    # dynamic-paper and the sweep's dynamic-x2 and dynamic-x2-probe-copy (the paper's thresholds
    # scaled), one job each for both eval sets; the exit gates need no refit
    assert jobs.get("generate") == 3 and "exit_probes" not in jobs
    assert not {"tune", "pretrain", "init_model", "trace", "calibrated_thresholds"} & set(jobs)


@pytest.mark.slow
def test_editing_the_judge_reruns_only_judging_and_what_follows(finished_run):
    # switching to the Claude judge (a dry run: the key is only checked, never used)
    jobs = _edited(finished_run, lambda c: c["judge"].update(name="claude"), env={"ANTHROPIC_API_KEY": "dry"})
    assert jobs and set(jobs) <= {"judge", "figure", "table", "all"}
    plan = Plan(yaml.safe_load(CI_CONFIG.read_text()))
    assert jobs["judge"] == sum(len(plan.judgments(model)) for model in plan.models)
    # settings of a judge that is not in use change nothing
    assert _edited(finished_run, lambda c: c["judge"]["claude"].update(max_tokens=300)) == {}


SHIPPED_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda path: path.stem)
def test_every_shipped_config_plans_on_a_clean_clone_reading_nothing_outside_it(path, tmp_path):
    config = yaml.safe_load(path.read_text())
    sources = [config["data"]["train"], config["data"]["calibration"], *config["data"]["eval"].values()]
    for source in sources:
        local = source.get("path")
        # null: the pinned download; a local copy is the user's to set, never a path of this machine's
        assert local is None or not (Path(local).is_absolute() or ".." in Path(local).parts), (path, local)
    result = snakemake(copy_workflow(tmp_path, config), "-n", "all", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_a_config_without_a_bench_section_plans_everything_else(tmp_path):
    config = yaml.safe_load(CI_CONFIG.read_text())
    del config["bench"]
    result = snakemake(copy_workflow(tmp_path, config), "-n", "all", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "bench" not in planned_jobs(result)


def test_a_tunings_loss_settings_reach_its_tune_command_only(tmp_path):
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["tunings"]["lite"].update(final_weight=6, intermediate_ramp=0.5, exit_target="final")
    result = snakemake(copy_workflow(tmp_path, config), "-n", "-p", "results/tiny4/tuned/lite", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (command,) = [
        line for line in result.stdout.splitlines() if " tune --base results/tiny4/pretrained" in line
    ]
    loss = "--final-weight 6 --intermediate-ramp 0.5 --exit-target final"
    assert f"--scheme uniform {loss} --layers " in command
    config["tunings"]["lite"]["final_weight"] = 0
    result = snakemake(copy_workflow(tmp_path / "bad", config), "-n", timeout=120)
    assert result.returncode != 0 and "final_weight" in result.stdout + result.stderr


@pytest.mark.slow
def test_report_opens_on_the_headline_table(finished_run, open_browser):  # noqa: F811
    """A fresh report in headless Chromium: its first page shows the run's headline table with a
    verdict per finding; every figure opens as an image and every table as HTML."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    result = snakemake(finished_run, "--report", "report.html", "all", timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    browser = open_browser()
    browser.set_window_size(1280, 2400)  # the whole first page in one screenshot
    browser.get((finished_run / "report.html").as_uri())
    table = WebDriverWait(browser, 60).until(lambda b: b.find_element(By.ID, "headline"))
    if os.environ.get("LITE_SCREENSHOTS"):
        browser.save_screenshot(str(Path(os.environ["LITE_SCREENSHOTS"]) / "report-landing.png"))
    assert table.is_displayed()
    headline = pd.read_csv(finished_run / "results/tables/headline.csv")
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    verdicts = [row.find_elements(By.TAG_NAME, "td")[-1].get_attribute("textContent") for row in rows]
    assert verdicts == headline["verdict"].tolist()
    assert all(re.match(r"(holds|does not hold here) \(", verdict) for verdict in headline["verdict"])
    files = browser.execute_script("return Object.values(results).map(r => [r.filename, r.mime_type])")
    mimes = {name: mime for name, mime in files}
    figures = [name for name in mimes if name.startswith("fig")]
    assert figures and all(mimes[name] == "image/png" for name in figures)
    tables = {name.rsplit(".", 1)[0] for name in mimes if name.startswith("table")}
    assert tables and all(mimes[f"{name}.html"] == "text/html" and f"{name}.csv" in mimes for name in tables)
