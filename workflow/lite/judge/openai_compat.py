"""A second LLM judge (the paper's GPT-4 row of Table 5): any OpenAI-compatible chat endpoint.

OpenAI's API, a local vLLM (``vllm serve``) or llama.cpp (``llama-server``) server all answer
``POST {base_url}/chat/completions``. The judge sends the same prompt file as the Claude judge,
goes through the same bidirectional protocol, cache (:class:`lite.judge.cache.JudgeCache`, one
file per call, keyed by everything that produced it, endpoint included) and judgment records
(``judge.name`` is ``openai``), via ``lite judge --judge openai``. Off unless the config has a
``judge.second`` section; only table5 reads its judgments.

Requests go through httpx (already a dependency; no SDK needed for one endpoint). Retries: 408,
409, 429 and 5xx answers, timeouts and dropped connections, up to ``max_retries`` times with
exponential backoff, honouring ``retry-after`` / ``retry-after-ms``; other errors are final. A
failed call is recorded in the judgment (``error``) and never cached, so a rerun retries it.
Failing fast, as the Claude judge does: one free request (``GET {base_url}/models``) before the
first paid call, and the run stops at the first rejected key or after ``MAX_CONNECTION_FAILURES``
calls in a row that found no server. The key, when ``api_key_env`` names a variable, is read from
that variable only and sent as a bearer token; it is written nowhere.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import os
import random
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import httpx
from tqdm import tqdm

from lite.io import InputError
from lite.judge.cache import JudgeCache, call_key
from lite.judge.claude import now
from lite.judge.cost import RunStats
from lite.judge.prompts import load_prompt
from lite.judge.protocol import Ask, Reply
from lite.judge.settings import ClaudeSettings, JudgeSetupError, JudgeUnavailable

log = logging.getLogger(__name__)

NAME = "openai"  # judge name in records and paths: results/<model>/judgments/openai/...
API = "openai-chat-completions"  # part of every cache key, so no entry is mistaken for Claude's
RETRY_STATUS = {408, 409, 429}  # and every 5xx
INITIAL_RETRY_DELAY = 0.5  # seconds; doubled per attempt, with jitter
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0  # a server asking for longer is not waited for beyond this
MAX_CONNECTION_FAILURES = 3


@dataclasses.dataclass(frozen=True)
class OpenAISettings:
    # Up to and including the version segment: https://api.openai.com/v1, http://127.0.0.1:8000/v1.
    base_url: str
    model: str  # as the endpoint names it (gpt-4o, or the model a local server serves)
    max_tokens: int = 512
    # "max_completion_tokens" for OpenAI models that refuse max_tokens (the o-series, gpt-5).
    max_tokens_field: str = "max_tokens"
    prompt: str = ClaudeSettings.prompt  # the first judge's wording, so the two judges see the same text
    temperature: float | None = None  # None: not sent (the server's default)
    # Environment variable holding the key; None sends none (a local server needs none).
    api_key_env: str | None = None
    concurrency: int = 4
    max_retries: int = 5
    timeout_s: float = 120.0
    cache_dir: str = "results/judge_cache"

    def __post_init__(self):
        for name in ("base_url", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"judge.second field {name!r}: must be a non-empty string")
        if not self.base_url.startswith(("http://", "https://")):
            raise InputError(f"judge.second field 'base_url': expected an http(s) URL, got {self.base_url!r}")
        if self.max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise InputError(
                "judge.second field 'max_tokens_field': max_tokens or max_completion_tokens, "
                f"got {self.max_tokens_field!r}"
            )
        if self.temperature is not None and not (
            isinstance(self.temperature, (int, float)) and 0 <= self.temperature <= 2
        ):
            raise InputError(f"judge.second field 'temperature': 0..2 or null, got {self.temperature!r}")
        for name in ("max_tokens", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"judge.second field {name!r}: must be a positive integer, got {value!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InputError(f"judge.second field 'max_retries': must be >= 0, got {self.max_retries!r}")
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise InputError(
                f"judge.second field 'timeout_s': must be a positive number, got {self.timeout_s!r}"
            )

    @property
    def sampling_params(self) -> dict:
        return {} if self.temperature is None else {"temperature": self.temperature}

    @classmethod
    def from_config(cls, section: dict) -> OpenAISettings:
        """From the config's ``judge.second`` mapping; unknown keys are errors, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise InputError(
                f"judge.second: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**section)

    def api_key(self) -> str | None:
        """The key from ``api_key_env`` (None when no variable is named); a named but unset variable
        is an error that says how to set it and never echoes a value."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise JudgeSetupError(
                f"judge: the second judge reads its key from the environment variable {self.api_key_env} "
                f"(judge.second.api_key_env), which is not set. Run `export {self.api_key_env}=<your key>` "
                "in the shell that starts the workflow, or set api_key_env: null for a server without keys."
            )
        return key


def second_settings(config: dict) -> OpenAISettings | None:
    """The second judge of a workflow config, or None when ``judge.second`` is absent (the default)."""
    judge = config.get("judge")
    section = judge.get("second") if isinstance(judge, dict) else None
    return None if section is None else OpenAISettings.from_config(section)


def second_cli_args(config: dict) -> str:
    """The ``lite judge`` flags of the config's second judge (shell-quoted), for the workflow's rule."""
    s = second_settings(config)
    if s is None:
        raise InputError("judge.second: not configured (add base_url and model to judge.second)")
    flags = {
        "--base-url": s.base_url,
        "--model": s.model,
        "--max-tokens": s.max_tokens,
        "--max-tokens-field": s.max_tokens_field,
        "--prompt": s.prompt,
        "--concurrency": s.concurrency,
        "--max-retries": s.max_retries,
        "--timeout": s.timeout_s,
        "--cache-dir": s.cache_dir,
    }
    if s.temperature is not None:
        flags["--temperature"] = s.temperature
    if s.api_key_env is not None:
        flags["--api-key-env"] = s.api_key_env
    return shlex.join(
        ["--judge", NAME] + [part for flag, value in flags.items() for part in (flag, str(value))]
    )


class CallFailed(Exception):
    """A call that failed for good (after retries, or at once for a final error)."""

    def __init__(self, message: str, status: int | None = None, connection: bool = False):
        super().__init__(message)
        self.status = status
        self.connection = connection


def describe_response(response: httpx.Response) -> str:
    """One line for the judgment record: HTTP status, error type or code, and the server's message.

    OpenAI and llama.cpp nest the error under ``error``; vLLM puts it at the top level.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else body
    if not isinstance(detail, dict):
        text = response.text.strip().replace("\n", " ")[:200]
        return f"HTTP {response.status_code}: {text or response.reason_phrase}"
    kind = detail.get("type") or detail.get("code") or "error"
    return f"HTTP {response.status_code} ({kind}): {detail.get('message', '')}"


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms``, ``retry-after`` seconds or date), capped."""
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return min(MAX_RETRY_AFTER, float(headers["retry-after-ms"]) / 1000)
        if "retry-after" in headers:
            value = headers["retry-after"]
            try:
                return min(MAX_RETRY_AFTER, float(value))
            except ValueError:
                moment = email.utils.parsedate_to_datetime(value)
                return min(MAX_RETRY_AFTER, max(0.0, moment.timestamp() - time.time()))
    except (TypeError, ValueError):
        return None
    return None


def backoff(attempt: int) -> float:
    return min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2**attempt) * (0.75 + random.random() / 2)


class OpenAIJudge:
    """Implements :class:`lite.judge.protocol.Judge` with an OpenAI-compatible chat endpoint."""

    mode = "chat"  # the cost table's mode column

    def __init__(self, settings: OpenAISettings, client: httpx.Client | None = None):
        self.config = settings
        self.prompt = load_prompt(settings.prompt)
        if client is None:
            key = settings.api_key()
            client = httpx.Client(
                base_url=settings.base_url.rstrip("/") + "/",
                timeout=settings.timeout_s,
                headers={"Authorization": f"Bearer {key}"} if key else None,
            )
        self.client = client
        self.cache = JudgeCache(settings.cache_dir)
        self.stats = RunStats()

    def settings(self) -> dict:
        return {
            "name": NAME,
            "model": self.config.model,
            "api_version": None,  # the chat completions API has no version header
            "prompt": self.prompt.name,
            "prompt_version": self.prompt.version,
            "sampling": self.config.sampling_params,
            "max_tokens": self.config.max_tokens,
        }

    def call_for(self, ask: Ask) -> tuple[str, dict, dict]:
        """(cache key, identity, request body) of one ask."""
        content = self.prompt.render(ask.question, ask.answer_1, ask.answer_2)
        identity = {
            "api": API,
            "base_url": self.config.base_url.rstrip("/"),
            "model": self.config.model,
            "prompt": self.prompt.name,
            "prompt_version": self.prompt.version,
            "prompt_sha256": self.prompt.sha256,
            "system": self.prompt.system,
            "content": content,
            "sampling": self.config.sampling_params,
            "max_tokens": self.config.max_tokens,
        }
        messages = [{"role": "user", "content": content}]
        if self.prompt.system is not None:
            messages.insert(0, {"role": "system", "content": self.prompt.system})
        body = {
            "model": self.config.model,
            "messages": messages,
            self.config.max_tokens_field: self.config.max_tokens,
            **self.config.sampling_params,
        }
        return call_key(identity), identity, body

    def judge(self, asks: list[Ask]) -> list[Reply]:
        calls = [self.call_for(ask) for ask in asks]
        unique: dict[str, tuple[dict, dict]] = {}
        for key, identity, body in calls:
            unique.setdefault(key, (identity, body))  # identical prompts are asked once
        self.stats = RunStats(asks=len(asks), unique_calls=len(unique))
        entries: dict[str, dict] = {}
        for key in unique:
            entry = self.cache.get(key)
            if entry is not None:
                entries[key] = entry
                self.stats.cached += 1
                self.stats.cached_usage.add(entry["usage"], batch=False)
        pending = {key: value for key, value in unique.items() if key not in entries}
        errors: dict[str, str] = {}
        if pending:
            self.check_endpoint()
            new, errors = self._run(pending)
            entries.update(new)
        replies = []
        for key, _, _ in calls:
            entry = entries.get(key)
            if entry is None:
                replies.append(Reply(text=None, error=errors.get(key, "no result")))
            else:
                replies.append(Reply(text=entry["text"], model=entry["model"]))
        return replies

    # ------------------------------------------------------------------ HTTP
    def check_endpoint(self) -> None:
        """One free request (GET models): a rejected key or no server stops the run before any call."""
        url = str(self.client.base_url)
        try:
            response = self.client.get("models")
        except httpx.TransportError as err:
            raise JudgeUnavailable(self._unreachable(url, err)) from None
        if response.status_code in (401, 403):
            raise JudgeUnavailable(self._key_rejected(url, describe_response(response)))
        if response.status_code != 200:
            log.warning("endpoint check at %s: %s; judging goes on", url, describe_response(response))

    def _key_rejected(self, url: str, detail: str) -> str:
        key = self.config.api_key_env
        where = f"the key in {key}" if key else "a request without a key"
        return (
            f"judge: the chat endpoint at {url} rejected {where} ({detail}); check judge.second.api_key_env"
        )

    @staticmethod
    def _unreachable(url: str, err: Exception) -> str:
        return (
            f"judge: cannot reach the chat endpoint at {url} ({type(err).__name__}: {err}); "
            "check judge.second.base_url"
        )

    def _post(self, body: dict) -> dict:
        """The reply's JSON after retries; raises :class:`CallFailed`."""
        attempt = 0
        while True:
            last = attempt >= self.config.max_retries
            try:
                response = self.client.post("chat/completions", json=body)
            except httpx.TransportError as err:
                if last:
                    raise CallFailed(f"{type(err).__name__}: {err}", connection=True) from None
                time.sleep(backoff(attempt))
                attempt += 1
                continue
            if response.status_code == 200:
                try:
                    reply = response.json()
                    reply["choices"][0]["message"]
                except (ValueError, KeyError, IndexError, TypeError):
                    raise CallFailed(f"HTTP 200 without a chat completion: {response.text[:200]!r}") from None
                return reply
            retryable = response.status_code in RETRY_STATUS or response.status_code >= 500
            if not retryable or last:
                raise CallFailed(describe_response(response), status=response.status_code)
            wait = retry_after(response)
            time.sleep(backoff(attempt) if wait is None else wait)
            attempt += 1

    def _call(self, key: str, identity: dict, body: dict) -> dict:
        reply = self._post(body)
        message = reply["choices"][0]["message"]
        text = message.get("content")
        if not isinstance(text, str):  # a refusal, or content as parts: keep what text there is
            text = message.get("refusal") or ""
        usage = reply.get("usage") or {}
        entry = {
            "request": identity,
            "text": text,
            "model": reply.get("model"),
            "id": reply.get("id"),
            "stop_reason": reply["choices"][0].get("finish_reason"),
            "usage": {
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
            },
            "mode": self.mode,
            "finished_at": now(),
        }
        self.cache.put(key, entry)  # persisted before anything else can go wrong
        return entry

    def _run(self, pending: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
        entries: dict[str, dict] = {}
        errors: dict[str, str] = {}
        url = str(self.client.base_url)
        stop, connection_failures = None, 0
        items = list(pending.items())
        bar = tqdm(total=len(items), desc=f"judge {self.config.model}", unit="call", file=sys.stderr)
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="judge")
        try:
            futures = {pool.submit(self._call, key, *value): key for key, value in items}
            for future in as_completed(futures):
                key = futures[future]
                try:
                    entry = future.result()
                except CallFailed as err:
                    errors[key] = str(err)
                    self.stats.calls_failed += 1
                    log.warning("judge call failed after retries: %s", err)
                    if err.status in (401, 403):
                        stop = stop or self._key_rejected(url, str(err))
                    elif err.connection:
                        connection_failures += 1
                        if connection_failures >= MAX_CONNECTION_FAILURES:
                            failed = f"; {connection_failures} calls in a row failed"
                            stop = stop or self._unreachable(url, err) + failed
                    else:
                        connection_failures = 0
                else:
                    connection_failures = 0
                    entries[key] = entry
                    self.stats.calls_made += 1
                    self.stats.new.add(entry["usage"], batch=False)
                bar.update(1)
                if stop is not None:
                    break
        finally:
            bar.close()
            # Calls not started yet are dropped when the run stops; those in flight finish.
            pool.shutdown(wait=True, cancel_futures=True)
        if stop is not None:
            raise JudgeUnavailable(f"{stop}; {len(items) - len(entries) - len(errors)} call(s) left unjudged")
        return entries, errors
