"""A second LLM judge (the paper's GPT-4 row of Table 5): any OpenAI-compatible chat endpoint.

OpenAI's API, a local vLLM (``vllm serve``) or llama.cpp (``llama-server``) server all answer
``POST {base_url}/chat/completions``. The judge sends the same prompt file as the Claude judge,
goes through the same bidirectional protocol, cache (:class:`lite.judge.cache.JudgeCache`, one
file per call, keyed by everything that produced it, endpoint included) and judgment records
(``judge.name`` is ``openai``), via ``lite judge --judge openai``. Off unless the config has a
``judge.second`` section; only table5 reads its judgments.

Requests go through httpx (already a dependency; no SDK needed for one endpoint). Retries: 408,
409, 429 and 5xx answers, timeouts and dropped connections, up to ``max_retries`` times with
exponential backoff, honouring ``retry-after`` / ``retry-after-ms``; other errors are final.
Caching, de-duplication and failing fast are those of every API judge (:mod:`lite.judge.api`);
the free request before the first paid call is ``GET {base_url}/models``. Unlike Claude's, an
unreadable reply is not asked again. The key, when ``api_key_env`` names a variable, is read
from that variable only and sent as a bearer token; it is written nowhere.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import os
import random
import time

import httpx

from lite.flags import flag_args, setting
from lite.io import InputError
from lite.judge.api import ApiJudge, CallFailed, now
from lite.judge.settings import JudgeSettings, JudgeSetupError, JudgeUnavailable

log = logging.getLogger(__name__)

NAME = "openai"  # judge name in records and paths: results/<model>/judgments/openai/...
API = "openai-chat-completions"  # part of every cache key, so no entry is mistaken for Claude's
RETRY_STATUS = {408, 409, 429}  # and every 5xx
INITIAL_RETRY_DELAY = 0.5  # seconds; doubled per attempt, with jitter
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0  # a server asking for longer is not waited for beyond this
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OpenAISettings(JudgeSettings):
    """The second judge: an OpenAI-compatible chat endpoint (config section ``judge.second``)."""

    SECTION = "judge.second"

    base_url: str = setting(
        help="endpoint up to and including the version segment, e.g. http://127.0.0.1:8000/v1"
    )
    # OpenAI models that refuse max_tokens (the o-series, gpt-5) want max_completion_tokens.
    max_tokens_field: str = setting(
        "max_tokens", help="name of the reply-budget field", choices=MAX_TOKENS_FIELDS
    )
    temperature: float | None = setting(None, help="sent when given (default: the server's own)")
    api_key_env: str | None = setting(
        None, help="environment variable holding the key (default: none sent; a local server needs none)"
    )

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            raise InputError(
                f"{self.SECTION} field 'base_url': expected an http(s) URL, got {self.base_url!r}"
            )
        if self.max_tokens_field not in MAX_TOKENS_FIELDS:
            raise InputError(
                f"{self.SECTION} field 'max_tokens_field': {' or '.join(MAX_TOKENS_FIELDS)}, "
                f"got {self.max_tokens_field!r}"
            )
        if self.temperature is not None and not (
            isinstance(self.temperature, (int, float)) and 0 <= self.temperature <= 2
        ):
            raise InputError(f"{self.SECTION} field 'temperature': 0..2 or null, got {self.temperature!r}")

    @property
    def sampling_params(self) -> dict:
        return {} if self.temperature is None else {"temperature": self.temperature}

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
    settings = second_settings(config)
    if settings is None:
        raise InputError("judge.second: not configured (add base_url and model to judge.second)")
    return f"--judge {NAME} {flag_args(dataclasses.asdict(settings))}"


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


class OpenAIJudge(ApiJudge):
    """Implements :class:`lite.judge.protocol.Judge` with an OpenAI-compatible chat endpoint."""

    NAME = NAME
    mode = "chat"
    api_version = None  # the chat completions API has no version header
    reasks_unparseable = False  # its records never had re-asks; turning them on would change them

    def __init__(self, settings: OpenAISettings, client: httpx.Client | None = None):
        super().__init__(settings)
        if client is None:
            key = settings.api_key()
            client = httpx.Client(
                base_url=settings.base_url.rstrip("/") + "/",
                timeout=settings.timeout_s,
                headers={"Authorization": f"Bearer {key}"} if key else None,
            )
        self.client = client

    def endpoint_identity(self) -> dict:
        return {"api": API, "base_url": self.config.base_url.rstrip("/")}

    def request(self, content: str) -> dict:
        messages = [{"role": "user", "content": content}]
        if self.prompt.system is not None:
            messages.insert(0, {"role": "system", "content": self.prompt.system})
        return {
            "model": self.config.model,
            "messages": messages,
            self.config.max_tokens_field: self.config.max_tokens,
            **self.config.sampling_params,
        }

    def check_endpoint(self) -> None:
        """One free request (GET models): a rejected key or no server stops the run before any call."""
        url = str(self.client.base_url)
        try:
            response = self.client.get("models")
        except httpx.TransportError as err:
            raise JudgeUnavailable(self.unreachable(url, f"{type(err).__name__}: {err}")) from None
        if response.status_code in (401, 403):
            raise JudgeUnavailable(self.key_rejected(url, describe_response(response)))
        if response.status_code != 200:
            log.warning("endpoint check at %s: %s; judging goes on", url, describe_response(response))

    def key_rejected(self, url: str, detail: str) -> str:
        key = self.config.api_key_env
        where = f"the key in {key}" if key else "a request without a key"
        return (
            f"judge: the chat endpoint at {url} rejected {where} ({detail}); check judge.second.api_key_env"
        )

    def unreachable(self, url: str, detail: str) -> str:
        return f"judge: cannot reach the chat endpoint at {url} ({detail}); check judge.second.base_url"

    def _post(self, body: dict) -> dict:
        """The reply's JSON after retries; raises :class:`CallFailed`."""
        attempt = 0
        while True:
            last = attempt >= self.config.max_retries
            try:
                response = self.client.post("chat/completions", json=body)
            except httpx.TransportError as err:
                if last:
                    detail = f"{type(err).__name__}: {err}"
                    raise CallFailed(detail, unreachable=detail) from None
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
                raise CallFailed(describe_response(response), key_rejected=response.status_code in (401, 403))
            wait = retry_after(response)
            time.sleep(backoff(attempt) if wait is None else wait)
            attempt += 1

    def call(self, key: str, identity: dict, request: dict) -> tuple[dict, bool]:
        reply = self._post(request)
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
        return entry, True
