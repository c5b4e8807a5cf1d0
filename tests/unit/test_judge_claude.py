"""The Claude judge with the real anthropic SDK, pointed at a local Messages API server."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shlex
from pathlib import Path

import anthropic
import pytest
from messages_api_server import sdk_server
from scripted_api_server import drop, error, ok, slow
from test_judge_protocol import write_generations

from lite.io import InputError
from lite.judge import (
    ClaudeSettings,
    JudgeSetupError,
    JudgeUnavailable,
    JudgingFailed,
    check_claude_ready,
    judge_files,
)
from lite.judge.claude import ClaudeJudge
from lite.judge.cost import price_for
from lite.judge.prompts import load_prompt
from lite.judge.records import load_pair

KEY = "sk-ant-test-Zq7secretKEY0042"


@pytest.fixture
def server(monkeypatch):
    with sdk_server(monkeypatch, KEY) as api:
        yield api


@pytest.fixture
def gens(tmp_path):
    items_a = [
        ("q1", "Name a colour.", "Red.", None),
        ("q2", "Add 2 and 3.", "The sum is 5.", None),
        ("q3", "Say hello.", "Hello {world}!", None),
    ]
    items_b = [
        ("q1", "Name a colour.", "Blue is a colour of the sky.", None),
        ("q2", "Add 2 and 3.", "5", None),
        ("q3", "Say hello.", "Hi.", None),
    ]
    gen = tmp_path / "gen"
    gen.mkdir()
    a = write_generations(gen / "a.jsonl", "lite", "final", items_a)
    b = write_generations(gen / "b.jsonl", "lite", "dynamic-paper", items_b)
    return a, b


def settings(tmp_path, **overrides) -> ClaudeSettings:
    values = {"model": "claude-sonnet-5-5", "cache_dir": str(tmp_path / "results" / "judge_cache"),
              "concurrency": 1, "max_retries": 2, "timeout_s": 0.5, "poll_interval_s": 0.01}  # fmt: skip
    values.update(overrides)
    return ClaudeSettings(**values)


def run(tmp_path, gens, name="out.jsonl", **overrides):
    out = tmp_path / "results" / "judgments" / name
    summary = judge_files("claude", *gens, out, claude=settings(tmp_path, **overrides))
    return out, summary


def read_records(out):
    from lite.judge import read_judgments

    return read_judgments(out)


def test_request_shape_and_records(tmp_path, gens, server):
    out, summary = run(tmp_path, gens)
    calls = server.calls()
    assert len(calls) == 6  # 3 instances x 2 orders
    prompt = load_prompt("appendix-a-v1")
    expected = [
        prompt.render("Name a colour.", "Red.", "Blue is a colour of the sky."),
        prompt.render("Name a colour.", "Blue is a colour of the sky.", "Red."),
    ]
    for call in calls:
        assert call["anthropic_version"] == "2026-10-21"
        assert call["auth"] == "Bearer <redacted>" and call["key_matches"] is True
        body = call["body"]
        assert set(body) == {"model", "max_tokens", "messages"}  # no temperature / top_p / top_k
        assert body["model"] == "claude-sonnet-5-5" and body["max_tokens"] == 512
    assert [c["body"]["messages"] for c in calls[:2]] == [[{"role": "user", "content": t}] for t in expected]
    assert "Hello {world}!" in calls[4]["body"]["messages"][0]["content"]  # braces survive rendering
    records = read_records(out)
    assert records[0]["judge"] == {
        "name": "claude", "model": "claude-sonnet-5-5", "api_version": "2026-10-21",
        "prompt": "appendix-a-v1", "prompt_version": 1, "sampling": {}, "max_tokens": 512,
    }  # fmt: skip
    assert records[0]["orders"][0]["model"] == "claude-sonnet-5-5-20990101"  # the API's resolved id
    # The server scores by word count: "Red." 2 vs 7 words -> B wins in both orders.
    assert records[0]["outcome"] == "loss" and records[0]["consistent"] is True
    assert summary["calls_made"] == 6 and summary["failed_orders"] == 0


def test_temperature0_is_sent_with_the_older_api_version(tmp_path, gens, server):
    run(tmp_path, gens, sampling="temperature0")
    calls = server.calls()
    assert calls and all(c["status"] == 200 for c in calls)
    assert all(c["anthropic_version"] == "2023-06-01" and c["body"]["temperature"] == 0 for c in calls)
    records = read_records(tmp_path / "results" / "judgments" / "out.jsonl")
    assert records[0]["judge"]["sampling"] == {"temperature": 0}
    assert records[0]["judge"]["api_version"] == "2023-06-01"


def test_sampling_parameters_are_rejected_at_the_new_api_version(tmp_path, server):
    client = anthropic.Anthropic(base_url=server.url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs are not permitted"):
        client.messages.create(
            model="claude-sonnet-5-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}],
            extra_body={"temperature": 0},
        )  # fmt: skip
    with pytest.raises(
        InputError, match="field 'sampling': temperature0 needs an API version before 2026-10-21"
    ):
        ClaudeSettings(sampling="temperature0", api_version="2026-10-21")


def test_garbled_replies_are_recorded_not_guessed(tmp_path, gens, server):
    server.script.extend(
        [ok("8 7\nBoth fine."), ok("Assistant 1: 7\nAssistant 2: 8"),  # q1: consistent, A wins
         ok("Here are my scores.\n8/10 7/10"), ok("I cannot decide between them."),  # q2: unparseable
         ok("9 4"), ok("9 4"),  # q3: position bias -> tie, inconsistent
         ok("Still undecided.")]  # q2's second order, asked once more
    )  # fmt: skip
    out, summary = run(tmp_path, gens)
    q1, q2, q3 = read_records(out)
    assert (q1["score_a"], q1["score_b"], q1["outcome"]) == (8.0, 7.0, "win")
    assert q2["parsed"] is False and q2["orders"][1]["raw"] == "Still undecided."
    assert q2["orders"][1]["reasked"] and q2["orders"][1]["first_raw"] == "I cannot decide between them."
    assert q2["orders"][0]["scores"] == [8, 7] and q2["score_a"] is None
    assert (q3["outcome"], q3["consistent"]) == ("tie", False)
    assert summary["unparseable_orders"] == 1 and summary["inconsistent"] == 1
    assert summary["reasked_orders"] == 1 and len(server.calls()) == 7
    assert summary["inconsistency_rate"] == 0.5  # of the 2 parsed instances


def test_transient_failures_are_retried_by_the_sdk(tmp_path, gens, server):
    # The first call meets every failure the API and the network produce, then succeeds.
    server.script.extend([error(429, retry_after=0.01), error(529), error(500), slow(2.0), drop()])
    out, summary = run(tmp_path, gens, max_retries=5)
    assert [c["action"] for c in server.calls()[:6]] == ["error", "error", "error", "slow", "drop", "answer"]
    assert [c["status"] for c in server.calls()[:3]] == [429, 529, 500]
    assert len(server.calls()) == 6 + 5
    assert summary["failed_orders"] == 0 and summary["parsed"] == 3


def test_failures_after_all_retries_are_recorded_and_only_they_are_retried(tmp_path, gens, server):
    server.script.extend([error(529), error(529), error(529)])  # max_retries=2: three attempts, all fail
    with pytest.raises(JudgingFailed, match="1 judge order"):
        run(tmp_path, gens)
    out = tmp_path / "results" / "judgments" / "out.jsonl"
    q1 = read_records(out)[0]
    assert q1["parsed"] is False and q1["orders"][0]["raw"] is None
    assert "OverloadedError (HTTP 529, overloaded_error): Overloaded" in q1["orders"][0]["error"]
    assert len(server.calls()) == 3 + 5
    rows = list(csv.DictReader(open(out.with_name("out.jsonl.cost.csv"))))
    assert rows[0]["calls_failed"] == "1" and rows[0]["calls_made"] == "5"
    # The rerun pays for the failed call only.
    _, summary = run(tmp_path, gens)
    assert len(server.calls()) == 3 + 5 + 1
    assert summary["failed_orders"] == 0 and summary["cached"] == 5 and summary["calls_made"] == 1


def test_a_rerun_makes_no_call(tmp_path, gens, server):
    out, _ = run(tmp_path, gens)
    first = out.read_text()
    n = len(server.requests)
    _, summary = run(tmp_path, gens)
    assert len(server.requests) == n  # nothing at all reached the server
    assert out.read_text() == first
    assert summary["cached"] == 6 and summary["calls_made"] == 0


def test_identical_answers_are_asked_once(tmp_path, server):
    gen = tmp_path / "gen"
    gen.mkdir()
    a = write_generations(gen / "a.jsonl", "it", "final", [("q1", "Hi", "same", None)])
    b = write_generations(gen / "b.jsonl", "lite", "final", [("q1", "Hi", "same", None)])
    _, summary = run(tmp_path, (a, b))
    assert len(server.calls()) == 1  # both orders render the same prompt
    assert summary["tie"] == 1


def test_cost_table(tmp_path, gens, server):
    out, _ = run(tmp_path, gens)
    usage = [(c["body"], c["status"]) for c in server.calls()]
    assert all(status == 200 for _, status in usage)
    rows = list(csv.DictReader(open(out.with_name("out.jsonl.cost.csv"))))
    assert len(rows) == 1
    row = rows[0]
    cached = [Path(p) for p in (tmp_path / "results" / "judge_cache").rglob("*.json")]
    entries = [json.loads(p.read_text()) for p in cached]
    tokens_in = sum(e["usage"]["input_tokens"] for e in entries)
    tokens_out = sum(e["usage"]["output_tokens"] for e in entries)
    assert (int(row["input_tokens"]), int(row["output_tokens"])) == (tokens_in, tokens_out)
    assert price_for("claude-sonnet-5-5") == (2.0, 10.0)
    assert price_for("claude-sonnet-4-5-20250929") == (3.0, 15.0)
    assert price_for("claude-opus-4-9") is None  # an unknown version gets no price, not a neighbour's
    assert price_for("gpt-4") is None
    assert float(row["est_cost_usd"]) == pytest.approx((tokens_in * 2 + tokens_out * 10) / 1e6, abs=1e-6)
    assert row["mode"] == "messages" and "estimate" in row["price_source"]
    run(tmp_path, gens)  # a rerun adds a row that paid nothing
    rows = list(csv.DictReader(open(out.with_name("out.jsonl.cost.csv"))))
    assert len(rows) == 2 and rows[1]["calls_made"] == "0" and float(rows[1]["est_cost_usd"]) == 0.0


def test_batches_mode(tmp_path, gens, server):
    server.batch_polls_to_end = 2
    out, summary = run(tmp_path, gens, batches=True)
    assert len(server.calls("/v1/messages/batches")) == 1
    assert not server.calls()  # no per-message calls
    created = server.calls("/v1/messages/batches")[0]["body"]["requests"]
    assert len(created) == 6 and all(set(r["params"]) == {"model", "max_tokens", "messages"} for r in created)
    assert summary["parsed"] == 3 and summary["calls_made"] == 6
    rows = list(csv.DictReader(open(out.with_name("out.jsonl.cost.csv"))))
    assert rows[0]["mode"] == "batches" and rows[0]["batch_discount"] == "0.5"
    n = len(server.requests)
    run(tmp_path, gens, batches=True)
    assert len(server.requests) == n  # cached: no batch, no poll


def test_the_key_is_written_nowhere(tmp_path, gens, server):
    logs = tmp_path / "logs"
    logs.mkdir()
    handler = logging.FileHandler(logs / "judge.log")
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # the SDK's and httpx's debug logs included
    try:
        # A call that fails after all retries, then a 401 that stops the run.
        server.script.extend([error(529), error(529), error(529), error(401)])
        with pytest.raises(JudgeUnavailable, match="rejected the key"):
            run(tmp_path, gens, batches=False)
        run(tmp_path, gens, name="again.jsonl", batches=True)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    files = [p for d in ("results", "logs") for p in (tmp_path / d).rglob("*") if p.is_file()]
    assert len(files) > 10 and (logs / "judge.log").stat().st_size > 0
    for path in files:
        assert KEY not in path.read_text(errors="replace"), path
        assert KEY[-12:] not in path.read_text(errors="replace"), path


def test_check_claude_ready(monkeypatch):
    config = {"judge": {"name": "claude", "claude": {"model": "claude-haiku-4-5", "concurrency": 8}}}
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(JudgeSetupError, match="export ANTHROPIC_API_KEY=<your key>"):
        check_claude_ready(config)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "   ")
    with pytest.raises(JudgeSetupError):
        check_claude_ready(config)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    ready = check_claude_ready(config)
    assert ready.model == "claude-haiku-4-5" and ready.concurrency == 8
    assert check_claude_ready({"judge": {"name": "reference"}}) is None
    with pytest.raises(InputError, match="unknown field"):
        check_claude_ready({"judge": {"name": "claude", "claude": {"temprature": 0}}})
    with pytest.raises(InputError, match="judge.name"):
        check_claude_ready({"judge": {"name": "gpt4"}})


def test_an_empty_key_is_called_empty_not_unset(monkeypatch):
    config = {"judge": {"name": "claude"}}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")
    with pytest.raises(JudgeSetupError, match="ANTHROPIC_API_KEY, which is set but empty") as caught:
        check_claude_ready(config)
    assert "not set" not in str(caught.value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", " \t")
    with pytest.raises(JudgeSetupError, match="which holds only whitespace"):
        check_claude_ready(config)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(JudgeSetupError, match="which is not set"):
        check_claude_ready(config)


def test_a_new_wording_under_the_same_prompt_name_is_a_new_cache_key(tmp_path, gens, server):
    """A prompt file corrected in place (same name and version) never reuses the old wording's replies."""
    from lite.judge.protocol import asks_for

    judge = ClaudeJudge(settings(tmp_path))
    ask = asks_for(load_pair(*gens))[0]
    key = judge.call_for(ask)[0]
    judge.prompt = dataclasses.replace(judge.prompt, template="[System]\n" + judge.prompt.template)
    assert judge.call_for(ask)[0] != key


def test_judge_settings_change_the_cache_key(tmp_path, gens, server):
    pair = load_pair(*gens)
    from lite.judge.protocol import asks_for

    ask = asks_for(pair)[0]
    keys = {
        ClaudeJudge(settings(tmp_path, **kw)).call_for(ask)[0]
        for kw in (
            {},
            {"max_tokens": 256},
            {"model": "claude-haiku-4-5"},
            {"sampling": "temperature0"},
            {"api_version": "2025-01-01"},
        )  # fmt: skip
    }
    assert len(keys) == 5


def test_config_to_command_line(tmp_path, gens, server):
    from lite.cli import main
    from lite.judge import judge_cli_args

    assert judge_cli_args({"judge": {"name": "reference", "claude": {"model": "x"}}}) == "--judge reference"
    cache = str(tmp_path / "results" / "judge_cache")
    config = {"judge": {"name": "claude", "claude": {"model": "claude-haiku-4-5", "max_tokens": 300,
              "concurrency": 2, "batches": False, "cache_dir": cache, "max_retries": 0}}}  # fmt: skip
    flags = judge_cli_args(config)
    assert "--model claude-haiku-4-5 --max-tokens 300" in flags and "--batches" not in flags
    out = tmp_path / "results" / "judgments" / "cli.jsonl"
    main(["judge", *shlex.split(flags), "--a", str(gens[0]), "--b", str(gens[1]), "--out", str(out)])
    calls = server.calls()
    assert len(calls) == 6 and {c["body"]["max_tokens"] for c in calls} == {300}
    assert {c["body"]["model"] for c in calls} == {"claude-haiku-4-5"}
