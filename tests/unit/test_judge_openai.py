"""The optional second judge: an OpenAI-compatible chat endpoint (tests/support/openai_api_server.py), through
the same prompt, cache, bidirectional protocol and judgment records as the Claude judge."""

from __future__ import annotations

import csv
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import openai._base_client
import pytest
from openai_api_server import OpenAIServer
from scripted_api_server import drop, error, ok
from test_judge_protocol import write_generations

from lite.io import InputError
from lite.judge import JudgeSetupError, JudgeUnavailable, JudgingFailed, judge_files, read_judgments
from lite.judge.openai_compat import OpenAIJudge, OpenAISettings, second_cli_args, second_settings
from lite.judge.prompts import load_prompt

KEY = "sk-openai-test-Hq4secretKEY9911"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    # the SDK's backoff shrunk so that retries take milliseconds (retry-after is still honoured)
    monkeypatch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.01)
    monkeypatch.setattr(openai._base_client, "MAX_RETRY_DELAY", 0.05)


@pytest.fixture
def server(monkeypatch):
    with OpenAIServer(expected_key=KEY, models=["gpt-test", "gpt-other"]) as api:
        monkeypatch.setenv("TEST_OPENAI_KEY", KEY)
        yield api


@pytest.fixture
def gens(tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    a = write_generations(
        gen / "a.jsonl",
        "lite",
        "final",
        [("q1", "Name a colour.", "Red.", None), ("q2", "Add 2 and 3.", "The sum is 5.", None),
         ("q3", "Say hello.", "Hello {world}!", None)],
    )  # fmt: skip
    b = write_generations(
        gen / "b.jsonl",
        "lite",
        "dynamic-paper",
        [("q1", "Name a colour.", "Blue is a colour of the sky.", None), ("q2", "Add 2 and 3.", "5", None),
         ("q3", "Say hello.", "Hi.", None)],
    )  # fmt: skip
    return a, b


def settings(server, tmp_path, **overrides) -> OpenAISettings:
    values = {"base_url": server.base_url, "model": "gpt-test", "api_key_env": "TEST_OPENAI_KEY",
              "cache_dir": str(tmp_path / "judge_cache"), "concurrency": 1, "max_retries": 2,
              "timeout_s": 2.0}  # fmt: skip
    values.update(overrides)
    return OpenAISettings(**values)


def run(server, tmp_path, gens, name="out.jsonl", **overrides):
    out = tmp_path / "judgments" / name
    summary = judge_files("openai", *gens, out, judge=OpenAIJudge(settings(server, tmp_path, **overrides)))
    return out, summary


def test_requests_records_and_cost_row(tmp_path, gens, server):
    out, summary = run(server, tmp_path, gens)
    assert [r["path"] for r in server.requests][0] == "/v1/models"  # the free check comes first
    calls = server.calls()
    assert len(calls) == 6 and all(c["status"] == 200 for c in calls)
    prompt = load_prompt("appendix-a-v1")  # the first judge's wording, unless configured otherwise
    first = prompt.render("Name a colour.", "Red.", "Blue is a colour of the sky.")
    assert calls[0]["body"] == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": first}],
        "max_tokens": 512,
    }
    assert calls[1]["body"]["messages"][0]["content"] == prompt.render(
        "Name a colour.", "Blue is a colour of the sky.", "Red."
    )
    assert all(c["auth"] == "Bearer <redacted>" and c["key_matches"] for c in calls)
    records = read_judgments(out)
    assert records[0]["judge"] == {
        "name": "openai", "model": "gpt-test", "api_version": None, "prompt": "appendix-a-v1",
        "prompt_version": 1, "sampling": {}, "max_tokens": 512,
    }  # fmt: skip
    assert [o["model"] for o in records[0]["orders"]] == ["gpt-test-2099-01-01"] * 2
    # The server scores by word count: "Red." (1 word) vs 6 words -> B wins in both orders.
    assert records[0]["outcome"] == "loss" and records[0]["consistent"] is True
    assert summary["calls_made"] == 6 and summary["failed_orders"] == 0
    with open(f"{out}.cost.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["judge"] == "openai" and row["mode"] == "chat" and row["calls_made"] == "6"
    assert int(row["input_tokens"]) > 0 and row["est_cost_usd"] == ""  # no price table for other APIs
    config = json.loads(Path(f"{out}.config.json").read_text())
    assert (
        config["openai"]["base_url"] == server.base_url
        and config["openai"]["api_key_env"] == "TEST_OPENAI_KEY"
    )
    assert config["openai_sdk"] == openai.__version__
    assert KEY not in Path(f"{out}.config.json").read_text() + out.read_text()


def test_a_rerun_pays_nothing_and_the_cache_is_per_endpoint_and_model(tmp_path, gens, server):
    out, _ = run(server, tmp_path, gens)
    first = read_judgments(out)
    before = len(server.calls())
    again, summary = run(server, tmp_path, gens, name="again.jsonl")
    assert len(server.calls()) == before and summary["cached"] == 6 and summary["calls_made"] == 0
    assert [r["score_a"] for r in read_judgments(again)] == [r["score_a"] for r in first]
    _, other = run(server, tmp_path, gens, name="other.jsonl", model="gpt-other")
    assert other["calls_made"] == 6  # another model is another key


def test_sampling_and_budget_field_are_sent_as_configured(tmp_path, gens, server):
    run(server, tmp_path, gens, temperature=0, max_tokens=64, max_tokens_field="max_completion_tokens")
    body = server.calls()[0]["body"]
    assert body["temperature"] == 0 and body["max_completion_tokens"] == 64 and "max_tokens" not in body


def test_transient_errors_are_retried_with_retry_after(tmp_path, gens, server):
    server.script.extend([error(429, retry_after=0.3), error(500), error(503), drop()])
    out, summary = run(server, tmp_path, gens, max_retries=4)
    calls = server.calls()
    assert [c["status"] for c in calls[:5]] == [429, 500, 503, None, 200] and len(calls) == 10
    assert calls[1]["time"] - calls[0]["time"] >= 0.3  # the backoff alone is at most 0.05 s here
    assert summary["failed_orders"] == 0 and all(r["parsed"] for r in read_judgments(out))


def test_a_call_failing_after_all_retries_is_recorded(tmp_path, gens, server):
    server.script.extend([error(503)] * 3)  # max_retries=2: three attempts, all answered 503
    with pytest.raises(JudgingFailed, match="1 judge order"):
        run(server, tmp_path, gens)
    assert [c["status"] for c in server.calls()][:4] == [503, 503, 503, 200]
    (failed,) = [
        o for r in read_judgments(tmp_path / "judgments" / "out.jsonl") for o in r["orders"] if o["error"]
    ]
    assert (
        failed["error"]
        == "HTTP 503 (server_error): The engine is currently overloaded, please try again later"
    )


class NotAlwaysJSON(OpenAIServer):
    """Answers the prompt "garble" with a 200 that is no chat completion (a proxy's error page)."""

    def completion(self, body: dict, text: str):
        return b"<html>upstream error</html>" if text == "garble" else super().completion(body, text)


def test_a_reply_that_is_no_chat_completion_fails_its_order_and_is_asked_again(tmp_path, gens):
    with NotAlwaysJSON() as api:
        api.script.append(ok("garble"))
        with pytest.raises(JudgingFailed, match="1 judge order"):
            run(api, tmp_path, gens, api_key_env=None)
        records = read_judgments(tmp_path / "judgments" / "out.jsonl")
        assert records[0]["orders"][0]["error"] == (
            "HTTP 200 without a chat completion: '<html>upstream error</html>'"
        )
        _, summary = run(api, tmp_path, gens, api_key_env=None)  # never cached: asked again
        assert summary["calls_made"] == 1 and summary["cached"] == 5 and summary["failed_orders"] == 0


def test_a_server_without_keys_gets_no_key(tmp_path, gens, monkeypatch):
    # the SDK's own variable is never read: the key comes from api_key_env or nowhere
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer() as api:
        _, summary = run(api, tmp_path, gens, api_key_env=None)
    assert summary["calls_made"] == 6 and api.requests
    assert all(r["auth"] is None for r in api.requests)


def test_the_key_is_written_nowhere(tmp_path, gens, server):
    log = tmp_path / "judge.log"
    handler = logging.FileHandler(log)
    # the SDK's and httpx2's debug logs included (`lite judge`, run in-process by other tests,
    # turns httpx2's down)
    loggers = [logging.getLogger(name) for name in ("", "openai", "httpx2")]
    levels = [logger.level for logger in loggers]
    loggers[0].addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        server.script.extend([error(503), error(401)])
        with pytest.raises(JudgeUnavailable, match="rejected the key"):
            run(server, tmp_path, gens)
        run(server, tmp_path, gens, name="again.jsonl")
    finally:
        loggers[0].removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        handler.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 5 and "chat/completions" in log.read_text()
    for path in files:
        assert KEY[-12:] not in path.read_text(errors="replace"), path


def test_a_final_error_is_recorded_not_cached_and_retried_by_the_next_run(tmp_path, gens, server):
    server.script.append(error(400))
    with pytest.raises(JudgingFailed, match="1 judge order"):
        run(server, tmp_path, gens)
    records = read_judgments(tmp_path / "judgments" / "out.jsonl")
    failed = [o for r in records for o in r["orders"] if o["error"]]
    assert [o["error"] for o in failed] == ["HTTP 400 (invalid_request_error): Invalid request"]
    assert not records[0]["parsed"] and records[0]["score_a"] is None  # never half-scored
    before = len(server.calls())
    _, summary = run(server, tmp_path, gens)
    assert len(server.calls()) == before + 1 and summary["calls_made"] == 1 and summary["cached"] == 5


def test_unknown_model_is_the_servers_404(tmp_path, gens, server):
    with pytest.raises(JudgingFailed):
        run(server, tmp_path, gens, model="gpt-missing", max_retries=3)
    calls = server.calls()
    assert len(calls) == 6 and {c["status"] for c in calls} == {404}  # a 404 is never retried
    record = read_judgments(tmp_path / "judgments" / "out.jsonl")[0]
    assert "model_not_found" not in record["orders"][0]["error"]  # the type is shown, the code kept out
    assert (
        "HTTP 404 (invalid_request_error): The model `gpt-missing` does not exist"
        in record["orders"][0]["error"]
    )


def test_a_rejected_key_stops_before_any_paid_call(tmp_path, gens, server, monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-wrong")
    with pytest.raises(JudgeUnavailable, match=r"rejected the key in TEST_OPENAI_KEY \(HTTP 401") as caught:
        run(server, tmp_path, gens)
    assert "sk-wrong" not in str(caught.value)
    assert server.calls() == [] and len(server.calls("/v1/models", "GET")) == 1


def test_no_server_stops_the_run(tmp_path, gens):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    dead = OpenAISettings(base_url=f"http://127.0.0.1:{port}/v1", model="m", cache_dir=str(tmp_path / "c"))
    with pytest.raises(JudgeUnavailable, match="cannot reach the chat endpoint"):
        judge_files("openai", *gens, tmp_path / "out.jsonl", judge=OpenAIJudge(dead))


def test_settings_from_config(monkeypatch):
    config = {
        "judge": {"name": "reference", "second": {"base_url": "http://127.0.0.1:8000/v1", "model": "m"}}
    }
    assert second_settings({"judge": {"name": "reference"}}) is None  # off by default
    assert second_settings(config).api_key() is None  # a local server needs no key
    assert second_cli_args(config).startswith("--judge openai --model m ")
    assert "--base-url http://127.0.0.1:8000/v1" in second_cli_args(config)
    config["judge"]["second"]["api_key_env"] = "TEST_UNSET_KEY"
    monkeypatch.delenv("TEST_UNSET_KEY", raising=False)
    with pytest.raises(JudgeSetupError, match="export TEST_UNSET_KEY=<your key>"):
        OpenAIJudge(second_settings(config))  # before any request
    config["judge"]["second"]["surprise"] = 1
    with pytest.raises(InputError, match="judge.second: unknown field"):
        second_settings(config)
    with pytest.raises(InputError, match="base_url"):
        OpenAISettings(base_url="127.0.0.1:8000", model="m")


def test_an_empty_key_variable_is_called_empty(monkeypatch):
    monkeypatch.setenv("TEST_EMPTY_KEY", "")
    empty = OpenAISettings(base_url="http://127.0.0.1:8000/v1", model="m", api_key_env="TEST_EMPTY_KEY")
    with pytest.raises(JudgeSetupError, match="TEST_EMPTY_KEY .*, which is set but empty"):
        empty.api_key()


def test_the_command_line_judges_through_the_endpoint(tmp_path, gens, server):
    out = tmp_path / "cli.jsonl"
    args = second_cli_args(
        {"judge": {"second": {"base_url": server.base_url, "model": "gpt-test",
                              "api_key_env": "TEST_OPENAI_KEY", "cache_dir": str(tmp_path / "cache"),
                              "max_retries": 0}}}
    ).split()  # fmt: skip
    result = subprocess.run(
        [str(BIN / "lite"), "judge", *args, "--a", str(gens[0]), "--b", str(gens[1]), "--out", str(out)],
        capture_output=True,
        text=True,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "TEST_OPENAI_KEY": KEY},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(read_judgments(out)) == 3 and len(server.calls()) == 6
    assert KEY not in result.stdout + result.stderr


def test_a_reply_without_scores_is_kept_unparsed(tmp_path, gens, server):
    server.script.append(ok("Both answers are fine."))
    out, summary = run(server, tmp_path, gens)
    assert summary["unparseable_orders"] == 1 and summary["parsed"] == 2
    assert read_judgments(out)[0]["orders"][0]["raw"] == "Both answers are fine."
