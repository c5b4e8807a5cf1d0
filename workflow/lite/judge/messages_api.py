"""The Messages API through the official anthropic SDK, as both modes of the Claude judge use it
(one call per request: :mod:`lite.judge.claude`; Message Batches: :mod:`lite.judge.batches`).

The client with the run's retries, timeout and API version (key from ANTHROPIC_API_KEY only, base
URL from ANTHROPIC_BASE_URL, both read by the SDK), the free endpoint check that the workflow and
every judge make before paying, a reply as the cache keeps it and an error as the judgment
records it.
"""

from __future__ import annotations

import logging

import anthropic

from lite.judge.api import CallFailed, connection_detail, now
from lite.judge.settings import ClaudeSettings, JudgeUnavailable, api_key_from_env

log = logging.getLogger(__name__)


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
