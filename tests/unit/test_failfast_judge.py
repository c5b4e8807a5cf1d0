"""The Claude judge fails fast and pays once: a dead endpoint or a bad key stops a job at once,
naming the URL; parallel jobs needing the same prompt pay for it once (claim files); a reply
without readable scores is asked once more. Real anthropic SDK against tests/support/messages_api_server.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from messages_api_server import MessagesAPIServer, default_answer, sdk_server
from scripted_api_server import drop, error, ok
from test_judge_protocol import write_generations

from lite.judge import ClaudeSettings, JudgeUnavailable, judge_files, read_judgments
from lite.judge.cache import JudgeCache

KEY = "sk-ant-test-failfast-5150"


@pytest.fixture
def server(monkeypatch):
    with sdk_server(monkeypatch, KEY) as api:
        yield api


def make_gens(tmp_path, n: int):
    """Two generation files of ``n`` instances whose answers differ: 2n distinct prompts."""
    gen = tmp_path / "gen"
    gen.mkdir(exist_ok=True)
    items = [(f"q{i}", f"Question {i}?", f"answer {i} " + "word " * (i % 7), None) for i in range(n)]
    a = write_generations(gen / "a.jsonl", "lite", "final", items)
    b = write_generations(gen / "b.jsonl", "it", "final", [(k, q, f"other {k}", r) for k, q, _, r in items])
    return a, b


def settings(tmp_path, **overrides) -> ClaudeSettings:
    values = {"cache_dir": str(tmp_path / "cache"), "concurrency": 1, "max_retries": 0, "timeout_s": 2.0}
    return ClaudeSettings(**{**values, **overrides})


def contents(calls) -> list[str]:
    return [call["body"]["messages"][0]["content"] for call in calls]


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


# --- a bad key, a dead endpoint ---------------------------------------------------------------


def test_a_bad_key_is_found_before_any_paid_call(tmp_path, server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-wrong-0001")
    out = tmp_path / "out.jsonl"
    with pytest.raises(JudgeUnavailable) as err:
        judge_files("claude", *make_gens(tmp_path, 5), out, claude=settings(tmp_path))
    assert f"the Messages API at {server.url}" in str(err.value) and "rejected the key" in str(err.value)
    assert server.calls() == []  # the free models request found it; no message was sent
    assert not out.exists()


def test_the_first_authentication_error_stops_the_job(tmp_path, server):
    server.script.extend([ok("8 7"), error(401)])
    with pytest.raises(JudgeUnavailable, match="rejected the key") as err:
        judge_files("claude", *make_gens(tmp_path, 5), tmp_path / "out.jsonl", claude=settings(tmp_path))
    assert len(server.calls()) == 2  # of 10: nothing after the 401 was sent
    assert "8 call(s) not sent" in str(err.value)
    # the call paid before the stop is cached and in the cost table
    rows = (tmp_path / "out.jsonl.cost.csv").read_text().splitlines()
    assert len(rows) == 2 and len(list((tmp_path / "cache").glob("??/*.json"))) == 1


def test_consecutive_connection_failures_stop_the_job(tmp_path, server):
    server.script.extend([ok("8 7"), drop(), drop(), drop()])
    with pytest.raises(JudgeUnavailable) as err:
        judge_files("claude", *make_gens(tmp_path, 5), tmp_path / "out.jsonl", claude=settings(tmp_path))
    assert f"cannot reach the Messages API at {server.url}" in str(err.value)
    assert "3 calls in a row failed" in str(err.value)
    assert len(server.calls()) == 4


def test_a_run_that_reached_no_server_writes_no_cost_row(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", closed_port_url())
    out = tmp_path / "out.jsonl"
    with pytest.raises(JudgeUnavailable, match="cannot reach the Messages API"):
        judge_files("claude", *make_gens(tmp_path, 2), out, claude=settings(tmp_path))
    assert not (tmp_path / "out.jsonl.cost.csv").exists() and not out.exists()


def test_judging_against_a_closed_port_fails_within_a_minute(tmp_path):
    """The real defaults (5 SDK retries, 120 s timeout), 40 calls, one clear line naming the URL."""
    a, b = make_gens(tmp_path, 20)
    url = closed_port_url()
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url}
    env.pop("ANTHROPIC_AUTH_TOKEN", None)
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "lite.cli", "judge", "--judge", "claude", "--a", str(a), "--b", str(b),
            "--out", str(out), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - started
    print(f"closed port: gave up after {elapsed:.1f} s")
    assert done.returncode == 1 and elapsed < 60, (elapsed, done.stderr[-2000:])
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lite judge: error: judge: cannot reach the Messages API at {url}"), last
    assert "Traceback" not in done.stderr and not out.exists()


# --- one payment per prompt across parallel jobs ----------------------------------------------


def test_parallel_jobs_pay_for_each_prompt_once(tmp_path):
    n = 4
    gens = make_gens(tmp_path, n)
    state = {}

    def answer_when_both_started(body):
        # Both jobs have made their free models request before any call is answered, so both
        # see every prompt uncached and would each pay for it without the claims.
        state["server"].wait_for(
            lambda: len(state["server"].calls("/v1/models/claude-sonnet-5-5", "GET")) >= 2
        )
        time.sleep(0.2)
        return default_answer(body)

    with MessagesAPIServer(answer=answer_when_both_started, expected_key=KEY) as api:
        state["server"] = api
        env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": api.url}
        env.pop("ANTHROPIC_AUTH_TOKEN", None)
        procs = []
        for name in ("one", "two"):
            args = [sys.executable, "-m", "lite.cli", "judge", "--judge", "claude", "--a", str(gens[0]),
                    "--b", str(gens[1]), "--out", str(tmp_path / f"{name}.jsonl"), "--cache-dir",
                    str(tmp_path / "cache"), "--concurrency", "2", "--max-retries", "0"]  # fmt: skip
            log = open(tmp_path / f"{name}.log", "w")
            procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT))
        for proc, name in zip(procs, ("one", "two"), strict=True):
            assert proc.wait(timeout=120) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        asked = Counter(contents(api.calls()))
    assert len(asked) == 2 * n and set(asked.values()) == {1}, asked.values()
    one, two = (read_judgments(tmp_path / f"{name}.jsonl") for name in ("one", "two"))
    assert [r["orders"] for r in one] == [r["orders"] for r in two]
    costs = [json.loads((tmp_path / f"{name}.jsonl.summary.json").read_text()) for name in ("one", "two")]
    assert all(c["failed_orders"] == 0 for c in costs)
    assert not list((tmp_path / "cache").glob("??/*.claim"))  # every claim released


def test_a_claim_left_by_a_dead_process_is_taken_over(tmp_path, server):
    gens = make_gens(tmp_path, 1)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(done.stdout)
    cache = JudgeCache(tmp_path / "cache")
    from lite.judge.claude import ClaudeJudge
    from lite.judge.protocol import asks_for
    from lite.judge.records import load_pair

    judge = ClaudeJudge(settings(tmp_path))
    key = judge.call_for(asks_for(load_pair(*gens))[0])[0]
    claim = cache.claim_path(key)
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname(), "claimed_at": time.time()}))
    # a live holder on this host keeps its claim; a dead one's is free
    assert cache.claim(key, 3600) is True
    cache.release(key)
    claim.write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "claimed_at": time.time()})
    )
    assert cache.claim(key, 3600) is False
    claim.write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname(), "claimed_at": time.time()}))
    summary = judge_files("claude", *gens, tmp_path / "out.jsonl", claude=settings(tmp_path))
    assert summary["calls_made"] == 2 and len(server.calls()) == 2 and not claim.exists()


# --- unparseable replies are asked once more --------------------------------------------------


def test_an_unparseable_reply_is_asked_once_more(tmp_path, server):
    gens = make_gens(tmp_path, 2)
    server.script.extend([ok("I would rather not say."), ok("8 7"), ok("6 6"), ok("5 4"), ok("9 3")])
    out = tmp_path / "out.jsonl"
    summary = judge_files("claude", *gens, out, claude=settings(tmp_path))
    first = read_judgments(out)[0]
    order = first["orders"][0]
    assert order["parsed"] and order["scores"] == [9, 3] and order["raw"] == "9 3"
    assert order["reasked"] and order["first_raw"] == "I would rather not say."
    assert first["orders"][1]["reasked"] is False and first["parsed"]
    assert summary["reasked_orders"] == 1 and summary["reasks"] == 1 and summary["unparseable_orders"] == 0
    # the second call is a fresh request with the same prompt, cached under its own key as a re-ask
    calls = server.calls()
    assert len(calls) == 5 and contents(calls)[4] == contents(calls)[0]
    entries = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("??/*.json")]
    assert sorted(e["request"].get("reask", 0) for e in entries) == [0, 0, 0, 0, 1]
    # a rerun pays for nothing and reads the same judgment
    n = len(server.requests)
    again = judge_files("claude", *gens, out, claude=settings(tmp_path))
    assert len(server.requests) == n and again["calls_made"] == 0
    assert read_judgments(out)[0]["orders"][0]["first_raw"] == "I would rather not say."


def test_a_second_unreadable_reply_is_final(tmp_path, server):
    gens = make_gens(tmp_path, 1)
    server.script.extend([ok("no scores"), ok("8 7"), ok("still none")])
    summary = judge_files("claude", *gens, tmp_path / "out.jsonl", claude=settings(tmp_path))
    assert summary["unparseable_orders"] == 1 and summary["reasked_orders"] == 1
    n = len(server.requests)
    judge_files("claude", *gens, tmp_path / "out.jsonl", claude=settings(tmp_path))
    assert len(server.requests) == n  # asked once more, not on every rerun


@pytest.mark.parametrize("batches", [False, True], ids=["messages", "batches"])
def test_a_prompt_another_job_has_in_flight_is_not_paid_again(tmp_path, server, batches):
    """Claims held by a live job (here: this test's own pid): the judge waits for that job's
    entries instead of sending the calls, and takes them from the cache as they arrive."""
    from lite.judge.claude import ClaudeJudge
    from lite.judge.messages_api import entry_from_message
    from lite.judge.protocol import asks_for
    from lite.judge.records import load_pair

    gens = make_gens(tmp_path, 2)
    config = settings(tmp_path, batches=batches, poll_interval_s=0.05)
    other = ClaudeJudge(config)
    calls = {}
    for ask in asks_for(load_pair(*gens)):
        key, identity, _ = other.call_for(ask)
        calls[key] = identity
        assert other.cache.claim(key, 3600)

    class Message:  # what the other job's call returned
        def __init__(self, text):
            self.content = [type("Block", (), {"type": "text", "text": text})()]
            self.model, self.id, self.stop_reason = "claude-sonnet-5-5-20990101", "msg_other", "end_turn"
            self.usage = type("Usage", (), {"input_tokens": 10, "output_tokens": 2})()

    def other_job_answers():
        time.sleep(0.5)
        for key, identity in calls.items():
            other.cache.put(key, entry_from_message(Message("7 6"), identity, "messages"))
            other.cache.release(key)

    import threading

    thread = threading.Thread(target=other_job_answers)
    thread.start()
    try:
        summary = judge_files("claude", *gens, tmp_path / "out.jsonl", claude=config)
    finally:
        thread.join()
    assert server.calls() == [] and server.calls("/v1/messages/batches") == []
    assert summary["cached"] == 4 and summary["calls_made"] == 0 and summary["parsed"] == 2
