"""The Claude judge: the official anthropic SDK (Messages API), cached, retried, counted.

Retries and timeouts are the SDK's own (``max_retries``, ``timeout``): it retries 408/409/429
(honouring ``retry-after``), 529 overloaded and other 5xx, timeouts and dropped connections with
exponential backoff. A call that still fails is recorded in the judgment (``error``) and counted,
never cached, so the next run retries it. Every successful call is written to the cache as soon
as it returns; a rerun makes no call for a cached key. The key comes from ANTHROPIC_API_KEY
only and is never written anywhere; ANTHROPIC_BASE_URL (read by the SDK) points the judge at a
gateway or a test server.

Failing fast: before its first paid call a run makes one free request (the model's entry on the
models endpoint), and it stops, naming the base URL, at the first authentication error or after
``MAX_CONNECTION_FAILURES`` calls in a row found no server (each after all its retries); without
this a dead endpoint costs every call its full retry budget. A reply without readable scores is
asked once more (a fresh call, cached under its own key and marked ``reask``) before it counts
as unparseable.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import anthropic
from tqdm import tqdm

from lite.judge.cache import JudgeCache, call_key
from lite.judge.cost import RunStats
from lite.judge.parsing import parse_scores
from lite.judge.prompts import load_prompt
from lite.judge.protocol import Ask, Reply
from lite.judge.settings import ClaudeSettings, JudgeUnavailable, api_key_from_env

log = logging.getLogger(__name__)

# Calls in a row that found no server (after the SDK's retries) before a run gives up.
MAX_CONNECTION_FAILURES = 3
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


def key_rejected(url: str, err: anthropic.APIStatusError) -> str:
    return (
        f"judge: the Messages API at {url} rejected the key in ANTHROPIC_API_KEY ({describe_error(err)}); "
        "check the key (and ANTHROPIC_BASE_URL, if a gateway is meant)"
    )


def unreachable(url: str, err: anthropic.APIConnectionError) -> str:
    # The SDK's own message is only "Connection error."; the cause says refused, DNS or timeout.
    cause = f": {err.__cause__}" if err.__cause__ is not None else ""
    return (
        f"judge: cannot reach the Messages API at {url} ({type(err).__name__}{cause}); "
        "check ANTHROPIC_BASE_URL and the network"
    )


def check_endpoint(client: anthropic.Anthropic, model: str) -> None:
    """One free request (GET /v1/models/<model>): raise ``JudgeUnavailable`` when the endpoint does
    not answer or rejects the key. Other answers only warn: a gateway may not serve the models
    endpoint, and a busy API recovers; the paid calls then decide."""
    url = str(client.base_url)
    try:
        client.models.retrieve(model)
    except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as err:
        raise JudgeUnavailable(key_rejected(url, err)) from None
    except anthropic.APIConnectionError as err:
        raise JudgeUnavailable(unreachable(url, err)) from None
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
        self._endpoint_checked = False
        # The longest one call can take (every attempt timing out, plus the SDK's backoff of at
        # most 8 s between attempts): a claim older than that, from another host, is abandoned.
        self.claim_lifetime_s = (settings.max_retries + 1) * (settings.timeout_s + 8.0) + 60.0

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
        if pending:
            self._check_endpoint()
        if self.config.batches:
            from lite.judge.batches import run_batches

            new, errors = run_batches(self, pending)
        else:
            new, errors = self._run_messages(pending)
        entries.update(new)
        reasks = self._reask_unparseable(unique, entries)
        replies = []
        for key, _, _ in calls:
            entry = entries.get(key)
            if entry is None:
                replies.append(Reply(text=None, error=errors.get(key, "no result")))
            elif key in reasks:
                again = reasks[key]
                replies.append(Reply(text=again["text"], model=again["model"], first_text=entry["text"]))
            else:
                replies.append(Reply(text=entry["text"], model=entry["model"]))
        return replies

    def _check_endpoint(self) -> None:
        if not self._endpoint_checked:
            check_endpoint(self.client, self.config.model)
            self._endpoint_checked = True

    def _reask_unparseable(self, unique: dict[str, tuple[dict, dict]], entries: dict[str, dict]) -> dict:
        """key -> the entry of a second, fresh call, for each reply whose scores could not be read.

        The second call has its own identity (``reask: 1``), so it is cached apart from the first
        reply and is made once: a rerun finds both. Re-asks go through the Messages API in both
        modes (a handful of calls; a second batch would hold up the run for hours). A failed
        re-ask leaves the first reply in the record and is tried again by the next run.
        """
        wanted: dict[str, tuple[dict, dict]] = {}
        for key, entry in entries.items():
            if not parse_scores(entry["text"]).parsed:
                identity, params = unique[key]
                again = {**identity, "reask": 1}
                wanted[key] = (call_key(again), again, params)
        found: dict[str, dict] = {}
        pending: dict[str, tuple[dict, dict]] = {}
        for key, (again_key, again, params) in wanted.items():
            entry = self.cache.get(again_key)
            if entry is None:
                pending[again_key] = (again, params)
            else:
                found[key] = entry
        if pending:
            log.info("asking %d unparseable judgment(s) once more", len(pending))
            self._check_endpoint()
            made = self.stats.calls_made
            new, _ = self._run_messages(pending)
            self.stats.reasks += self.stats.calls_made - made
            for key, (again_key, _, _) in wanted.items():
                if again_key in new:
                    found[key] = new[again_key]
        return found

    def _call(self, key: str, identity: dict, params: dict) -> tuple[dict, bool]:
        """(entry, paid) of one call; the entry may come from another job that held its claim."""
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
            message = self.client.messages.create(**params, **({"extra_body": sampling} if sampling else {}))
            entry = entry_from_message(message, identity, "messages")
            self.cache.put(key, entry)  # persisted before anything else can go wrong
            return entry, True
        finally:
            self.cache.release(key)

    def _run_messages(self, pending: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
        entries: dict[str, dict] = {}
        errors: dict[str, str] = {}
        if not pending:
            return entries, errors
        queue = deque(pending.items())
        running: dict[Future, str] = {}
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="judge")
        bar = tqdm(total=len(queue), desc=f"judge {self.config.model}", unit="call", file=sys.stderr)
        url = str(self.client.base_url)
        stop, connection_failures = None, 0
        try:
            # Submit only as many calls as there are workers, so an interrupt leaves nothing queued.
            while (queue and stop is None) or running:
                while queue and stop is None and len(running) < self.config.concurrency:
                    key, (identity, params) = queue.popleft()
                    running[pool.submit(self._call, key, identity, params)] = key
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    key = running.pop(future)
                    try:
                        entry, paid = future.result()
                    except anthropic.APIError as err:
                        errors[key] = describe_error(err)
                        self.stats.calls_failed += 1
                        log.warning("judge call failed after retries: %s", errors[key])
                        if isinstance(err, (anthropic.AuthenticationError, anthropic.PermissionDeniedError)):
                            stop = stop or key_rejected(url, err)
                        elif isinstance(err, anthropic.APIConnectionError):
                            connection_failures += 1
                            if connection_failures >= MAX_CONNECTION_FAILURES:
                                stop = stop or unreachable(url, err) + (
                                    f"; {connection_failures} calls in a row failed"
                                )
                        else:
                            connection_failures = 0
                    else:
                        connection_failures = 0
                        entries[key] = entry
                        if paid:
                            self.stats.calls_made += 1
                            self.stats.new.add(entry["usage"], batch=False)
                        else:  # another job paid for it while this one waited on its claim
                            self.stats.cached += 1
                            self.stats.cached_usage.add(entry["usage"], batch=entry["mode"] == "batch")
                    bar.update(1)
                    bar.set_postfix(failed=self.stats.calls_failed)
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)
        if stop is not None:
            raise JudgeUnavailable(f"{stop}; {len(queue)} call(s) not sent")
        return entries, errors
