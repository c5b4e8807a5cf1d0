"""Crash safety: `lite judge` killed mid-run (SIGKILL) and restarted pays for nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from messages_api_server import MessagesAPIServer
from scripted_api_server import hold, ok, slow
from test_judge_protocol import write_generations

from lite.judge import ClaudeSettings, judge_files, read_judgments

KEY = "sk-ant-test-resume-0007"
N = 6  # instances: 12 orders, all distinct prompts


@pytest.fixture
def server():
    with MessagesAPIServer(expected_key=KEY) as api:
        yield api


@pytest.fixture
def gens(tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    items = [(f"q{i}", f"Question {i}?", f"answer {i} " + "word " * i, None) for i in range(N)]
    a = write_generations(gen / "a.jsonl", "lite", "final", items)
    b = write_generations(gen / "b.jsonl", "it", "final", [(k, q, f"other {k}", r) for k, q, _, r in items])
    return a, b


def judge_command(tmp_path, gens, *extra):
    out = tmp_path / "results" / "judgments" / "out.jsonl"
    args = [sys.executable, "-m", "lite.cli", "judge", "--judge", "claude", "--a", str(gens[0]), "--b",
            str(gens[1]), "--out", str(out), "--model", "claude-sonnet-5-5", "--cache-dir",
            str(tmp_path / "results" / "judge_cache"), "--concurrency", "1", "--max-retries", "0",
            "--timeout-s", "10", *extra]  # fmt: skip
    return args, out


def start(args, server, tmp_path):
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": server.url}
    env.pop("ANTHROPIC_AUTH_TOKEN", None)
    log = open(tmp_path / "judge.log", "a")
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def prompts(calls) -> list[str]:
    return [c["body"]["messages"][0]["content"] for c in calls]


def test_killed_run_restarts_without_repeating_paid_calls(tmp_path, gens, server, monkeypatch):
    server.script.extend([ok("8 7")] * 4 + [hold()])  # the fifth call never returns
    args, out = judge_command(tmp_path, gens)
    proc = start(args, server, tmp_path)
    try:
        assert server.wait_for(lambda: len(server.calls()) == 5), (tmp_path / "judge.log").read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert not out.exists()  # nothing half-written under the final name
    paid = prompts(server.calls())[:4]
    in_flight = prompts(server.calls())[4]
    server.script.clear()

    proc = start(args, server, tmp_path)
    assert proc.wait(timeout=60) == 0, (tmp_path / "judge.log").read_text()
    second = prompts(server.calls())[5:]
    assert len(second) == 2 * N - 4  # the 4 paid calls are not made again
    assert not set(second) & set(paid)
    assert in_flight in second  # the unanswered call is asked again
    records = read_judgments(out)
    assert len(records) == N and all(r["parsed"] for r in records)
    assert [o["raw"] for o in records[0]["orders"]] == ["8 7", "8 7"]  # from the first run's cache

    # A third run (in-process, same settings) finds everything cached: zero requests.
    n = len(server.requests)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    cache = str(tmp_path / "results" / "judge_cache")
    settings = ClaudeSettings(model="claude-sonnet-5-5", cache_dir=cache, concurrency=1, max_retries=0)
    summary = judge_files("claude", *gens, out, claude=settings)
    assert len(server.requests) == n
    assert summary["cached"] == 2 * N and summary["calls_made"] == 0


def test_batch_submitted_before_a_crash_is_collected_not_resubmitted(tmp_path, gens, server):
    server.batch_polls_to_end = 10**6  # the batch stays in progress while the first run polls
    args, out = judge_command(tmp_path, gens, "--batches", "--poll-interval-s", "0.05")
    proc = start(args, server, tmp_path)
    batch_path = "/v1/messages/batches"
    try:
        assert server.wait_for(
            lambda: (
                len(server.calls(batch_path)) == 1
                and any(c["path"].startswith(batch_path + "/") for c in server.requests)
            )
        ), (tmp_path / "judge.log").read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert not out.exists()
    cache = tmp_path / "results" / "judge_cache"
    manifests = list((cache / "batches").glob("*.json"))
    assert len(manifests) == 1
    assert len(list(cache.glob("??/*.claim"))) == 2 * N  # the killed job's claims on its batch's keys

    server.batch_polls_to_end = 0  # the batch has ended by the time the job is restarted
    proc = start(args, server, tmp_path)
    assert proc.wait(timeout=60) == 0, (tmp_path / "judge.log").read_text()
    assert len(server.calls(batch_path)) == 1  # not resubmitted
    assert not server.calls()  # and no per-message calls either
    (batch_id,) = server.batches
    assert any(c["path"] == f"{batch_path}/{batch_id}/results" for c in server.requests)
    records = read_judgments(out)
    assert len(records) == N and all(r["parsed"] for r in records)
    assert not list((cache / "batches").glob("*.json"))  # retired
    assert not list(cache.glob("??/*.claim"))  # and its claims released with it


def test_ctrl_c_ends_with_one_line_saying_how_many_judgments_are_saved(tmp_path, gens, server):
    # Three answered calls, then one the server answers only after the interrupt: a call in flight
    # is let finish, so its paid reply is saved too.
    server.script.extend([ok("8 7")] * 3 + [slow(3.0, "6 5")])
    args, out = judge_command(tmp_path, gens)
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": server.url}
    env.pop("ANTHROPIC_AUTH_TOKEN", None)
    with open(tmp_path / "stderr.log", "w") as stderr:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            assert server.wait_for(lambda: len(server.calls()) == 4), (tmp_path / "stderr.log").read_text()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 130, (tmp_path / "stderr.log").read_text()
        finally:
            proc.kill()
    text = (tmp_path / "stderr.log").read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.strip().splitlines()[-1] == "lite judge: interrupted; 4 judgments saved, rerun to continue"
    assert len(server.calls()) == 4 and not out.exists()
    assert len(list((tmp_path / "results" / "judge_cache").glob("??/*.json"))) == 4
