"""The Claude judge: the official anthropic SDK (Messages API), cached, retried, counted.

Retries and timeouts are the SDK's own (``max_retries``, ``timeout_s``): it retries 408/409/429
(honouring ``retry-after``), 529 overloaded and other 5xx, timeouts and dropped connections with
exponential backoff. Caching, de-duplication and failing fast are those of every API judge
(:mod:`lite.judge.api`). The key comes from ANTHROPIC_API_KEY only and is never written anywhere;
ANTHROPIC_BASE_URL (read by the SDK) points the judge at a gateway or a test server. A reply
without readable scores is asked once more (a fresh call, cached under its own key and marked
``reask``) before it counts as unparseable. Parallel judge jobs sharing the cache pay for a
prompt once: a call in flight holds a claim on its key (:meth:`JudgeCache.claim`).
"""

from __future__ import annotations

import logging
import time

import anthropic

from lite.judge.api import ApiJudge, CallFailed, now
from lite.judge.settings import ClaudeSettings, JudgeUnavailable, api_key_from_env

log = logging.getLogger(__name__)

# How often a job waiting on another job's claim looks for its cache entry.
CLAIM_POLL_S = 0.2


def make_client(settings: ClaudeSettings) -> anthropic.Anthropic:
    """An SDK client with the run's retries, timeout and API version; base URL from the environment."""
    headers = {}
    if settings.api_version is not None or settings.sampling != "none":
        headers["anthropic-version"] = settings.request_api_version()
    return anthropic.Anthropic(
        api_key=api_key_from_env(),
        max_retries=settings.max_retries,
        timeout=settings.timeout_s,
        default_headers=headers or None,
    )


def entry_from_message(message, identity: dict, mode: str) -> dict:
    """What the cache keeps of one reply (no headers, so no key)."""
    text = "".join(block.text for block in message.content if getattr(block, "type", None) == "text")
    return {
        "request": identity,
        "text": text,
        "model": message.model,
        "id": message.id,
        "stop_reason": message.stop_reason,
        "usage": {"input_tokens": message.usage.input_tokens, "output_tokens": message.usage.output_tokens},
        "mode": mode,
        "finished_at": now(),
    }


def key_rejected(url: str, detail: str) -> str:
    return (
        f"judge: the Messages API at {url} rejected the key in ANTHROPIC_API_KEY ({detail}); "
        "check the key (and ANTHROPIC_BASE_URL, if a gateway is meant)"
    )


def unreachable(url: str, detail: str) -> str:
    return (
        f"judge: cannot reach the Messages API at {url} ({detail}); check ANTHROPIC_BASE_URL and the network"
    )


def connection_detail(err: anthropic.APIConnectionError) -> str:
    # The SDK's own message is only "Connection error."; the cause says refused, DNS or timeout.
    cause = f": {err.__cause__}" if err.__cause__ is not None else ""
    return f"{type(err).__name__}{cause}"


def call_failed(err: anthropic.APIError) -> CallFailed:
    """``err`` (after the SDK's retries) as the failure every API judge handles alike."""
    rejected = isinstance(err, (anthropic.AuthenticationError, anthropic.PermissionDeniedError))
    connection = isinstance(err, anthropic.APIConnectionError)
    return CallFailed(
        describe_error(err), key_rejected=rejected, unreachable=connection_detail(err) if connection else None
    )


def check_endpoint(client: anthropic.Anthropic, model: str) -> None:
    """One free request (GET /v1/models/<model>): raise ``JudgeUnavailable`` when the endpoint does
    not answer or rejects the key. Other answers only warn: a gateway may not serve the models
    endpoint, and a busy API recovers; the paid calls then decide."""
    url = str(client.base_url)
    try:
        client.models.retrieve(model)
    except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as err:
        raise JudgeUnavailable(key_rejected(url, describe_error(err))) from None
    except anthropic.APIConnectionError as err:
        raise JudgeUnavailable(unreachable(url, connection_detail(err))) from None
    except anthropic.APIStatusError as err:
        log.warning("endpoint check at %s: %s; judging goes on", url, describe_error(err))


def describe_error(err: anthropic.APIError) -> str:
    """One line for the judgment record: the error class, HTTP status and the API's message."""
    if isinstance(err, anthropic.APIStatusError):
        body = err.body if isinstance(err.body, dict) else {}
        detail = body.get("error") if isinstance(body.get("error"), dict) else {}
        kind = detail.get("type", "unknown")
        message = detail.get("message", err.message)
        return f"{type(err).__name__} (HTTP {err.status_code}, {kind}): {message}"
    return f"{type(err).__name__}: {err.message}"


class ClaudeJudge(ApiJudge):
    """Implements :class:`lite.judge.protocol.Judge` with Claude and the pairwise prompt."""

    NAME = "claude"
    reasks_unparseable = True

    def __init__(self, settings: ClaudeSettings, client: anthropic.Anthropic | None = None):
        super().__init__(settings)
        self.client = client if client is not None else make_client(settings)
        # The header the client really sends (the SDK's default unless the settings chose one).
        self.api_version = str(self.client.default_headers["anthropic-version"])
        # The longest one call can take (every attempt timing out, plus the SDK's backoff of at
        # most 8 s between attempts): a claim older than that, from another host, is abandoned.
        self.claim_lifetime_s = (settings.max_retries + 1) * (settings.timeout_s + 8.0) + 60.0

    @property
    def mode(self) -> str:
        return "batches" if self.config.batches else "messages"

    def endpoint_identity(self) -> dict:
        return {"api_version": self.api_version}

    def request(self, content: str) -> dict:
        params = {
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "messages": [{"role": "user", "content": content}],
        }
        if self.prompt.system is not None:
            params["system"] = self.prompt.system
        return params

    def check_endpoint(self) -> None:
        check_endpoint(self.client, self.config.model)

    def key_rejected(self, url: str, detail: str) -> str:
        return key_rejected(url, detail)

    def unreachable(self, url: str, detail: str) -> str:
        return unreachable(url, detail)

    def answer(self, pending: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
        if self.config.batches:
            from lite.judge.batches import run_batches

            return run_batches(self, pending)
        return super().answer(pending)

    def call(self, key: str, identity: dict, request: dict) -> tuple[dict, bool]:
        # The entry may come from another job that held the key's claim.
        while not self.cache.claim(key, self.claim_lifetime_s):
            time.sleep(CLAIM_POLL_S)
            entry = self.cache.get(key)
            if entry is not None:
                return entry, False
        try:
            entry = self.cache.get(key)  # the last holder may have finished just before the claim
            if entry is not None:
                return entry, False
            sampling = self.config.sampling_params
            # Sampling parameters are no longer SDK arguments; extra_body sends them for old API versions.
            try:
                message = self.client.messages.create(
                    **request, **({"extra_body": sampling} if sampling else {})
                )
            except anthropic.APIError as err:
                raise call_failed(err) from None
            entry = entry_from_message(message, identity, "messages")
            self.cache.put(key, entry)  # persisted before anything else can go wrong
            return entry, True
        finally:
            self.cache.release(key)
