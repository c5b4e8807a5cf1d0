"""``judge: {name: claude}`` in the workflow config: the DAG's judging goes through the Claude judge.

The real workflow (a copy, on tests/workflow/config.ci.yaml) runs with the real anthropic SDK,
pointed at the local Messages API server (tests/support/messages_api_server.py) through
ANTHROPIC_BASE_URL, as a gateway would be. It checks what a user sees: judgments made by the
configured model, one request per distinct prompt (both orders), a failed call failing the job
and being the only call the rerun makes, nothing to do on a second run, the cache answering
after the judgment file is deleted, ``batches: true`` sending one Message Batch, the key written
nowhere; that a dry run needs no key, and that a missing key, a bad key or a dead endpoint stops
a run that judges at start, before any job runs.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from messages_api_server import MessagesAPIServer, answers
from scripted_api_server import error
from test_workflow import CI_CONFIG, copy_workflow, planned_jobs, snakemake

from lite.io import read_jsonl
from lite.judge import read_judgments
from lite.judge.prompts import load_prompt, question_text

KEY = "sk-ant-test-wf-Q8r2dummyKEY7731"
DECOY = "sk-ant-decoy-token-5521"  # set as ANTHROPIC_AUTH_TOKEN, which lite never reads
# Not CI's defaults (claude-sonnet-5-5, 256), so the records prove the config reached the judge.
MODEL = "claude-haiku-4-5"
MAX_TOKENS = 200
PAIR = "results/tiny4/judgments/claude/vicuna/it.final~lite.final.jsonl"
LOG = "logs/tiny4/judge/claude/vicuna/it.final~lite.final.log"
GEN_A = "results/tiny4/generations/it/vicuna/final.jsonl"
GEN_B = "results/tiny4/generations/lite/vicuna/final.jsonl"


def claude_config() -> dict:
    config = yaml.safe_load(CI_CONFIG.read_text())
    # CI's 30-step models answer every prompt with EOS (empty text), so IT and LITE would give
    # identical answers and each instance's two orders would be one prompt, asked once. An IT
    # model tuned for one step still babbles, so every instance needs two distinct prompts.
    config["tunings"]["it"]["max_steps"] = 1
    config["judge"] = {
        "name": "claude",
        "claude": {**config["judge"]["claude"], "model": MODEL, "max_tokens": MAX_TOKENS, "max_retries": 1},
    }
    return config


def snakemake_env(workdir: Path, *args: str, env: dict[str, str], timeout: int = 600):
    """test_workflow.snakemake with extra environment variables."""
    return snakemake(workdir, *args, timeout=timeout, env=env)


def score(answer: str) -> int:
    """The scripted judge's score of one answer: fixed per text, so both orders agree."""
    return 1 + int(hashlib.sha256(answer.encode("utf-8")).hexdigest(), 16) % 10


def scripted_reply(body: dict) -> str:
    first, second = answers(body)
    return f"{score(first)} {score(second)}\nScripted scores for the workflow test."


def expected_prompts(workdir: Path) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Every prompt the pair needs (A first, then B first, per instance), and id -> (answer A, answer B)."""
    prompt = load_prompt("pairwise-v1")
    gen_a = {r["id"]: r for r in read_jsonl(workdir / GEN_A)}
    gen_b = {r["id"]: r for r in read_jsonl(workdir / GEN_B)}
    prompts, texts = [], {}
    for key, rec_a in gen_a.items():
        question = question_text(rec_a)
        a, b = rec_a["text"], gen_b[key]["text"]
        prompts += [prompt.render(question, a, b), prompt.render(question, b, a)]
        texts[key] = (a, b)
    return prompts, texts


def contents(calls: list[dict]) -> list[str]:
    return [call["body"]["messages"][0]["content"] for call in calls]


def cost_rows(workdir: Path) -> list[dict]:
    with open(workdir / f"{PAIR}.cost.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_claude_in_config_judges_the_dag_through_the_api(tmp_path):
    workdir = copy_workflow(tmp_path / "wf", claude_config())
    with MessagesAPIServer(answer=scripted_reply, expected_key=KEY) as server:
        env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": server.url}

        # 1. Tune, generate and judge; the first call to arrive fails (a 400 is not retried).
        server.script.append(error(400))
        first = snakemake_env(workdir, "--cores", "2", PAIR, env=env, timeout=900)
        log = (workdir / LOG).read_text()
        assert first.returncode != 0, (first.stdout + first.stderr)[-4000:]
        assert "1 judge order(s) failed after all retries" in log, log[-2000:]
        assert "BadRequestError (HTTP 400, invalid_request_error)" in log
        assert not (workdir / PAIR).exists()  # Snakemake removes a failed job's output ...
        summary = json.loads((workdir / f"{PAIR}.summary.json").read_text())
        assert summary["failed_orders"] == 1  # ... the summary beside it keeps the count

        prompts, texts = expected_prompts(workdir)
        assert len(texts) == 6 and all(a != b for a, b in texts.values())
        # Both orders of every instance, each asked exactly once.
        calls = server.calls()
        assert Counter(contents(calls)) == Counter(prompts) and len(calls) == 12
        for call in calls:
            assert call["key_matches"]  # the server answers 401 to any other key
            assert call["anthropic_version"] == "2026-10-21"
            body = call["body"]
            assert body["model"] == MODEL and body["max_tokens"] == MAX_TOKENS
            assert not {"temperature", "top_p", "top_k"} & set(body)
        failed = [call for call in calls if call["status"] == 400]
        assert len(failed) == 1

        # 2. The rerun asks only the failed prompt again.
        second = snakemake_env(workdir, "--cores", "2", PAIR, env=env, timeout=300)
        assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
        retried = server.calls()[len(calls) :]
        assert contents(retried) == contents(failed) and retried[0]["status"] == 200
        assert planned_jobs(second)["judge"] == 1 and set(planned_jobs(second)) == {"judge"}

        records = read_judgments(workdir / PAIR)
        assert [r["id"] for r in records] == list(texts)
        for record in records:
            a, b = texts[record["id"]]
            assert record["judge"] == {
                "name": "claude",
                "model": MODEL,
                "api_version": "2026-10-21",
                "prompt": "pairwise-v1",
                "prompt_version": 1,
                "sampling": {},
                "max_tokens": MAX_TOKENS,
            }
            assert (record["system_a"], record["system_b"]) == ("it.final", "lite.final")
            assert record["parsed"] and record["consistent"]
            assert (record["score_a"], record["score_b"]) == (score(a), score(b))
            assert record["outcome"] == (
                "win" if score(a) > score(b) else "loss" if score(a) < score(b) else "tie"
            )
            assert [o["model"] for o in record["orders"]] == [f"{MODEL}-20990101"] * 2
            assert all(o["error"] is None for o in record["orders"])
        rows = cost_rows(workdir)
        assert [(r["calls_made"], r["cached"], r["calls_failed"]) for r in rows] == [
            (str(len(calls) - 1), "0", "1"),
            ("1", str(len(calls) - 1), "0"),
        ]
        assert {r["model"] for r in rows} == {MODEL} and rows[1]["mode"] == "messages"

        # 3. A second run of the same target does nothing.
        third = snakemake_env(workdir, "--cores", "2", PAIR, env=env, timeout=300)
        assert third.returncode == 0 and "Nothing to be done" in third.stdout + third.stderr
        # 4. Without the judgment file the job reruns, and the cache answers every prompt (the
        # run's start-up check of the endpoint is its one request, a free one).
        before = len(server.requests)
        (workdir / PAIR).unlink()
        fourth = snakemake_env(workdir, "--cores", "2", PAIR, env=env, timeout=300)
        assert fourth.returncode == 0, (fourth.stdout + fourth.stderr)[-4000:]
        assert [r["path"] for r in server.requests[before:]] == [f"/v1/models/{MODEL}"]
        assert read_judgments(workdir / PAIR) == records
        assert cost_rows(workdir)[-1]["calls_made"] == "0"
        assert cost_rows(workdir)[-1]["cached"] == str(len(calls))

        # 5. batches: true (and a new max_tokens, so nothing is cached) sends one Message Batch.
        config = claude_config()
        config["judge"]["claude"].update(batches=True, poll_interval_s=0.05, max_tokens=MAX_TOKENS + 1)
        (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        before = len(server.requests)
        fifth = snakemake_env(workdir, "--cores", "2", PAIR, env=env, timeout=300)
        assert fifth.returncode == 0, (fifth.stdout + fifth.stderr)[-4000:]
        assert planned_jobs(fifth) == {"judge": 1}
        new = server.requests[before:]
        assert not [r for r in new if r["path"] == "/v1/messages"]
        (batch,) = [r for r in new if r["path"] == "/v1/messages/batches" and r["method"] == "POST"]
        asked = [item["params"] for item in batch["body"]["requests"]]
        assert sorted(p["messages"][0]["content"] for p in asked) == sorted(prompts)
        assert {(p["model"], p["max_tokens"]) for p in asked} == {(MODEL, MAX_TOKENS + 1)}
        batched = read_judgments(workdir / PAIR)
        scores = [(r["id"], r["score_a"], r["score_b"]) for r in records]
        assert [(r["id"], r["score_a"], r["score_b"]) for r in batched] == scores
        assert {r["judge"]["max_tokens"] for r in batched} == {MAX_TOKENS + 1}
        assert cost_rows(workdir)[-1]["mode"] == "batches" and cost_rows(workdir)[-1]["calls_made"] == "12"

    cache = workdir / "results/judge_cache"
    assert len(list(cache.glob("??/*.json"))) == 2 * len(calls)  # each max_tokens its own calls
    assert len(list((cache / "batches" / "done").glob("*.json"))) == 1  # the batch's manifest, retired
    # 6. The key is in no file the run wrote (results, logs, Snakemake's own metadata).
    written = [path for path in workdir.rglob("*") if path.is_file()]
    assert workdir / LOG in written and workdir / f"{PAIR}.cost.csv" in written
    leaks = [str(path) for path in written if KEY.encode() in path.read_bytes()]
    assert leaks == []


def test_dry_run_routes_every_judgment_through_claude(tmp_path):
    workdir = copy_workflow(tmp_path, claude_config())
    result = snakemake_env(workdir, "-n", "-p", "all", env={"ANTHROPIC_API_KEY": KEY}, timeout=120)
    jobs = planned_jobs(result)
    text = result.stdout + result.stderr
    commands = [line for line in text.splitlines() if line.startswith("Shell command: lite judge")]
    assert jobs["judge"] == len(commands) > 0
    for command in commands:
        assert f"--judge claude --model {MODEL} --max-tokens {MAX_TOKENS} " in command
        assert "--cache-dir results/judge_cache" in command and "/judgments/claude/" in command
    assert "judgments/reference" not in text and KEY not in text


@pytest.mark.parametrize("key", [None, "  "], ids=["unset", "blank"])
def test_missing_key_stops_the_workflow_before_any_job(tmp_path, key):
    workdir = copy_workflow(tmp_path, claude_config())
    env = {"ANTHROPIC_AUTH_TOKEN": DECOY, **({} if key is None else {"ANTHROPIC_API_KEY": key})}
    # Planning needs no secret ...
    dry = snakemake_env(workdir, "-n", "all", env=env, timeout=120)
    assert planned_jobs(dry)["judge"] > 0
    # ... a run that judges checks the key before its first job.
    result = snakemake_env(workdir, "--cores", "1", "all", env=env, timeout=120)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "JudgeSetupError" in text and "export ANTHROPIC_API_KEY=<your key>" in text
    assert DECOY not in text and "Finished job" not in text
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()


def test_a_run_without_judging_needs_no_key(tmp_path):
    workdir = copy_workflow(tmp_path, claude_config())
    result = snakemake_env(workdir, "--cores", "1", "results/data/eval/vicuna.jsonl", env={}, timeout=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_dry_run_of_the_paper_config_needs_no_key(tmp_path):
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "paper-7b.yaml").read_text())
    workdir = copy_workflow(tmp_path, config)
    result = snakemake_env(workdir, "-n", "all", env={}, timeout=180)
    jobs = planned_jobs(result)
    assert jobs["judge"] > 0 and jobs["tune"] == 4


@pytest.mark.parametrize("problem", ["closed port", "bad key"])
def test_unusable_endpoint_stops_the_workflow_before_any_job(tmp_path, problem):
    workdir = copy_workflow(tmp_path, claude_config())
    with MessagesAPIServer(expected_key=KEY) as server:
        url, key = server.url, KEY
        if problem == "closed port":
            server.stop()  # nothing listens there any more
        else:
            key = "sk-ant-test-wrong-key-0000"
        env = {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": url}
        result = snakemake_env(workdir, "--cores", "1", "all", env=env, timeout=180)
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "JudgeUnavailable" in text, text[-3000:]
    assert url in text and ("cannot reach" if problem == "closed port" else "rejected the key") in text
    assert key not in text and "Finished job" not in text
    assert not (workdir / "results").exists()
