"""A second LLM judge (the paper's GPT-4 row of Table 5): any OpenAI-compatible chat endpoint.

OpenAI's API, a local vLLM (``vllm serve``) or llama.cpp (``llama-server``) server all answer
``POST {base_url}/chat/completions``. The judge sends the same prompt file as the Claude judge,
goes through the same bidirectional protocol, cache (:class:`lite.judge.cache.JudgeCache`, one
file per call, keyed by everything that produced it, endpoint included) and judgment records
(``judge.name`` is ``openai``), via ``lite judge --judge openai``. Off unless the config has a
``judge.second`` section; only table5 reads its judgments.

Requests go through the official openai SDK, pointed at ``base_url``. Retries and timeouts are
the SDK's own (``max_retries``, ``timeout_s``): it retries 408, 409, 429 and 5xx answers, timeouts
and dropped connections with exponential backoff, honouring ``retry-after`` / ``retry-after-ms``
up to two minutes (a server asking for longer gets no retry); other errors are final. Caching,
de-duplication and failing fast are those of every API judge (:mod:`lite.judge.api`); the free
request before the first paid call is ``GET {base_url}/models``. Replies are read from their JSON,
not the SDK's types, so a server that answers a little differently from OpenAI's still works.
Unlike Claude's, an unreadable reply is not asked again. The key, when ``api_key_env`` names a
variable, is read from that variable only (never from OPENAI_API_KEY) and sent as a bearer
token; it is written nowhere.

The Snakefile imports this module for the settings whenever it is parsed, and the SDK takes about
a second to import: so the SDK is imported where the judge uses it, not at the top.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import TYPE_CHECKING

from lite.flags import flag_args, setting
from lite.io import InputError
from lite.judge.api import ApiJudge, CallFailed, connection_detail, now
from lite.judge.settings import JudgeSettings, JudgeSetupError, JudgeUnavailable, missing_key

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

NAME = "openai"  # judge name in records and paths: results/<model>/judgments/openai/...
API = "openai-chat-completions"  # part of every cache key, so no entry is mistaken for Claude's
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")
# The SDK will not start without a key; for a server without keys it gets this one, and every
# request leaves the Authorization header out instead of sending it.
NO_KEY = "no-key"


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
        """The key from ``api_key_env`` (None when no variable is named); a named variable without a
        key (unset, empty) is an error that says how to set it and never echoes a value."""
        if self.api_key_env is None:
            return None
        problem = missing_key(self.api_key_env)
        if problem is not None:
            raise JudgeSetupError(
                f"judge: the second judge reads its key from the environment variable {self.api_key_env} "
                f"(judge.second.api_key_env), which {problem}. Run `export {self.api_key_env}=<your key>` "
                "in the shell that starts the workflow, or set api_key_env: null for a server without keys."
            )
        return os.environ[self.api_key_env].strip()


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


def describe_error(err: openai.APIStatusError) -> str:
    """One line for the judgment record: HTTP status, error type or code, and the server's message.

    OpenAI and llama.cpp nest the error under ``error`` (the SDK's ``body`` is what is nested);
    vLLM puts it at the top level.
    """
    detail = err.body
    if not isinstance(detail, dict):
        text = err.response.text.strip().replace("\n", " ")[:200]
        return f"HTTP {err.status_code}: {text or err.response.reason_phrase}"
    kind = detail.get("type") or detail.get("code") or "error"
    return f"HTTP {err.status_code} ({kind}): {detail.get('message', '')}"


class OpenAIJudge(ApiJudge):
    """Implements :class:`lite.judge.protocol.Judge` with an OpenAI-compatible chat endpoint."""

    NAME = NAME
    SDK = "openai"
    mode = "chat"
    api_version = None  # the chat completions API has no version header
    reasks_unparseable = False  # its records never had re-asks; turning them on would change them

    def __init__(self, settings: OpenAISettings):
        import openai  # here and in _send, not at the top: see the module's docstring

        super().__init__(settings)
        key = settings.api_key()
        self.client = openai.OpenAI(
            api_key=key or NO_KEY,
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            timeout=settings.timeout_s,
        )
        # What every request adds: nothing, or for a server without keys, no Authorization header.
        self.request_options = {} if key else {"extra_headers": {"Authorization": openai.omit}}

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
            self._send(self.client.models.with_raw_response.list)
        except CallFailed as failed:
            if failed.key_rejected:
                raise JudgeUnavailable(self.key_rejected(url, str(failed))) from None
            if failed.unreachable is not None:
                raise JudgeUnavailable(self.unreachable(url, failed.unreachable)) from None
            log.warning("endpoint check at %s: %s; judging goes on", url, failed)

    def key_rejected(self, url: str, detail: str) -> str:
        key = self.config.api_key_env
        where = f"the key in {key}" if key else "a request without a key"
        return (
            f"judge: the chat endpoint at {url} rejected {where} ({detail}); check judge.second.api_key_env"
        )

    def unreachable(self, url: str, detail: str) -> str:
        return f"judge: cannot reach the chat endpoint at {url} ({detail}); check judge.second.base_url"

    def _send(self, method, **params):
        """The raw response of ``method`` (an SDK call) after the SDK's retries; raises
        :class:`CallFailed`."""
        import openai

        try:
            return method(**params, **self.request_options)
        except openai.APIStatusError as err:
            raise CallFailed(describe_error(err), key_rejected=err.status_code in (401, 403)) from None
        except openai.APIConnectionError as err:  # timeouts included
            detail = connection_detail(err)
            raise CallFailed(detail, unreachable=detail) from None

    def call(self, key: str, identity: dict, request: dict) -> tuple[dict, bool]:
        response = self._send(self.client.chat.completions.with_raw_response.create, **request)
        try:
            reply = json.loads(response.text)
            choice = reply["choices"][0]
            message = choice["message"]
            text = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise CallFailed(f"HTTP 200 without a chat completion: {response.text[:200]!r}") from None
        if not isinstance(text, str):  # a refusal, or content as parts: keep what text there is
            text = message.get("refusal") or ""
        usage = reply.get("usage") or {}
        entry = {
            "request": identity,
            "text": text,
            "model": reply.get("model"),
            "id": reply.get("id"),
            "stop_reason": choice.get("finish_reason"),
            "usage": {
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
            },
            "mode": self.mode,
            "finished_at": now(),
        }
        self.cache.put(key, entry)  # persisted before anything else can go wrong
        return entry, True
