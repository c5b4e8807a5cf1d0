"""The Claude judge: the official anthropic SDK (Messages API), cached, retried, counted.

Retries and timeouts are the SDK's own (``max_retries``, ``timeout``): it retries 408/409/429
(honouring ``retry-after``), 529 overloaded and other 5xx, timeouts and dropped connections with
exponential backoff. A call that still fails is recorded in the judgment (``error``) and counted,
never cached, so the next run retries it. Every successful call is written to the cache as soon
as it returns; a rerun makes no call for a cached key. The key comes from ANTHROPIC_API_KEY
only and is never written anywhere; ANTHROPIC_BASE_URL (read by the SDK) points the judge at a
gateway or a test server.
"""

from __future__ import annotations

import datetime
import logging
import sys
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import anthropic
from tqdm import tqdm

from lite.judge.cache import JudgeCache, call_key
from lite.judge.cost import RunStats
from lite.judge.prompts import load_prompt
from lite.judge.protocol import Ask, Reply
from lite.judge.settings import ClaudeSettings, api_key_from_env

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


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


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


def describe_error(err: anthropic.APIError) -> str:
    """One line for the judgment record: the error class, HTTP status and the API's message."""
    if isinstance(err, anthropic.APIStatusError):
        body = err.body if isinstance(err.body, dict) else {}
        detail = body.get("error") if isinstance(body.get("error"), dict) else {}
        kind = detail.get("type", "unknown")
        message = detail.get("message", err.message)
        return f"{type(err).__name__} (HTTP {err.status_code}, {kind}): {message}"
    return f"{type(err).__name__}: {err.message}"


class ClaudeJudge:
    """Implements :class:`lite.judge.protocol.Judge` with Claude and the pairwise prompt."""

    def __init__(self, settings: ClaudeSettings, client: anthropic.Anthropic | None = None):
        self.config = settings
        self.prompt = load_prompt(settings.prompt)
        self.client = client if client is not None else make_client(settings)
        # The header the client really sends (the SDK's default unless the settings chose one).
        self.api_version = str(self.client.default_headers["anthropic-version"])
        self.cache = JudgeCache(settings.cache_dir)
        self.stats = RunStats()

    def settings(self) -> dict:
        return {
            "name": "claude",
            "model": self.config.model,
            "api_version": self.api_version,
            "prompt": self.prompt.name,
            "prompt_version": self.prompt.version,
            "sampling": self.config.sampling_params,
            "max_tokens": self.config.max_tokens,
        }

    def call_for(self, ask: Ask) -> tuple[str, dict, dict]:
        """(cache key, identity, request params) of one ask."""
        content = self.prompt.render(ask.question, ask.answer_1, ask.answer_2)
        identity = {
            "model": self.config.model,
            "api_version": self.api_version,
            "prompt": self.prompt.name,
            "prompt_version": self.prompt.version,
            "prompt_sha256": self.prompt.sha256,
            "system": self.prompt.system,
            "content": content,
            "sampling": self.config.sampling_params,
            "max_tokens": self.config.max_tokens,
        }
        params = {
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "messages": [{"role": "user", "content": content}],
        }
        if self.prompt.system is not None:
            params["system"] = self.prompt.system
        return call_key(identity), identity, params

    def judge(self, asks: list[Ask]) -> list[Reply]:
        calls = [self.call_for(ask) for ask in asks]
        # Identical prompts (two systems giving the same answer) are asked once.
        unique: dict[str, tuple[dict, dict]] = {}
        for key, identity, params in calls:
            unique.setdefault(key, (identity, params))
        self.stats = RunStats(asks=len(asks), unique_calls=len(unique))
        entries: dict[str, dict] = {}
        for key in unique:
            entry = self.cache.get(key)
            if entry is not None:
                entries[key] = entry
                self.stats.cached += 1
                self.stats.cached_usage.add(entry["usage"], batch=entry["mode"] == "batch")
        pending = {key: value for key, value in unique.items() if key not in entries}
        if self.config.batches:
            from lite.judge.batches import run_batches

            new, errors = run_batches(self, pending)
        else:
            new, errors = self._run_messages(pending)
        entries.update(new)
        replies = []
        for key, _, _ in calls:
            entry = entries.get(key)
            if entry is None:
                replies.append(Reply(text=None, error=errors.get(key, "no result")))
            else:
                replies.append(Reply(text=entry["text"], model=entry["model"]))
        return replies

    def _call(self, key: str, identity: dict, params: dict) -> dict:
        sampling = self.config.sampling_params
        # Sampling parameters are no longer SDK arguments; extra_body sends them for old API versions.
        message = self.client.messages.create(**params, **({"extra_body": sampling} if sampling else {}))
        entry = entry_from_message(message, identity, "messages")
        self.cache.put(key, entry)  # persisted before anything else can go wrong
        return entry

    def _run_messages(self, pending: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
        entries: dict[str, dict] = {}
        errors: dict[str, str] = {}
        if not pending:
            return entries, errors
        queue = deque(pending.items())
        running: dict[Future, str] = {}
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="judge")
        bar = tqdm(total=len(queue), desc=f"judge {self.config.model}", unit="call", file=sys.stderr)
        try:
            # Submit only as many calls as there are workers, so an interrupt leaves nothing queued.
            while queue or running:
                while queue and len(running) < self.config.concurrency:
                    key, (identity, params) = queue.popleft()
                    running[pool.submit(self._call, key, identity, params)] = key
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    key = running.pop(future)
                    try:
                        entry = future.result()
                    except anthropic.APIError as err:
                        errors[key] = describe_error(err)
                        self.stats.calls_failed += 1
                        log.warning("judge call failed after retries: %s", errors[key])
                    else:
                        entries[key] = entry
                        self.stats.calls_made += 1
                        self.stats.new.add(entry["usage"], batch=False)
                    bar.update(1)
                    bar.set_postfix(failed=self.stats.calls_failed)
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)
        return entries, errors
